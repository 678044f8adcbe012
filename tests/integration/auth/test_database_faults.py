"""A database that stops answering (frozen, or a path that drops packets) costs a bounded wait
and a 503, never a hung worker; and no statement parameter ever reaches an error or a log."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import auth
from auth.config import AuthSettings
from auth.models import db
from devstack.wait import wait_until
from servicekit import config
from servicekit.database import READINESS_DEADLINE_SECONDS
from tests.conftest import service_environ
from tests.integration.conftest import CONNECT_TIMEOUT_SECONDS, assert_503_within_connect_timeout

STATEMENT_TIMEOUT_SECONDS = 1
SLACK_SECONDS = 2  # servicekit waits this long past statement_timeout before giving up itself


@pytest.fixture
def client(own_postgres, token_keys):
    _, url = own_postgres
    environ = service_environ(
        "auth",
        url,
        token_keys,
        BCRYPT_ROUNDS="4",
        DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_SECONDS * 1000),
    )
    return auth.create_app(config.load(AuthSettings, environ)).test_client()


def _timed(call):
    started = time.monotonic()
    return call(), time.monotonic() - started


def test_a_frozen_database_gives_503_within_the_deadline_then_recovers(client, own_postgres):
    server, _ = own_postgres
    body = {"username": "alice", "password": "correct horse"}
    assert client.post("/register", json=body).status_code == 201

    server.pause()
    try:
        ready, ready_seconds = _timed(lambda: client.get("/ready"))
        login, login_seconds = _timed(lambda: client.post("/login", json=body))
    finally:
        server.resume()

    assert ready.status_code == 503
    assert ready.get_json()["checks"]["database"]["status"] == "unavailable"
    # The pooled connection's ping, then one fresh attempt: each waits the readiness deadline.
    assert READINESS_DEADLINE_SECONDS <= ready_seconds < 2 * READINESS_DEADLINE_SECONDS + 1
    assert login.status_code == 503
    assert login.mimetype == "application/problem+json"
    deadline = STATEMENT_TIMEOUT_SECONDS + SLACK_SECONDS
    assert login_seconds < 2 * deadline + 2  # a dead pooled connection, then a new one: each bounded

    wait_until(lambda: client.get("/ready").status_code == 200, timeout=30, message="ready again")
    assert client.post("/login", json=body).status_code == 200


def test_statement_parameters_never_appear_in_database_errors(client):
    row = {"username": "x" * 40, "password_hash": "$2b$12$" + "h" * 53}  # the name is too long
    with client.application.app_context(), pytest.raises(DBAPIError) as raised:
        db.session.execute(
            text("INSERT INTO users (username, password_hash) VALUES (:username, :password_hash)"), row
        )

    assert "$2b$" not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)


def test_a_database_that_never_completes_the_connect_gives_503_within_the_connect_timeout(
    unanswering_database_url, token_keys
):
    environ = service_environ(
        "auth",
        unanswering_database_url,
        token_keys,
        BCRYPT_ROUNDS="4",
        DB_CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT_SECONDS),
    )
    client = auth.create_app(config.load(AuthSettings, environ)).test_client()
    body = {"username": "alice", "password": "correct horse"}

    login = assert_503_within_connect_timeout("auth POST /login", lambda: client.post("/login", json=body))
    ready = assert_503_within_connect_timeout(
        "auth GET /ready", lambda: client.get("/ready"), waits_for_connect=False
    )

    assert login.get_json()["type"].endswith("/dependency-unavailable")
    assert ready.get_json()["checks"]["database"]["status"] == "unavailable"


def test_a_verify_without_a_valid_token_is_refused_before_any_database_connection(
    unanswering_database_url, token_keys
):
    environ = service_environ(
        "auth", unanswering_database_url, token_keys, DB_CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT_SECONDS)
    )
    client = auth.create_app(config.load(AuthSettings, environ)).test_client()
    started = time.monotonic()

    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = client.post("/verify", headers=headers)
        assert response.status_code == 401, (headers, response.get_json())

    assert time.monotonic() - started < CONNECT_TIMEOUT_SECONDS
