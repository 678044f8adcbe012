"""GET /api/v1/posts, POST /api/v1/posts, GET /api/v1/posts/my, DELETE /api/v1/posts/<id>."""

from __future__ import annotations

import logging

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
# PostgreSQL text cannot hold NUL; content must have something besides whitespace. The checks
# are plain string operations, linear in the length: a regular expression for "not only
# whitespace" is easily one that backtracks quadratically (10,000 characters ending in NUL cost a
# worker a fifth of a second). The OpenAPI document states the same rules as patterns, each linear
# (the leading whitespace and the character after it cannot overlap), and a unit test keeps the
# patterns and the checks in agreement.
CONTENT_PATTERN = r"^\s*[^\s\u0000][^\u0000]*$"
CONTENT_RULE = "must contain something besides whitespace, and no NUL characters"
TITLE_PATTERN = r"^[^\u0000]*$"
TITLE_RULE = "must not contain NUL characters"
# The largest id a BIGINT holds; a larger one in a path is a post that cannot exist.
MAX_POST_ID = 2**63 - 1


def _text_field(name: str, value: str, *, minimum: int, maximum: int) -> str:
    if not minimum <= len(value) <= maximum:
        raise invalid(name, f"must be {minimum} to {maximum:,} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(name, "must be valid Unicode text") from None
    return value


def valid_content(value: str) -> str:
    """The content of a new post, or a 400: 1 to 10,000 characters, not only whitespace, no NUL."""
    _text_field("content", value, minimum=1, maximum=MAX_CONTENT_CHARACTERS)
    # str.strip() removes exactly what the pattern's \s matches (str.isspace()).
    if "\x00" in value or not value.strip():
        raise invalid("content", CONTENT_RULE)
    return value


def valid_title(value: str) -> str:
    """The title of a new post, or a 400: at most 200 characters, no NUL."""
    _text_field("title", value, minimum=0, maximum=MAX_TITLE_CHARACTERS)
    if "\x00" in value:
        raise invalid("title", TITLE_RULE)
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
    content = valid_content(body["content"])
    title = body.get("title")
    if title is not None:
        title = valid_title(title)
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
