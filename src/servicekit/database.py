"""The service's PostgreSQL connection: pooled, bounded in time, and self-healing."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from prometheus_client import Gauge
from sqlalchemy import event, exc, text

from servicekit.config import ServiceSettings
from servicekit.errors import problem_response
from servicekit.health import add_check

DB_POOL_CONNECTIONS = Gauge(
    "db_pool_connections",
    "Database connections held by the pools of this service's workers, by state.",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_LIMIT = Gauge(
    "db_pool_max_connections",
    "Most connections the pools of this service's workers may open (size + overflow).",
    multiprocess_mode="livesum",
)


def _instrument_pool(engine, settings: ServiceSettings) -> None:
    in_use, idle = DB_POOL_CONNECTIONS.labels("in_use"), DB_POOL_CONNECTIONS.labels("idle")
    DB_POOL_LIMIT.set(settings.db_pool_size + settings.db_max_overflow)
    event.listen(engine, "connect", lambda *_: idle.inc())
    event.listen(engine, "checkout", lambda *_: (idle.dec(), in_use.inc()))
    event.listen(engine, "checkin", lambda *_: (in_use.dec(), idle.inc()))
    event.listen(engine, "close", lambda *_: idle.dec())
    event.listen(engine, "close_detached", lambda *_: idle.dec())


def engine_options(settings: ServiceSettings, application_name: str) -> dict:
    return {
        # A connection that died while the database was away is replaced, not handed out.
        "pool_pre_ping": True,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_connect_timeout,
        "pool_recycle": 1800,
        "connect_args": {
            "connect_timeout": settings.db_connect_timeout,
            "application_name": application_name,
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
        },
    }


def init_database(app: Flask, db: SQLAlchemy, settings: ServiceSettings) -> None:
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.database_url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(settings, app.name)
    db.init_app(app)
    with app.app_context():
        _instrument_pool(db.engine, settings)

    def database_check() -> None:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    add_check(app, "database", database_check)

    def database_unavailable(error: Exception):
        # Lost connections and an exhausted pool are the database being away, not a bug.
        app.logger.warning("database unavailable", extra={"error": str(error).splitlines()[0][:300]})
        return problem_response(
            503,
            "The database is unavailable; try again shortly.",
            type_="dependency-unavailable",
            headers={"Retry-After": "5"},
        )

    app.register_error_handler(exc.OperationalError, database_unavailable)
    app.register_error_handler(exc.InterfaceError, database_unavailable)
    app.register_error_handler(exc.TimeoutError, database_unavailable)
