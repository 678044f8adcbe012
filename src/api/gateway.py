"""The routes the gateway passes on to auth and images, streaming bodies both ways.

A body is never held whole: the request body is read from the client in chunks while it is
sent to the service, and the answer is read from the service in chunks while it is sent to the
client, so a 10 MB upload costs the gateway a few chunks of memory, not 10 MB.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, current_app, request
from pydantic import Field
from werkzeug.routing import BaseConverter

from api.clients import rate_limited
from api.contract import (
    MULTIPART,
    UPSTREAM_ERRORS,
    Credentials,
    Image,
    ImagePage,
    ImagePageQuery,
    ImageStats,
    ImageUpload,
    Model,
    Operation,
    Registration,
    Token,
    User,
    operation,
)
from api.identity import login_required
from api.upstream import CHUNK_BYTES, RequestBody, Upstream, chunked_body
from servicekit.context import outbound_headers
from servicekit.errors import ApiError

bp = Blueprint("gateway", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

# What a client may tell the service behind. Everything else (cookies, hop-by-hop headers,
# anything else a client made up) stays at the gateway; X-Forwarded-For is extended, as every
# proxy on the way does.
FORWARDED_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Accept-Language",
    "If-None-Match",
    "If-Modified-Since",
    "User-Agent",
)
# What the service may tell the client. Hop-by-hop headers (Connection, Keep-Alive,
# Transfer-Encoding, ...) describe one connection and are never passed on.
RELAYED_RESPONSE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Content-Type",
        "Content-Length",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "ETag",
        "Last-Modified",
        "Cache-Control",
        "Expires",
        "Location",
        "WWW-Authenticate",
        "Retry-After",
        "Allow",
        "X-Content-Type-Options",
        "X-Request-ID",
    )
)
# The names the images service gives: 32 hex digits and the format's extension. Anything else
# (a '/', '..', "stats") is not an image, so it never reaches the images service.
IMAGE_FILENAME = r"[0-9a-f]{32}\.(?:jpg|png|gif|webp)"
# Room for the multipart framing around the largest accepted image.
MULTIPART_ALLOWANCE_BYTES = 64 * 1024


def _upstream(target: str) -> Upstream:
    return current_app.extensions["api.upstreams"][target]


def _request_headers() -> dict[str, str]:
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    # The body is relayed byte for byte, so it must not be compressed on the way back.
    headers["Accept-Encoding"] = "identity"
    forwarded_for = request.headers.get("X-Forwarded-For")
    client = request.remote_addr or "unknown"
    headers["X-Forwarded-For"] = f"{forwarded_for}, {client}" if forwarded_for else client
    headers.update(outbound_headers())
    return headers


def _request_body():
    if request.method in ("GET", "HEAD", "DELETE"):
        return None
    length = request.content_length
    if length is None:
        # Chunked from the client: passed on chunked; the server has framed it (wsgi.input_terminated).
        return chunked_body(request.stream) if request.environ.get("wsgi.input_terminated") else None
    if length == 0:
        return b""
    return RequestBody(request.stream, length)


def _relay_body(upstream: Upstream, answer) -> Iterator[bytes]:
    try:
        # Raw bytes as the service sent them: decoding here would break Content-Length.
        yield from answer.raw.stream(CHUNK_BYTES, decode_content=False)
    except Exception as exc:
        # The status line is already on its way; all that is left is to cut the connection,
        # which the client sees as a body shorter than its Content-Length.
        log.warning(
            "upstream body broke off while relaying",
            extra={"target": upstream.target, "error": f"{type(exc).__name__}: {exc}"[:300]},
        )
        raise
    finally:
        answer.close()


def _relay(upstream: Upstream, answer, location_prefixes: tuple[str, str] | None) -> Response:
    status = answer.status_code
    if status >= 500 and status not in (502, 503, 504):
        # The service's own failure stays its own: the client learns that the gateway's
        # upstream failed, not what went wrong inside it.
        answer.close()
        log.warning("upstream failed", extra={"target": upstream.target, "upstream_status": status})
        raise ApiError(
            502,
            f"{upstream.name} failed to answer the request.",
            type_="bad-gateway",
            upstream=upstream.target,
        )
    headers = [
        (name, value) for name, value in answer.headers.items() if name.lower() in RELAYED_RESPONSE_HEADERS
    ]
    response = Response(
        _relay_body(upstream, answer), status=status, headers=headers, direct_passthrough=True
    )
    if "Content-Type" not in answer.headers:
        del response.headers["Content-Type"]
    if "Location" in response.headers and location_prefixes:
        response.headers["Location"] = _public_location(
            upstream, response.headers["Location"], *location_prefixes
        )
    response.call_on_close(answer.close)
    return response


def _public_location(upstream: Upstream, location: str, service_prefix: str, public_prefix: str) -> str:
    """A Location inside the service, rewritten to the gateway's address for the same thing."""
    if location.startswith(upstream.base_url):
        location = location[len(upstream.base_url) :] or "/"
    if location.startswith(service_prefix):
        return public_prefix + location[len(service_prefix) :]
    return location


