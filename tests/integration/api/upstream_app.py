"""A stand-in for the images service: a tiny WSGI app, run under gunicorn by the fixtures.

It streams both ways like the real thing, so the gateway's relaying can be measured without
the images service: POST /upload reads the body in chunks and answers its size and digest;
GET /images/<sized_name(size)> streams that many bytes of a known pattern. Some paths misbehave on
purpose (slow, failing, malformed) to show how the gateway answers for them.
"""

from __future__ import annotations

import hashlib
import json
import time

CHUNK = 64 * 1024
# Image-shaped names (as the gateway routes them) that misbehave on purpose.
SLOW, FAILING, BUSY = ("f" * 32 + ".png", "e" * 32 + ".png", "d" * 32 + ".png")
PATTERN = bytes(range(256)) * (CHUNK // 256)


def sized_name(size: int) -> str:
    """GET /images/<this> streams ``size`` bytes of the pattern."""
    return f"{size:032x}.png"


def pattern_bytes(size: int):
    """The bytes GET /images/<sized_name(size)> serves, as chunks (the tests recompute the digest)."""
    remaining = size
    while remaining > 0:
        piece = PATTERN[: min(CHUNK, remaining)]
        remaining -= len(piece)
        yield piece


def _json(start_response, status: str, body: dict, headers=()):
    payload = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *headers]
    )
    return [payload]


def app(environ, start_response):  # noqa: PLR0911 - one branch per route reads best here
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if path == "/live":
        return _json(start_response, "200 OK", {"status": "ok"})
    if method == "POST" and path == "/upload":
        digest, size, stream = hashlib.sha256(), 0, environ["wsgi.input"]
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        return _json(
            start_response,
            "201 Created",
            {
                "received_bytes": size,
                "sha256": digest.hexdigest(),
                "content_length": environ.get("CONTENT_LENGTH"),
                "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
                "content_type": environ.get("CONTENT_TYPE"),
                "request_id": environ.get("HTTP_X_REQUEST_ID"),
                "traceparent": environ.get("HTTP_TRACEPARENT"),
                "authorization": environ.get("HTTP_AUTHORIZATION"),
                "cookie": environ.get("HTTP_COOKIE"),
            },
            headers=[("Location", "/images/new.png")],
        )
    name = path.removeprefix("/images/")
    if method == "GET" and name == SLOW:
        time.sleep(3)
        return _json(start_response, "200 OK", {"late": True})
    if method == "GET" and name == FAILING:
        return _json(start_response, "500 Internal Server Error", {"secret": "stack trace"})
    if method == "GET" and name == BUSY:
        return _json(
            start_response,
            "503 Service Unavailable",
            {"detail": "object store away"},
            headers=[("Retry-After", "7")],
        )
    if method == "GET" and path.startswith("/images/"):
        size = int(name.partition(".")[0], 16)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(size)),
                ("Content-Disposition", f'attachment; filename="{name}"'),
                ("ETag", f'"pattern-{size}"'),
                ("Cache-Control", "private, max-age=60"),
                ("X-Internal-Node", "images-7f9c"),
                ("Set-Cookie", "internal=1"),
            ],
        )
        return pattern_bytes(size)
    if method == "DELETE" and path.startswith("/images/"):
        start_response("204 No Content", [])
        return []
    if method == "POST" and path == "/verify":
        # Misbehaving auth: 200 without the JSON the contract promises.
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "9")])
        return [b"<p>ok</p>"]
    return _json(start_response, "404 Not Found", {"detail": "no such thing"})
