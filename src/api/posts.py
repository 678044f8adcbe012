"""GET /api/v1/posts, POST /api/v1/posts, GET /api/v1/posts/my, DELETE /api/v1/posts/<id>."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, jsonify
from prometheus_client import Counter
from sqlalchemy import delete, select

from api.identity import current_caller, login_required
from api.models import Post, db
from api.queries import query_parameters
from servicekit.errors import ApiError
from servicekit.validation import invalid, json_object, query_int

bp = Blueprint("posts", __name__, url_prefix="/api/v1/posts")
log = logging.getLogger(__name__)

POSTS_CREATED = Counter("api_posts_created_total", "Posts created.")
POSTS_DELETED = Counter("api_posts_deleted_total", "Posts deleted by their author.")

MAX_CONTENT_CHARACTERS = 10_000
MAX_TITLE_CHARACTERS = 200
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_OFFSET = 1_000_000
# PostgreSQL text cannot hold NUL; content must have something besides whitespace. The OpenAPI
# document states the same patterns, so the contract and the check cannot drift apart.
CONTENT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
TITLE_PATTERN = r"^[^\u0000]*$"
# The largest id a BIGINT holds; a larger one in a path is a post that cannot exist.
MAX_POST_ID = 2**63 - 1


def _text_field(name: str, value: str, *, minimum: int, maximum: int, pattern: str, rule: str) -> str:
    if not minimum <= len(value) <= maximum:
        raise invalid(name, f"must be {minimum} to {maximum:,} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(name, "must be valid Unicode text") from None
    if not re.search(pattern, value):
        raise invalid(name, rule)
    return value


def _page() -> tuple[int, int]:
    limit = query_int("limit", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    offset = query_int("offset", 0, minimum=0, maximum=MAX_OFFSET)
    return limit, offset


def _listing(query, limit: int, offset: int):
    # One row more than asked tells whether another page exists without counting the table.
    rows = (
        db.session.execute(
            query.order_by(Post.created_at.desc(), Post.id.desc()).limit(limit + 1).offset(offset)
        )
        .scalars()
        .all()
    )
    has_more = len(rows) > limit
    return jsonify(
        items=[post.to_json() for post in rows[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if has_more else None,
    )


@bp.get("")
@query_parameters("limit", "offset")
def list_posts():
    limit, offset = _page()
    return _listing(select(Post), limit, offset)


@bp.get("/my")
@query_parameters("limit", "offset")
@login_required
def my_posts():
    limit, offset = _page()
    caller = current_caller()
    return _listing(select(Post).where(Post.user_id == caller.user_id), limit, offset)


@bp.post("")
@login_required
def create_post():
    # Unknown fields (an id, a user_id, ...) are refused: the author is the token's user, always.
    body = json_object(required={"content": str}, optional={"title": str})
    content = _text_field(
        "content",
        body["content"],
        minimum=1,
        maximum=MAX_CONTENT_CHARACTERS,
        pattern=CONTENT_PATTERN,
        rule="must contain something besides whitespace, and no NUL characters",
    )
    title = body.get("title")
    if title is not None:
        title = _text_field(
            "title",
            title,
            minimum=0,
            maximum=MAX_TITLE_CHARACTERS,
            pattern=TITLE_PATTERN,
            rule="must not contain NUL characters",
        )
    caller = current_caller()
    post = Post(user_id=caller.user_id, username=caller.username, title=title, content=content)
    db.session.add(post)
    db.session.commit()
    POSTS_CREATED.inc()
    log.info("post created", extra={"post_id": post.id, "user_id": caller.user_id})
    return jsonify(post.to_json()), 201


@bp.delete(f"/<int(max={MAX_POST_ID}):post_id>")
@login_required
def delete_post(post_id: int):
    caller = current_caller()
    # One statement decides: a post of someone else's is never touched, and looks like no post.
    deleted = db.session.execute(
        delete(Post).where(Post.id == post_id, Post.user_id == caller.user_id).returning(Post.id)
    ).scalar_one_or_none()
    db.session.commit()
    if deleted is None:
        raise ApiError(404, "No such post.", type_="not-found")
    POSTS_DELETED.inc()
    log.info("post deleted", extra={"post_id": post_id, "user_id": caller.user_id})
    return "", 204
