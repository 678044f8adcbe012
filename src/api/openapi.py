"""The public API as an OpenAPI 3.1 document, served at GET /api/v1/openapi.json.

Written next to the code it describes, and reusing its limits and patterns, so that the two
cannot disagree; tests/integration/api/test_openapi_contract.py lets schemathesis check the live
gateway against it.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from api import posts
from api.gateway import IMAGE_FILENAME

bp = Blueprint("openapi", __name__)

JSON = "application/json"
PROBLEM = "application/problem+json"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _problem(description: str) -> dict:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


def _responses(success: dict, *errors: str) -> dict:
    """Success responses, the named problem responses from components, and the HTTP server's 414."""
    return {
        **success,
        **{code: {"$ref": f"#/components/responses/{ERROR_RESPONSES[code][0]}"} for code in errors},
        "414": {"$ref": "#/components/responses/UriTooLong"},
    }


ERROR_RESPONSES = {
    "400": ("BadRequest", "The request is malformed: a bad parameter or body (see `errors`)."),
    "401": ("Unauthorized", "No valid bearer token (or, on login, wrong credentials)."),
    "404": ("NotFound", "No such resource, or it belongs to someone else."),
    "409": ("Conflict", "The resource already exists."),
    "413": ("ContentTooLarge", "The request body is larger than this endpoint accepts."),
    "415": ("UnsupportedMediaType", "The uploaded file is not a JPEG, PNG, GIF or WebP image."),
    "422": ("UnprocessableContent", "The image cannot be stored (e.g. too many pixels)."),
    "429": (
        "TooManyRequests",
        "Too many attempts: this client is over the gateway's limit (`rate-limited`), or this "
        "username is backing off after failed logins (`login-throttled`). Retry after the "
        "seconds in `Retry-After`.",
    ),
    "502": ("BadGateway", "A service behind the gateway failed or answered something malformed."),
    "503": ("ServiceUnavailable", "The database or a service behind the gateway is unavailable."),
    "504": ("GatewayTimeout", "A service behind the gateway did not answer in time."),
}
UPSTREAM_ERRORS = ("502", "503", "504")

# The images service's own bound (images/routes.py); images are still paged by offset.
IMAGES_MAX_OFFSET = 1_000_000
PAGE_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Page size.",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": posts.MAX_PAGE_SIZE,
            "default": posts.DEFAULT_PAGE_SIZE,
        },
    },
    {
        "name": "offset",
        "in": "query",
        "required": False,
        "description": "Items to skip.",
        "schema": {"type": "integer", "minimum": 0, "maximum": IMAGES_MAX_OFFSET, "default": 0},
    },
]
# Posts are paged by cursor (keyset): every page costs the same, however deep.
POST_PAGE_PARAMETERS = [
    PAGE_PARAMETERS[0],
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Where the page starts: the `next_cursor` of the previous page (opaque; "
        "a cursor the API did not issue is a 400). Leave it out for the first page.",
        "schema": {"type": "string", "pattern": f"^{posts.CURSOR_SYNTAX.pattern}$"},
    },
    {
        "name": "offset",
        "in": "query",
        "required": False,
        "deprecated": True,
        "description": "No longer supported: only 0 (the first page) is accepted; page with `cursor`.",
        "schema": {"type": "integer", "const": 0},
    },
]
BEARER = [{"bearerAuth": []}]


def _page(item: dict, max_items: int) -> dict:
    """A page of a list paged by limit and offset (images)."""
    return {
        "type": "object",
        "required": ["items", "limit", "offset", "next_offset"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": item, "maxItems": max_items},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {
                "type": ["integer", "null"],
                "description": "The offset of the next page, or null on the last page.",
            },
        },
    }


