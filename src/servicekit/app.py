"""The part of every service's app factory that is the same for all three."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from servicekit import context, errors, health, logs, metrics, tracing
from servicekit.config import ServiceSettings


def create_service_app(name: str, settings: ServiceSettings) -> Flask:
    """A Flask app with logging, request ids, problem+json errors, health and metrics.

    The service's own factory adds its database, blueprints and readiness checks.
    """
    logs.configure(name, settings.log_level)
    app = Flask(name)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    # werkzeug's int converter takes any Unicode digit (Arabic-Indic one is 1); ids in URLs are ASCII.
    app.url_map.converters["int"] = AsciiIntegerConverter
    context.install(app)
    tracing.install(app, name, settings.otlp_endpoint)
    metrics.install(app)
    errors.register_error_handlers(app)
    app.register_blueprint(health.bp)

    @app.before_request
    def _refuse_oversized_bodies() -> None:
        # Before authentication or routing reads anything, so every endpoint answers alike.
        limit = app.config["MAX_CONTENT_LENGTH"]
        if limit is not None and (request.content_length or 0) > limit:
            raise RequestEntityTooLarge()

    return app


class AsciiIntegerConverter(IntegerConverter):
    regex = r"[0-9]+"


def settings_of(app: Flask) -> ServiceSettings:
    return app.config["SETTINGS"]
