"""The ceiling: bare Flask returning a 20-item JSON page shaped like GET /api/v1/posts, served
by gunicorn with the services' worker model. Nothing of ours is in it (no logging, metrics,
tracing, database): what it costs is the framework's and the server's own floor."""

from __future__ import annotations

from flask import Flask, jsonify

PAGE = {
    "posts": [
        {
            "id": 1000 - index,
            "user_id": 1,
            "username": "bench-writer",
            "title": None,
            "content": f"post number {index}",
            "created_at": "2026-11-30T06:00:00.000000+00:00",
        }
        for index in range(20)
    ],
    "limit": 20,
    "next_cursor": "MTc2NDQ4MjQwMDAwMDAwMC45ODE",
}


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/posts")
    def posts():
        return jsonify(PAGE)

    return app
