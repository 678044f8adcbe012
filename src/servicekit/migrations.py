"""Schema migrations (Alembic), one explicit command per service:

    platform-migrate auth        # or api, images; reads DATABASE_URL

Each service keeps its revisions in ``<service>/migrations/versions``; their env.py calls
``run_env``. Concurrent runs (several pods starting at once) serialise on a PostgreSQL
advisory lock, so a revision is applied exactly once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import zlib

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, pool, text

SERVICES = ("auth", "api", "images")
log = logging.getLogger("servicekit.migrations")


def alembic_config(service: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", f"{service}:migrations")
    # ConfigParser interpolation would choke on a '%' in a URL-encoded password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["service"] = service
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py (online mode only)."""
    config = context.config
    service = config.attributes.get("service", "service")
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    lock_id = zlib.crc32(f"platform-migrations:{service}".encode())
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                version_table=f"alembic_version_{service}",
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            connection.commit()
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply a service's schema migrations.")
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='{"level":"%(levelname)s","message":"%(message)s"}')
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        sys.stderr.write("DATABASE_URL is required\n")
        return 2
    upgrade(args.service, database_url, args.revision)
    log.info("migrations applied for %s up to %s", args.service, args.revision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
