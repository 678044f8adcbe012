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


# What a post's JSON is made of, in this order: listings select these columns rather than whole
# objects.
POST_COLUMNS = (Post.id, Post.user_id, Post.username, Post.title, Post.content, Post.created_at)


def values_of(post: Post) -> tuple:
    """A Post's values in POST_COLUMNS order, as a listing's row has them."""
    return tuple(getattr(post, column.key) for column in POST_COLUMNS)


def post_json(row: tuple) -> dict:
    """A post (a row of POST_COLUMNS) as the API shows it. (Formatting created_at in SQL instead
    saved the api CPU but cost PostgreSQL as much, and PostgreSQL is the one shared.)"""
    post_id, user_id, username, title, content, created_at = row
    return {
        "id": post_id,
        "user_id": user_id,
        "username": username,
        "title": title,
        "content": content,
        "created_at": created_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
    }


class ClientRateLimit(db.Model):
    """Hits per client and window; written only by api.clients' atomic upsert."""

    __tablename__ = "client_rate_limits"
    __table_args__ = (Index("client_rate_limits_window_start_idx", "window_start"),)

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, nullable=False)
