"""The api service: posts, and the gateway in front of auth and images (the only service the
ingress reaches)."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge

from api import clients, gateway, openapi, posts
from api.config import ApiSettings
from api.identity import TokenCache, Verifier
from api.models import db
from api.upstream import Upstream
from servicekit import config
from servicekit.app import create_service_app
from servicekit.database import init_database
from servicekit.health import add_check

# Readiness asks only "does it answer?" (GET /live), quickly: a slow dependency must make this
# pod not-ready, not make the probe itself time out.
READINESS_TIMEOUT_SECONDS = 1.0


def create_app(settings: ApiSettings | None = None) -> Flask:
    settings = settings or config.load(ApiSettings)
    app = create_service_app("api", settings)
    init_database(app, db, settings)
    _limit_request_bodies(app, settings)
    clients.install(app, settings)

    auth = Upstream(
        "auth",
        settings.auth_service_url,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=settings.upstream_read_timeout_seconds,
        pool_size=settings.upstream_pool_size,
        max_idle_seconds=settings.upstream_max_idle_seconds,
    )
    images = Upstream(
        "images",
        settings.images_service_url,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=settings.images_read_timeout_seconds,
        pool_size=settings.upstream_pool_size,
        max_idle_seconds=settings.upstream_max_idle_seconds,
    )
    app.extensions["api.upstreams"] = {"auth": auth, "images": images}
    app.extensions["api.verifier"] = Verifier(
        auth, TokenCache(settings.token_cache_size, settings.token_cache_seconds)
    )
    probe_timeout = min(READINESS_TIMEOUT_SECONDS, settings.upstream_read_timeout_seconds)
    # Reported by /health and /ready and exported as dependency_up either way; whether they also
    # gate readiness is a setting (see ApiSettings.ready_requires_upstreams for why it is off).
    gate = settings.ready_requires_upstreams
    add_check(app, "auth", lambda: auth.probe(probe_timeout), required=gate)
    add_check(app, "images", lambda: images.probe(probe_timeout), required=gate)

    app.register_blueprint(posts.bp)
    app.register_blueprint(gateway.bp)
    app.register_blueprint(openapi.bp)
    return app


def _limit_request_bodies(app: Flask, settings: ApiSettings) -> None:
    """Image uploads may be large; every other body is small JSON and gets the small limit."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + gateway.MULTIPART_ALLOWANCE_BYTES

    @app.before_request
    def _small_bodies_elsewhere() -> None:
        if request.endpoint == "gateway.upload_image":
            return
        # Also bounds a chunked body, which has no Content-Length to check up front.
        request.max_content_length = settings.max_request_bytes
        if (request.content_length or 0) > settings.max_request_bytes:
            raise RequestEntityTooLarge()