def _cursor_page(item: dict, max_items: int) -> dict:
    """A page of a list paged by cursor."""
    return {
        "type": "object",
        "required": ["items", "limit", "next_cursor"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": item, "maxItems": max_items},
            "limit": {"type": "integer", "minimum": 1, "maximum": max_items},
            "next_cursor": {
                "type": ["string", "null"],
                "pattern": f"^{posts.CURSOR_SYNTAX.pattern}$",
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    }


FILENAME_PARAMETER = {
    "name": "filename",
    "in": "path",
    "required": True,
    "description": "The name the server gave the image on upload.",
    "schema": {"type": "string", "pattern": f"^{IMAGE_FILENAME}$"},
}

SCHEMAS = {
    "Problem": {
        "type": "object",
        "description": "An error, as RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    },
    "Post": {
        "type": "object",
        "required": ["id", "user_id", "username", "title", "content", "created_at"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "user_id": {"type": "integer"},
            "username": {"type": "string"},
            "title": {"type": ["string", "null"], "maxLength": posts.MAX_TITLE_CHARACTERS},
            "content": {"type": "string", "minLength": 1, "maxLength": posts.MAX_CONTENT_CHARACTERS},
            "created_at": {"type": "string", "format": "date-time", "description": "UTC, ISO 8601"},
        },
    },
    "PostPage": _cursor_page(_ref("Post"), posts.MAX_PAGE_SIZE),
    "NewPost": {
        "type": "object",
        "required": ["content"],
        "additionalProperties": False,
        "description": "The author is the token's user; any other field is refused.",
        "properties": {
            "content": {
                "type": "string",
                "minLength": 1,
                "maxLength": posts.MAX_CONTENT_CHARACTERS,
                "pattern": posts.CONTENT_PATTERN,
                "description": "Not only whitespace; no NUL characters.",
            },
            "title": {
                "type": "string",
                "maxLength": posts.MAX_TITLE_CHARACTERS,
                "pattern": posts.TITLE_PATTERN,
            },
        },
    },
    "Registration": {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {
            "username": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{3,32}$"},
            "password": {
                "type": "string",
                "minLength": 8,
                "maxLength": 72,
                "pattern": r"^[^\u0000]*$",
                "description": "8 characters or more, at most 72 bytes in UTF-8, no NUL.",
            },
        },
    },
    "Credentials": {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    },
    "User": {
        "type": "object",
        "required": ["id", "username"],
        "properties": {"id": {"type": "integer"}, "username": {"type": "string"}},
    },
    "Token": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"type": "string", "const": "Bearer"},
            "expires_in": {"type": "integer", "description": "seconds"},
        },
    },
    "Image": {
        "type": "object",
        "required": ["filename", "content_type", "size"],
        "properties": {
            "filename": {"type": "string"},
            "original_filename": {"type": ["string", "null"]},
            "content_type": {"type": "string", "enum": list(IMAGE_TYPES)},
            "size": {"type": "integer", "minimum": 0},
            "width": {"type": ["integer", "null"]},
            "height": {"type": ["integer", "null"]},
            "sha256": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "ImagePage": _page(_ref("Image"), posts.MAX_PAGE_SIZE),
    "ImageStats": {
        "type": "object",
        "required": ["count", "total_bytes"],
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "total_bytes": {"type": "integer", "minimum": 0},
        },
    },
    "ImageUpload": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "JPEG, PNG, GIF or WebP, decided from the content.",
            }
        },
    },
}

