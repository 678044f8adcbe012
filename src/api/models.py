"""The api service's extension and its tables."""

from __future__ import annotations

import datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()


class Post(db.Model):
    __tablename__ = "posts"
    __table_args__ = (
        # The two listings: everyone's newest first, and one user's newest first.
        Index("posts_created_at_id_idx", "created_at", "id"),
        Index("posts_user_id_created_at_id_idx", "user_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The author as the auth service named them when the post was made; auth_db is not ours to join.
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    username: Mapped[str] = mapped_column(String(32), nullable=False)
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


# What a post's JSON is made of: listings select these columns rather than whole objects.
POST_COLUMNS = (Post.id, Post.user_id, Post.username, Post.title, Post.content, Post.created_at)


def post_json(post) -> dict:
    """A post (a Post, or a row of POST_COLUMNS) as the API shows it. (Formatting created_at in
    SQL instead saved the api CPU but cost PostgreSQL as much, and PostgreSQL is the one shared.)"""
    return {
        "id": post.id,
        "user_id": post.user_id,
        "username": post.username,
        "title": post.title,
        "content": post.content,
        "created_at": post.created_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
    }


class ClientRateLimit(db.Model):
    """Hits per client and window; written only by api.clients' atomic upsert."""

    __tablename__ = "client_rate_limits"
    __table_args__ = (Index("client_rate_limits_window_start_idx", "window_start"),)

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, nullable=False)
