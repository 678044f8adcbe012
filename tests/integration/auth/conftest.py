"""Fixtures of the auth tests that need servers of their own."""

from __future__ import annotations

import pytest

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
