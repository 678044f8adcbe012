"""The images service: users' images, bytes in the object store and metadata in PostgreSQL."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import RequestEntityTooLarge

from images import memory, routes
from images.budget import DecodeBudget
from images.config import ImagesSettings
from images.models import Owner, db
from images.storage import ObjectStore, ObjectStoreUnavailable
from images.uploads import MAX_UPLOAD_CONFIG, UploadRequest, request_body_limit
from servicekit import config
from servicekit.app import create_service_app
from servicekit.database import init_database
from servicekit.errors import problem_response
from servicekit.health import add_check
from servicekit.jwks import JwksClient
from servicekit.tokens import init_tokens, user_id_of

log = logging.getLogger(__name__)

MAX_USERNAME_CHARACTERS = 64


def create_app(settings: ImagesSettings | None = None) -> Flask:
    settings = settings or config.load(ImagesSettings)
    memory.return_large_blocks_to_the_system()
    app = create_service_app("images", settings)
    app.request_class = UploadRequest
    # Caps what the multipart parser reads; the file part itself is capped at MAX_UPLOAD_BYTES.
    app.config["MAX_CONTENT_LENGTH"] = request_body_limit(settings.max_upload_bytes)
    app.config[MAX_UPLOAD_CONFIG] = settings.max_upload_bytes
    # Also answers a lost or exhausted database with 503 dependency-unavailable.
    init_database(app, db, settings)
    # Tokens are checked here with auth's public keys; images holds no key that could sign one.
    app.extensions["images.jwks"] = jwks = JwksClient(
        settings.auth_jwks_url,
        timeout=settings.jwks_fetch_timeout_seconds,
        ttl=settings.jwks_cache_seconds,
        min_refresh_interval=settings.jwks_min_refresh_seconds,
    )
    init_tokens(
        app,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lookup_key=jwks.lookup,
        load_user=_owner_of_token,
    )

    store = ObjectStore(settings)
    app.extensions["images.store"] = store
    # One per worker process: the threads of a worker share it.
    app.extensions["images.decode_budget"] = DecodeBudget(
        settings.decode_memory_budget_bytes, settings.decode_wait_seconds
    )
    add_check(app, "object_store", store.check)
    if settings.s3_create_bucket:
        try:
            store.ensure_bucket()
        except ObjectStoreUnavailable:
            # Not fatal: the readiness check creates it once the object store answers.
            log.warning("bucket not created at start", extra={"bucket": settings.s3_bucket})

    app.register_error_handler(RequestEntityTooLarge, routes.refused_too_large)
    app.register_error_handler(ObjectStoreUnavailable, _object_store_unavailable)
    app.register_blueprint(routes.bp)
    return app


def _owner_of_token(claims: dict) -> Owner | None:
    # The signature proves the auth service issued the token; its claims must still make sense.
    user_id, username = user_id_of(claims), claims.get("username")
    if user_id is None:
        return None
    if not isinstance(username, str) or not 0 < len(username) <= MAX_USERNAME_CHARACTERS:
        return None
    return Owner(id=user_id, username=username)


def _object_store_unavailable(_error: ObjectStoreUnavailable):
    return problem_response(
        503,
        "The object store is unavailable; try again shortly.",
        type_="object-store-unavailable",
        headers={"Retry-After": "5"},
    )
