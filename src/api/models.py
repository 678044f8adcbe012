"""The api service's extension and its tables."""

from __future__ import annotations

import datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, cast, extract, func
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


# A post's created_at as the API shows it: UTC, ISO 8601, always six fractional digits.
CREATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_CREATED_AT_SQL_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'

# A listing's columns. PostgreSQL formats created_at (the same text post_json makes) and gives its
# position in microseconds since 1970 for the next page's cursor: per row, that was most of the
# CPU a page cost in Python (parsing timestamps into datetimes, converting, formatting them).
LISTED_COLUMNS = (
    Post.id,
    Post.user_id,
    Post.username,
    Post.title,
    Post.content,
    func.to_char(func.timezone("UTC", Post.created_at), _CREATED_AT_SQL_FORMAT).label("created_at"),
    # EXTRACT gives numeric (exact) since PostgreSQL 14; date_part's double would round.
    cast(extract("epoch", Post.created_at) * 1_000_000, BigInteger).label("position"),
)


def post_json(post: Post) -> dict:
    """A post as the API shows it."""
    created_at = post.created_at.astimezone(datetime.UTC).strftime(CREATED_AT_FORMAT)
    return listed_post_json((post.id, post.user_id, post.username, post.title, post.content, created_at))


def listed_post_json(row) -> dict:
    """A row of LISTED_COLUMNS as the API shows it (the same as post_json)."""
    post_id, user_id, username, title, content, created_at = row[:6]
    return {
        "id": post_id,
        "user_id": user_id,
        "username": username,
        "title": title,
        "content": content,
        "created_at": created_at,
    }


class ClientRateLimit(db.Model):
    """Hits per client and window; written only by api.clients' atomic upsert."""

    __tablename__ = "client_rate_limits"
    __table_args__ = (Index("client_rate_limits_window_start_idx", "window_start"),)

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, nullable=False)
