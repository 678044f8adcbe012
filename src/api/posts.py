"""GET /api/v1/posts, POST /api/v1/posts, GET /api/v1/posts/my, DELETE /api/v1/posts/<id>."""

from __future__ import annotations

import base64
import datetime
import logging
import re
from typing import Annotated

from flask import Blueprint, jsonify
from prometheus_client import Counter
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema
from sqlalchemy import Integer, bindparam, delete, select, tuple_

from api import contract
from api.contract import Body, Model, Operation, operation, parsed_query, query_int
from api.identity import current_caller, login_required
from api.models import POST_COLUMNS, Post, db, post_json, values_of
from servicekit.database import fetch_all, sql_of
from servicekit.errors import ApiError
from servicekit.validation import invalid

bp = Blueprint("posts", __name__, url_prefix="/api/v1/posts")
log = logging.getLogger(__name__)

POSTS_CREATED = Counter("api_posts_created_total", "Posts created.")
POSTS_DELETED = Counter("api_posts_deleted_total", "Posts deleted by their author.")

MAX_CONTENT_CHARACTERS = 10_000
MAX_TITLE_CHARACTERS = 200
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# A page's cursor: urlsafe base64, unpadded, of "<created_at in microseconds since 1970>.<id>" of
# its last post. Opaque to clients, who pass back what they were given.
CURSOR_SYNTAX = re.compile(r"[A-Za-z0-9_-]{1,64}")
CURSOR_RULE = "must be a next_cursor from an earlier page"
OFFSET_RULE = (
    "paging by offset is no longer supported (only offset=0); pass the previous page's next_cursor as cursor"
)
_CURSOR_POSITION = re.compile(r"(0|-?[1-9][0-9]{0,17})\.([1-9][0-9]{0,18})")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# PostgreSQL text cannot hold NUL; content must have something besides whitespace. The checks
# are plain string operations, linear in the length: a regular expression for "not only
# whitespace" is easily one that backtracks quadratically (10,000 characters ending in NUL cost a
# worker a fifth of a second). NewPost gives the OpenAPI document the same rules as patterns, each
# linear (the leading whitespace and the character after it cannot overlap), and a unit test keeps
# the patterns and the checks in agreement.
# JSON Schema's \s (ECMA-262) is narrower than Python's (no \x1c-\x1f, no \x85): both sides
# use this one explicit set, so a client validating against the document agrees with the server.
WHITESPACE_CLASS = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
CONTENT_PATTERN = rf"^[{WHITESPACE_CLASS}]*[^{WHITESPACE_CLASS}\u0000][^\u0000]*$"
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
    # Stripped of exactly the pattern's whitespace class.
    if "\x00" in value or not value.strip(WHITESPACE):
        raise invalid("content", CONTENT_RULE)
    return value


def valid_title(value: str) -> str:
    """The title of a new post, or a 400: at most 200 characters, no NUL."""
    _text_field("title", value, minimum=0, maximum=MAX_TITLE_CHARACTERS)
    if "\x00" in value:
        raise invalid("title", TITLE_RULE)
    return value


def encode_cursor(row: tuple) -> str:
    """The position just after a post (a row of POST_COLUMNS) in the (created_at, id) newest-first
    order."""
    post_id, *_, created_at = row
    since_epoch = created_at - _EPOCH
    micros = (since_epoch.days * 86_400 + since_epoch.seconds) * 1_000_000 + since_epoch.microseconds
    return base64.urlsafe_b64encode(f"{micros}.{post_id}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime.datetime, int]:
    """A cursor this service issued, back as (created_at, id); anything else is a 400.

    Strict on purpose: only the one spelling encode_cursor produces is accepted (no padding, no
    other alphabet, no leading zeros or signs), so a cursor names exactly one position.
    """
    refused = invalid("cursor", CURSOR_RULE)
    if not CURSOR_SYNTAX.fullmatch(cursor):
        raise refused
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise refused from None
    match = _CURSOR_POSITION.fullmatch(decoded)
    # Only the canonical encoding: base64 lets the last character carry bits the decoder drops.
    if match is None or base64.urlsafe_b64encode(decoded.encode()).rstrip(b"=").decode() != cursor:
        raise refused
    micros, post_id = int(match[1]), int(match[2])
    if not 1 <= post_id <= MAX_POST_ID:
        raise refused
    try:
        created_at = _EPOCH + datetime.timedelta(microseconds=micros)
    except OverflowError:
        raise refused from None
    return created_at, post_id


# -- the contract ----------------------------------------------------------------------------
_CURSOR_SCHEMA = {"type": "string", "pattern": f"^{CURSOR_SYNTAX.pattern}$"}


class NewPost(Body):
    """The author is the token's user; any other field is refused."""

    content: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_CONTENT_CHARACTERS,
            description="Not only whitespace; no NUL characters.",
            json_schema_extra={"pattern": CONTENT_PATTERN},
        ),
        AfterValidator(valid_content),
    ]
    # Absent or a string: null is not a title.
    title: Annotated[
        str,
        Field(max_length=MAX_TITLE_CHARACTERS, json_schema_extra={"pattern": TITLE_PATTERN}),
        AfterValidator(valid_title),
    ] = None


