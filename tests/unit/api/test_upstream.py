"""How upstream failures map to answers, with the transport replaced by stand-ins (no network)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import requests
from urllib3.exceptions import NewConnectionError, ProtocolError

from api.config import ApiSettings
from api.upstream import IdleLimitedHTTPConnectionPool, RequestBody, Upstream, chunked_body
from servicekit.errors import ApiError


@pytest.fixture
def upstream():
    return Upstream("images", "http://images.invalid:3003/", connect_timeout=1, read_timeout=2)


def failing_with(upstream: Upstream, exc: Exception) -> ApiError:
    with mock.patch.object(upstream.session, "request", side_effect=exc), pytest.raises(ApiError) as caught:
        upstream.send("GET", "/images")
    return caught.value


def test_connection_refused_is_503_unavailable(upstream):
    refused = requests.ConnectionError(NewConnectionError(None, "Connection refused"))
    error = failing_with(upstream, refused)
    assert (error.status, error.type) == (503, "upstream-unavailable")
    assert error.headers == {"Retry-After": "1"}


def test_connect_timeout_is_503_and_read_timeout_is_504(upstream):
    assert failing_with(upstream, requests.ConnectTimeout("slow connect")).status == 503
    assert failing_with(upstream, requests.ReadTimeout("slow answer")).status == 504


def test_a_dropped_connection_or_garbage_is_502(upstream):
    dropped = requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError()))
    assert failing_with(upstream, dropped).status == 502
    assert failing_with(upstream, requests.exceptions.InvalidHeader("bad header")).status == 502


def test_a_timeout_while_sending_is_504(upstream):
    stalled = requests.ConnectionError(ProtocolError("Connection aborted.", TimeoutError("timed out")))
    assert failing_with(upstream, stalled).status == 504


def test_calls_use_the_timeouts_no_redirects_and_the_base_url(upstream):
    with mock.patch.object(upstream.session, "request") as request:
        request.return_value.status_code = 200
        upstream.send("GET", "/images", params="limit=5")
    args, kwargs = request.call_args
    assert args == ("GET", "http://images.invalid:3003/images?limit=5")
    assert kwargs["timeout"] == (1, 2)
    assert kwargs["allow_redirects"] is False


def test_nothing_is_retried(upstream):
    adapter = upstream.session.get_adapter("http://images.invalid")
    assert adapter.max_retries.total == 0
    assert adapter.max_retries.read is False
    assert upstream.session.trust_env is False


def test_a_body_of_known_length_is_sent_with_that_length_not_chunked():
    body = RequestBody(io.BytesIO(b"x" * 200_000), 200_000)
    prepared = requests.Request("POST", "http://images.invalid/upload", data=body).prepare()
    assert prepared.headers["Content-Length"] == "200000"
    assert "Transfer-Encoding" not in prepared.headers
    assert b"".join(body) == b"x" * 200_000


def test_a_body_of_unknown_length_is_sent_chunked():
    prepared = requests.Request(
        "POST", "http://images.invalid/upload", data=chunked_body(io.BytesIO(b"abc"))
    ).prepare()
    assert prepared.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in prepared.headers


class PooledConnection:
    """Stands in for a urllib3 connection: connected until closed."""

    def __init__(self) -> None:
        self.is_connected = True
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        self.is_connected = False


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("api.upstream.time.monotonic", lambda: now[0])
    return now


def pool_holding(connection: PooledConnection, max_idle_seconds: float) -> IdleLimitedHTTPConnectionPool:
    pool = IdleLimitedHTTPConnectionPool("images.invalid", 3003, maxsize=1, max_idle_seconds=max_idle_seconds)
    pool._get_conn()  # take the empty slot, as a request does, and give back a used connection
    pool._put_conn(connection)
    return pool


def test_a_connection_idle_within_the_limit_is_reused_as_it_is(clock):
    connection = PooledConnection()
    pool = pool_holding(connection, max_idle_seconds=2)
    clock[0] += 1.9
    assert pool._get_conn() is connection
    assert connection.closed == 0


def test_a_connection_idle_past_the_limit_is_closed_before_reuse_so_it_reconnects(clock):
    connection = PooledConnection()
    pool = pool_holding(connection, max_idle_seconds=2)
    clock[0] += 2.1
    assert pool._get_conn() is connection
    assert connection.closed == 1
    # Its idle time starts again when it next goes back to the pool.
    pool._put_conn(connection)
    connection.is_connected = True
    assert pool._get_conn() is connection
    assert connection.closed == 1


def test_every_upstream_pool_limits_idle_connections_below_the_services_keep_alive():
    upstream = Upstream("auth", "http://auth.invalid:3001", connect_timeout=1, read_timeout=1)
    pool = upstream.session.get_adapter("http://auth.invalid").poolmanager.connection_from_url(
        "http://auth.invalid:3001"
    )
    assert isinstance(pool, IdleLimitedHTTPConnectionPool)
    assert pool.max_idle_seconds == ApiSettings.upstream_max_idle_seconds < gunicorn_keepalive_default()


def gunicorn_keepalive_default() -> float:
    # In a process of its own: the configuration module sets environment variables on import.
    environ = {key: value for key, value in os.environ.items() if key != "GUNICORN_KEEPALIVE"}
    environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[3] / "src")
    printed = subprocess.run(
        [sys.executable, "-c", "import servicekit.gunicorn_conf as conf; print(conf.keepalive)"],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(printed)
