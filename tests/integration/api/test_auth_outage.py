"""The auth service stopped or frozen (SIGSTOP) under real gunicorn: the gateway answers 503 or
504 within its timeouts, never hangs, never 500, and recovers by itself when auth is back.

The api runs in-process with a 1 s connect and 2 s read timeout and the token cache off, so
every authenticated request really asks auth.
"""

from __future__ import annotations

import time

import pytest

from api import READINESS_TIMEOUT_SECONDS
from devstack.wait import wait_until
from tests.integration.api.conftest import PASSWORD, assert_waited_for, assert_within, upstream_timeouts


@pytest.fixture
def client(make_api_app, flaky_auth, stand_in_images, clean_databases):
    app = make_api_app(flaky_auth.url, stand_in_images.url, TOKEN_CACHE_SECONDS="0")
    return app.test_client()


@pytest.fixture
def headers(client):
    body = {"username": "dora", "password": PASSWORD}
    assert client.post("/api/v1/auth/register", json=body).status_code == 201
    token = client.post("/api/v1/auth/login", json=body).get_json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_auth_stopped_gives_503_at_once_then_recovers_when_it_is_back(client, headers, flaky_auth):
    flaky_auth.stop()
    try:
        post, post_seconds = timed(
            lambda: client.post("/api/v1/posts", json={"content": "x"}, headers=headers)
        )
        login, _ = timed(
            lambda: client.post("/api/v1/auth/login", json={"username": "dora", "password": PASSWORD})
        )
        ready = client.get("/ready")
        public = client.get("/api/v1/posts")
    finally:
        flaky_auth.start()

    assert post.status_code == 503
    assert post.content_type == "application/problem+json"
    assert post.headers["Retry-After"] == "1"
    # A refused connection fails at once; the connect timeout is the most it may take.
    connect_timeout, _ = upstream_timeouts(client.application, "auth")
    assert_within(post_seconds, connect_timeout)
    assert login.status_code == 503
    assert ready.status_code == 200, "auth being down is every pod's problem, not a reason to drop this one"
    assert ready.get_json()["checks"]["auth"]["status"] == "unavailable"
    assert public.status_code == 200, "reading posts needs no auth service"

    assert client.post("/api/v1/posts", json={"content": "back"}, headers=headers).status_code == 201
    wait_until(
        lambda: client.get("/ready").get_json()["checks"]["auth"]["status"] == "ok",
        timeout=10,
        message="auth reported up again",
    )


def test_auth_frozen_gives_504_within_the_read_timeout_then_recovers(client, headers, flaky_auth):
    flaky_auth.pause()
    try:
        post, post_seconds = timed(
            lambda: client.post("/api/v1/posts", json={"content": "x"}, headers=headers)
        )
        mine, mine_seconds = timed(lambda: client.get("/api/v1/posts/my", headers=headers))
        login, login_seconds = timed(
            lambda: client.post("/api/v1/auth/login", json={"username": "dora", "password": PASSWORD})
        )
        ready, ready_seconds = timed(lambda: client.get("/ready"))
    finally:
        flaky_auth.resume()

    _, read_timeout = upstream_timeouts(client.application, "auth")
    for response, seconds in ((post, post_seconds), (mine, mine_seconds), (login, login_seconds)):
        assert response.status_code == 504
        assert response.content_type == "application/problem+json"
        assert response.get_json()["upstream"] == "auth"
        assert_waited_for(seconds, read_timeout)
    # The probe has its own, shorter timeout (tests/unit/api/test_readiness.py shows which).
    probe_timeout = min(READINESS_TIMEOUT_SECONDS, read_timeout)
    auth_check = ready.get_json()["checks"]["auth"]
    assert auth_check["status"] == "unavailable"
    assert_waited_for(auth_check["duration_ms"] / 1000, probe_timeout)
    assert_within(ready_seconds, probe_timeout)

    assert client.post("/api/v1/posts", json={"content": "back"}, headers=headers).status_code == 201
    assert len(client.get("/api/v1/posts/my", headers=headers).get_json()["items"]) == 1


def test_outcomes_are_counted_by_target(client, headers, flaky_auth):
    from tests.integration.api.test_gateway import metric

    def outcome(name):
        return metric(client, "api_upstream_requests_total", target="auth", outcome=name)

    before = {name: outcome(name) for name in ("success", "client_error", "timeout", "unavailable")}
    client.get("/api/v1/posts/my", headers=headers)
    client.get("/api/v1/posts/my", headers={"Authorization": "Bearer a.b.c"})
    flaky_auth.pause()
    try:
        client.get("/api/v1/posts/my", headers=headers)
    finally:
        flaky_auth.resume()
    flaky_auth.stop()
    try:
        client.get("/api/v1/posts/my", headers=headers)
    finally:
        flaky_auth.start()

    assert {name: outcome(name) - before[name] for name in before} == {
        "success": 1,
        "client_error": 1,
        "timeout": 1,
        "unavailable": 1,
    }