PATHS = {
    "/api/v1/posts": {
        "get": {
            "operationId": "listPosts",
            "summary": "Everyone's posts, newest first.",
            "tags": ["posts"],
            "parameters": POST_PAGE_PARAMETERS,
            "responses": _responses({"200": _json(_ref("PostPage"), "A page of posts.")}, "400", "503"),
        },
        "post": {
            "operationId": "createPost",
            "summary": "Write a post as the token's user.",
            "tags": ["posts"],
            "security": BEARER,
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("NewPost")}}},
            "responses": _responses(
                {"201": _json(_ref("Post"), "The new post.")}, "400", "401", "413", *UPSTREAM_ERRORS
            ),
        },
    },
    "/api/v1/posts/my": {
        "get": {
            "operationId": "listMyPosts",
            "summary": "The caller's own posts, newest first.",
            "tags": ["posts"],
            "security": BEARER,
            "parameters": POST_PAGE_PARAMETERS,
            "responses": _responses(
                {"200": _json(_ref("PostPage"), "A page of the caller's posts.")},
                "400",
                "401",
                *UPSTREAM_ERRORS,
            ),
        },
    },
    "/api/v1/posts/{id}": {
        "delete": {
            "operationId": "deletePost",
            "summary": "Delete one of the caller's posts.",
            "tags": ["posts"],
            "security": BEARER,
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1, "maximum": posts.MAX_POST_ID},
                }
            ],
            "responses": _responses({"204": {"description": "Deleted."}}, "401", "404", *UPSTREAM_ERRORS),
        },
    },
    "/api/v1/auth/register": {
        "post": {
            "operationId": "register",
            "summary": "Create an account (passed on to the auth service).",
            "tags": ["auth"],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Registration")}}},
            "responses": _responses(
                {"201": _json(_ref("User"), "The new account.")}, "400", "409", "413", "429", *UPSTREAM_ERRORS
            ),
        },
    },
    "/api/v1/auth/login": {
        "post": {
            "operationId": "login",
            "summary": "Exchange a username and password for a bearer token (auth service).",
            "tags": ["auth"],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Credentials")}}},
            "responses": _responses(
                {"200": _json(_ref("Token"), "An access token.")},
                "400",
                "401",
                "413",
                "429",
                *UPSTREAM_ERRORS,
            ),
        },
    },
    "/api/v1/images/upload": {
        "post": {
            "operationId": "uploadImage",
            "summary": "Upload an image (images service); streamed, never held whole by the gateway.",
            "tags": ["images"],
            "security": BEARER,
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": _ref("ImageUpload")}},
            },
            "responses": _responses(
                {"201": _json(_ref("Image"), "The stored image.")},
                "400",
                "401",
                "413",
                "415",
                "422",
                *UPSTREAM_ERRORS,
            ),
        },
    },
    "/api/v1/images": {
        "get": {
            "operationId": "listImages",
            "summary": "The caller's images, newest first.",
            "tags": ["images"],
            "security": BEARER,
            "parameters": PAGE_PARAMETERS,
            "responses": _responses(
                {"200": _json(_ref("ImagePage"), "A page of the caller's images.")},
                "400",
                "401",
                *UPSTREAM_ERRORS,
            ),
        },
    },
    "/api/v1/images/stats": {
        "get": {
            "operationId": "imageStats",
            "summary": "Count and bytes of the caller's images, also by content type.",
            "tags": ["images"],
            "security": BEARER,
            "responses": _responses(
                {"200": _json(_ref("ImageStats"), "The caller's totals.")}, "401", *UPSTREAM_ERRORS
            ),
        },
    },
    "/api/v1/images/{filename}": {
        "get": {
            "operationId": "getImage",
            "summary": "One of the caller's images, streamed.",
            "tags": ["images"],
            "security": BEARER,
            "parameters": [FILENAME_PARAMETER],
            "responses": _responses(
                {
                    "200": {
                        "description": "The image's bytes.",
                        "content": {
                            kind: {"schema": {"type": "string", "format": "binary"}} for kind in IMAGE_TYPES
                        },
                    }
                },
                "401",
                "404",
                *UPSTREAM_ERRORS,
            ),
        },
        "delete": {
            "operationId": "deleteImage",
            "summary": "Delete one of the caller's images.",
            "tags": ["images"],
            "security": BEARER,
            "parameters": [FILENAME_PARAMETER],
            "responses": _responses({"204": {"description": "Deleted."}}, "401", "404", *UPSTREAM_ERRORS),
        },
    },
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "platform API",
        "version": "1.0.0",
        "description": "Posts, and the gateway to accounts (auth) and images. Errors are "
        "application/problem+json (RFC 9457); every response carries X-Request-ID.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "responses": {
            **{name: _problem(description) for name, description in ERROR_RESPONSES.values()},
            "TooManyRequests": {
                **_problem(ERROR_RESPONSES["429"][1]),
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait before trying again.",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    }
                },
            },
            # gunicorn refuses a request line over 4094 bytes itself, before the API sees it.
            "UriTooLong": {
                "description": "The URL is longer than the HTTP server accepts (answered by gunicorn).",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
        },
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    },
}


@bp.get("/api/v1/openapi.json")
def openapi_document():
    return jsonify(DOCUMENT)
