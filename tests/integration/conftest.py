"""Apps and clients of the services, bound to the session's real servers."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psycopg2.extensions
import pytest
from psycopg2 import sql

import auth
from auth.config import AuthSettings
from devstack.wait import wait_until
from servicekit import config
from tests.conftest import service_environ


@pytest.fixture(scope="session")
def auth_settings(database_urls, token_keys) -> AuthSettings:
    # bcrypt's lowest cost keeps the suite fast; the cost itself is tested separately.
    environ = service_environ("auth", database_urls["auth"], token_keys, BCRYPT_ROUNDS="4")
    return config.load(AuthSettings, environ)


@pytest.fixture(scope="session")
def auth_app(auth_settings):
    return auth.create_app(auth_settings)


@pytest.fixture
def auth_client(auth_app, clean_databases):
    return auth_app.test_client()


@pytest.fixture
def register_user(auth_client):
    def register(username: str = "alice", password: str = "correct horse battery") -> dict:
        response = auth_client.post("/register", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return register


@pytest.fixture
def login(auth_client):
    def login(username: str = "alice", password: str = "correct horse battery") -> str:
        response = auth_client.post("/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]

    return login


# A database that does not answer the connect: the settings the fault tests give a service, and
# how late past DB_CONNECT_TIMEOUT_SECONDS its 503 may come.
CONNECT_TIMEOUT_SECONDS = 2
CONNECT_TIMEOUT_SLACK_SECONDS = 1.0


class SilentListener:
    """Accepts TCP connections and never sends a byte: a database that hung after accept()."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


def _connect_completes(port: int, within: float) -> tuple[socket.socket, bool]:
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(("127.0.0.1", port))
    _, writable, _ = select.select([], [client], [], within)
    return client, bool(writable) and client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


class FullBacklogListener:
    """Listens but never accepts, with its accept queue full: a new connect's SYN goes unanswered
    (the kernel drops it), as with a database host whose listen backlog is exhausted."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers: list[socket.socket] = []
        # Fill the queue until a connect stays pending; the kernel decides how many fit.
        for _ in range(64):
            client, completed = _connect_completes(self.port, within=0.5)
            self.fillers.append(client)
            if not completed:
                return
        raise AssertionError("the listen backlog never filled up")

    def close(self) -> None:
        for client in self.fillers:
            client.close()
        self.sock.close()


@pytest.fixture(params=["accepts-and-never-answers", "never-accepts"])
def unanswering_database_url(request) -> Iterator[str]:
    """A database URL whose server never completes the connect, in each of two ways."""
    listener = SilentListener() if request.param == "accepts-and-never-answers" else FullBacklogListener()
    yield f"postgresql+psycopg2://nobody:nothing@127.0.0.1:{listener.port}/nothing"
    listener.close()


def assert_503_within_connect_timeout(what: str, call: Callable, *, waits_for_connect: bool = True):
    """The call answers 503 problem+json no later than DB_CONNECT_TIMEOUT_SECONDS (+ slack).

    ``waits_for_connect``: the call waits out the connect timeout itself (it is not cut short by
    a shorter deadline, as readiness is), so its time also has a lower bound.
    """
    started = time.monotonic()
    response = call()
    elapsed = time.monotonic() - started
    print(f"{what}: {response.status_code} in {elapsed:.2f} s, connect timeout {CONNECT_TIMEOUT_SECONDS} s")
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert elapsed < CONNECT_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SLACK_SECONDS, f"{what} took {elapsed:.2f} s"
    if waits_for_connect:
        assert elapsed >= 0.9 * CONNECT_TIMEOUT_SECONDS, f"{what} gave up early, after {elapsed:.2f} s"
    return response


@pytest.fixture
def database_round_trips():
    """A block's waits on the database server: each is one round trip (servicekit.database waits
    through psycopg2's wait callback). Use with a warm pool, so that no connect is counted."""

    @contextlib.contextmanager
    def counting() -> Iterator[list[int]]:
        real = psycopg2.extensions.get_wait_callback()
        waits = [0]

        def counted(connection) -> None:
            waits[0] += 1
            real(connection)

        psycopg2.extensions.set_wait_callback(counted)
        try:
            yield waits
        finally:
            psycopg2.extensions.set_wait_callback(real)

    return counting


def end_backends(postgres, condition: str, parameters: tuple = ()) -> list[int]:
    """End the backends that ``condition`` (SQL on pg_stat_activity) selects, as a restart or a
    failover does, and wait until they are gone; returns their pids."""
    admin = postgres.connect()
    admin.autocommit = True  # pg_stat_activity is read once per transaction
    try:
        with admin.cursor() as cursor:
            # The condition is SQL a test writes; its values go as parameters.
            statement = sql.SQL(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND ({})"
            ).format(sql.SQL(condition))
            cursor.execute(statement, parameters)
            ended = [pid for pid, _ in cursor.fetchall()]

            def all_gone() -> bool:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (ended,))
                return cursor.fetchone()[0] == 0

            wait_until(all_gone, timeout=10, message=f"backends {ended} to end")
    finally:
        admin.close()
    return ended
