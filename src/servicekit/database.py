"""The service's PostgreSQL connection: pooled, bounded in time, and self-healing."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

from servicekit.config import ServiceSettings
from servicekit.health import add_check


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

    def database_check() -> None:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    add_check(app, "database", database_check)
