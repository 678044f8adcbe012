"""Fixtures of the auth tests that need servers of their own."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from devstack.postgres import PostgresServer
from servicekit import migrations


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own, so stopping or freezing it disturbs no other test."""
    server = PostgresServer().start()
    url = server.provision("auth")
    migrations.upgrade("auth", url)
    yield server, url
    server.resume()
    server.destroy()


@pytest.fixture
def time_passes(database_urls):
    """Move every login throttle's clock back, as if ``seconds`` had passed, instead of sleeping."""
    engine = create_engine(database_urls["auth"])

    def advance(seconds: float) -> None:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE login_throttles SET "
                    "next_attempt_at = next_attempt_at - make_interval(secs => :s), "
                    "last_attempt_at = last_attempt_at - make_interval(secs => :s)"
                ),
                {"s": seconds},
            )

    yield advance
    engine.dispose()
