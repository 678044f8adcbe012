"""Fixtures every test may use: real servers for the integration tests, and helpers.

The session starts one PostgreSQL server and one MinIO server on free loopback ports
(devstack), provisions each service's database and user as the chart does, applies the
migrations once, and tears everything down at the end. Each test then starts from empty
tables (``clean_databases``) and an empty bucket.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from werkzeug.test import Client

from devstack.minio import MinioServer
from devstack.postgres import PostgresServer
from servicekit import metrics, migrations
from tests.token_keys import JwksServer, KeyPair, TokenKeys

PROJECT_ROOT = Path(__file__).resolve().parents[1]


E2E_TESTS = PROJECT_ROOT / "tests" / "e2e"


def pytest_ignore_collect(collection_path, config):
    """tests/e2e runs inside the local cluster (`ci/cluster/run.sh pytest tests/e2e`, as `make test`
    does): a plain `pytest` leaves it out unless asked for it by path."""
    if collection_path != E2E_TESTS or "CLUSTER_NETNS" in os.environ:
        return None
    asked = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not any(path == E2E_TESTS or E2E_TESTS in path.parents for path in asked)


def pytest_collection_modifyitems(items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(PROJECT_ROOT / "tests").parts
        if parts[0] == "integration":
            item.add_marker(pytest.mark.integration)
        elif parts[0] == "charts":
            item.add_marker(pytest.mark.charts)


@pytest.fixture
def scrape_metrics():
    """GET /metrics of this process, as the metrics port serves it (the app port does not)."""

    def scrape() -> str:
        response = Client(metrics.metrics_app).get("/metrics")
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data(as_text=True)

    return scrape


@pytest.fixture(scope="session")
def token_keys():
    """auth's signing key for the session, and a JWKS server publishing its public key (what
    images fetches unless a test points it at a real auth service)."""
    pair = KeyPair.generate()
    server = JwksServer([pair]).start()
    yield TokenKeys(pair, server)
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def database_urls(postgres) -> dict[str, str]:
    """Each service's own database URL, with its schema migrated to head."""
    urls = {}
    for service in migrations.SERVICES:
        urls[service] = postgres.provision(service)
        if (PROJECT_ROOT / "src" / service / "migrations" / "env.py").exists():
            migrations.upgrade(service, urls[service])
    return urls


@pytest.fixture(scope="session")
def minio():
    server = MinioServer().start()
    yield server
    server.destroy()


def truncate_all_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        tables = (
            connection.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename NOT LIKE 'alembic_version%'"
                )
            )
            .scalars()
            .all()
        )
        if tables:
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def clean_databases(database_urls):
    yield database_urls
    for url in database_urls.values():
        truncate_all_tables(url)


def service_environ(service: str, database_url: str, token_keys: TokenKeys, **extra: str) -> dict[str, str]:
    """The environment a service gets in the chart, pointed at the test servers: the signing
    key for auth alone, the JWKS URL for images, no token key at all for the api."""
    environ = {"DATABASE_URL": database_url, "LOG_LEVEL": "INFO"}
    if service == "auth":
        environ["JWT_SIGNING_KEY"] = token_keys.signing_pem
    if service == "images":
        environ["AUTH_JWKS_URL"] = token_keys.jwks_url
    return {**environ, **extra}