def forward(target: str, path: str, *, location_prefixes: tuple[str, str] | None = None) -> Response:
    upstream = _upstream(target)
    query = urlencode(list(request.args.items(multi=True)))
    answer = upstream.send(
        request.method,
        path,
        headers=_request_headers(),
        data=_request_body(),
        params=query,
        stream=True,
        idempotent=request.method in ("GET", "HEAD"),
    )
    return _relay(upstream, answer, location_prefixes)


IMAGES_LOCATION = ("/images", "/api/v1/images")


class ImageFilenameConverter(BaseConverter):
    regex = IMAGE_FILENAME


bp.record_once(
    lambda state: state.app.url_map.converters.setdefault("image_filename", ImageFilenameConverter)
)


class ImagePath(Model):
    filename: str = Field(
        pattern=f"^{IMAGE_FILENAME}$", description="The name the server gave the image on upload."
    )


# The bodies below are the services' to judge: the models document them, and auth and images
# validate them (auth's 429s come back through the gateway as they are).
# -- auth -----------------------------------------------------------------------------------
# Limited per client here, at the edge, where the peer address means something; auth throttles
# per username behind it, and its 429 (with Retry-After) is relayed like any other answer.
@bp.post("/auth/register")
@operation(
    Operation(
        "register",
        "Create an account (passed on to the auth service).",
        "auth",
        {"201": (User, "The new account.")},
        ("400", "409", "413", "429", *UPSTREAM_ERRORS),
        body=Registration,
        validate_body=False,
    )
)
@rate_limited("register")
def register():
    return forward("auth", "/register")


@bp.post("/auth/login")
@operation(
    Operation(
        "login",
        "Exchange a username and password for a bearer token (auth service).",
        "auth",
        {"200": (Token, "An access token.")},
        ("400", "401", "413", "429", *UPSTREAM_ERRORS),
        body=Credentials,
        validate_body=False,
    )
)
@rate_limited("login")
def login():
    return forward("auth", "/login")


# -- images (the caller is verified here first; images checks the token itself as well) -------
@bp.post("/images/upload")
@operation(
    Operation(
        "uploadImage",
        "Upload an image (images service); streamed, never held whole by the gateway.",
        "images",
        {"201": (Image, "The stored image.")},
        ("400", "401", "413", "415", "422", *UPSTREAM_ERRORS),
        body=ImageUpload,
        body_type=MULTIPART,
        validate_body=False,
        secured=True,
    ),
    login=login_required,
)
def upload_image():
    # The body limit for this route is the app-wide one (see api._limit_request_bodies).
    return forward("images", "/upload", location_prefixes=IMAGES_LOCATION)


@bp.get("/images")
@operation(
    Operation(
        "listImages",
        "The caller's images, newest first.",
        "images",
        {"200": (ImagePage, "A page of the caller's images.")},
        ("400", "401", *UPSTREAM_ERRORS),
        query=ImagePageQuery,
        secured=True,
    ),
    login=login_required,
)
def list_images():
    return forward("images", "/images")


@bp.get("/images/stats")
@operation(
    Operation(
        "imageStats",
        "Count and bytes of the caller's images, also by content type.",
        "images",
        {"200": (ImageStats, "The caller's totals.")},
        ("401", *UPSTREAM_ERRORS),
        secured=True,
    ),
    login=login_required,
)
def image_stats():
    return forward("images", "/stats")


# Routing itself tells an image name from "stats" or "upload", so each URL allows only its methods.
@bp.get("/images/<image_filename:filename>")
@operation(
    Operation(
        "getImage",
        "One of the caller's images, streamed.",
        "images",
        {"200": ("image", "The image's bytes.")},
        ("401", "404", *UPSTREAM_ERRORS),
        path=ImagePath,
        secured=True,
    ),
    login=login_required,
)
def image(filename: str):
    return forward("images", f"/images/{quote(filename, safe='')}", location_prefixes=IMAGES_LOCATION)


@bp.delete("/images/<image_filename:filename>")
@operation(
    Operation(
        "deleteImage",
        "Delete one of the caller's images.",
        "images",
        {"204": (None, "Deleted.")},
        ("401", "404", *UPSTREAM_ERRORS),
        path=ImagePath,
        secured=True,
    ),
    login=login_required,
)
def delete_image(filename: str):
    return forward("images", f"/images/{quote(filename, safe='')}")