class PostOut(BaseModel):
    id: int = Field(ge=1, le=MAX_POST_ID)
    user_id: int
    username: str
    title: str | None = Field(max_length=MAX_TITLE_CHARACTERS)
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARACTERS)
    created_at: str = Field(description="UTC, ISO 8601", json_schema_extra={"format": "date-time"})


class PostPage(Model):
    items: list[PostOut] = Field(max_length=MAX_PAGE_SIZE)
    limit: int = Field(ge=1, le=MAX_PAGE_SIZE)
    next_cursor: Annotated[
        str | None,
        WithJsonSchema(
            {
                "type": ["string", "null"],
                "pattern": _CURSOR_SCHEMA["pattern"],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            }
        ),
    ]


class PageQuery(Model):
    """Posts are paged by cursor (keyset): every page costs the same, however deep."""

    limit: query_int(DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE, "Page size.")
    cursor: Annotated[
        str | None,
        WithJsonSchema(
            {
                **_CURSOR_SCHEMA,
                "description": "Where the page starts: the `next_cursor` of the previous page (opaque; "
                "a cursor the API did not issue is a 400). Leave it out for the first page.",
            }
        ),
    ] = None
    # Offsets are gone: a deep one made the database walk and discard every row before it.
    # offset=0 still means the first page, for clients that spelt it out.
    offset: Annotated[
        str | None,
        WithJsonSchema(
            {
                "type": "integer",
                "const": 0,
                "deprecated": True,
                "description": "No longer supported: only 0 (the first page) is accepted; "
                "page with `cursor`.",
            }
        ),
    ] = None


class PostPath(Model):
    post_id: int = Field(ge=1, le=MAX_POST_ID)


def _page() -> tuple[int, tuple[datetime.datetime, int] | None]:
    query: PageQuery = parsed_query()
    if query.offset not in (None, "0"):
        raise invalid("offset", OFFSET_RULE)
    return query.limit, None if query.cursor is None else decode_cursor(query.cursor)


def _page_statements(owner_only: bool) -> tuple:
    """The two statements of a listing: its first page, and every page after a cursor.

    Keyset paging: every page is the same index range scan of limit + 1 rows, however deep
    (posts_created_at_id_idx for everyone's, posts_user_id_created_at_id_idx for one user's).
    Built once, as SQL text: constructing a statement per request, and executing it through the
    ORM session, cost more CPU than PostgreSQL's answer. Columns rather than Post objects, for the
    same reason.
    """
    first = select(*POST_COLUMNS)
    if owner_only:
        first = first.where(Post.user_id == bindparam("user_id"))
    position = tuple_(bindparam("after_at"), bindparam("after_id"))
    after = first.where(tuple_(Post.created_at, Post.id) < position)
    # One row more than asked tells whether another page exists without counting the table.
    newest_first = (Post.created_at.desc(), Post.id.desc())
    rows = bindparam("rows", type_=Integer)
    return tuple(sql_of(statement.order_by(*newest_first).limit(rows)) for statement in (first, after))


EVERYONES_PAGES = _page_statements(owner_only=False)
OWN_PAGES = _page_statements(owner_only=True)


def _listing(statements: tuple, **parameters):
    limit, after = _page()
    first, following = statements
    if after is None:
        statement = first
    else:
        statement = following
        parameters.update(after_at=after[0], after_id=after[1])
    rows = fetch_all(db.engine, statement, {"rows": limit + 1, **parameters})
    page = rows[:limit]
    return jsonify(
        items=[post_json(row) for row in page],
        limit=limit,
        next_cursor=encode_cursor(page[-1]) if len(rows) > limit else None,
    )


@bp.get("")
@operation(
    Operation(
        "listPosts",
        "Everyone's posts, newest first.",
        "posts",
        {"200": (PostPage, "A page of posts.")},
        ("400", "503"),
        query=PageQuery,
    )
)
def list_posts():
    return _listing(EVERYONES_PAGES)


@bp.get("/my")
@operation(
    Operation(
        "listMyPosts",
        "The caller's own posts, newest first.",
        "posts",
        {"200": (PostPage, "A page of the caller's posts.")},
        ("400", "401", *contract.UPSTREAM_ERRORS),
        query=PageQuery,
        secured=True,
    ),
    login=login_required,
)
def my_posts():
    caller = current_caller()
    return _listing(OWN_PAGES, user_id=caller.user_id)


@bp.post("")
@operation(
    Operation(
        "createPost",
        "Write a post as the token's user.",
        "posts",
        {"201": (PostOut, "The new post.")},
        ("400", "401", "413", *contract.UPSTREAM_ERRORS),
        body=NewPost,
        secured=True,
    ),
    login=login_required,
)
def create_post(body: NewPost):
    caller = current_caller()
    post = Post(user_id=caller.user_id, username=caller.username, title=body.title, content=body.content)
    db.session.add(post)
    db.session.commit()
    POSTS_CREATED.inc()
    log.info("post created", extra={"post_id": post.id, "user_id": caller.user_id})
    return jsonify(post_json(values_of(post))), 201


@bp.delete(f"/<int(max={MAX_POST_ID}):post_id>")
@operation(
    Operation(
        "deletePost",
        "Delete one of the caller's posts.",
        "posts",
        {"204": (None, "Deleted.")},
        ("401", "404", *contract.UPSTREAM_ERRORS),
        path=PostPath,
        secured=True,
    ),
    login=login_required,
)
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
