"""The api service against real neighbours: the auth service under gunicorn, and either the
images service or a stand-in upstream (upstream_app.py) under gunicorn.

Two ways to run the api itself:
- in-process (``api_app`` / ``api_client``): Flask's test client, the real database and the real
  auth process; quick, and the assertions can look at anything;
- under gunicorn (``live_api``): for streaming, memory, and the schemathesis run, which must
  see exactly what a client sees.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import requests

import api
from api.config import ApiSettings
from devstack.services import ServiceProcess
from devstack.wait import free_port, wait_until
from servicekit import config
from tests.conftest import PROJECT_ROOT, service_environ

PASSWORD = "correct horse battery"
# A loaded CI machine can be slow to schedule a thread: an upper bound this far above the
# configured timeout still tells a timeout that was honoured from a hang.
TIMEOUT_SLACK_SECONDS = 2.0


def upstream_timeouts(app, target: str) -> tuple[float, float]:
    """The (connect, read) timeouts the app was configured with for calls to ``target``."""
    return app.extensions["api.upstreams"][target].timeout


def assert_waited_for(seconds: float, timeout: float) -> None:
    """The call waited out its timeout (not cut short) and then stopped (no hang)."""
    assert 0.9 * timeout <= seconds < timeout + TIMEOUT_SLACK_SECONDS, (
        f"took {seconds:.2f} s with a {timeout} s timeout"
    )


def assert_within(seconds: float, timeout: float) -> None:
    """The call ended no later than its timeout allows (it may end at once)."""
    assert seconds < timeout + TIMEOUT_SLACK_SECONDS, f"took {seconds:.2f} s with a {timeout} s timeout"


class UpstreamProcess:
    """tests/integration/api/upstream_app.py under gunicorn (threads, like the real services)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.log_path = Path(tempfile.mkdtemp(prefix="platform-upstream-")) / "upstream.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UpstreamProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - open for the process's life
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "1",
                "--threads",
                "16",
                "--bind",
                f"127.0.0.1:{self.port}",
                "tests.integration.api.upstream_app:app",
            ],
            env={**os.environ, "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{PROJECT_ROOT / 'src'}"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        wait_until(
            lambda: requests.get(f"{self.url}/live", timeout=1).ok,
            timeout=30,
            message=f"the stand-in upstream (log: {self.log_path})",
        )
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()


class LoopbackServer:
    """A raw TCP server on a free loopback port; each connection is handed to ``_converse`` in a
    thread of its own. Subclasses say what it answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._converse, args=(connection,), daemon=True).start()

    def _converse(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class GarbageServer(LoopbackServer):
    """Accepts connections and answers bytes that are not HTTP: what a broken service sends."""

    def _converse(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(2)
            try:
                connection.recv(65536)
                connection.sendall(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n")
            except OSError:
                pass


class KeepAliveCutter(LoopbackServer):
    """An HTTP service whose keep-alive ends just as a client reuses the connection: it answers
    the first request on each connection (200, JSON that fits a verify and a list), and resets
    the connection when a second request arrives on it, without answering."""

    ANSWER = b'{"valid": true, "user_id": 1, "username": "alice", "items": []}'

    def __init__(self) -> None:
        self.requests: list[str] = []  # "METHOD path" of every request that arrived
        super().__init__()

    def _converse(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        reader = connection.makefile("rb")
        try:
            for number in (1, 2):
                request_line = reader.readline().decode().strip()
                if not request_line:
                    return
                self.requests.append(" ".join(request_line.split()[:2]))
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if number == 2:
                    # Linger 0: close with a reset, as a server whose keep-alive just ended does.
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                reader.read(length)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(self.ANSWER)}\r\n\r\n".encode()
                    + self.ANSWER
                )
        except OSError:
            pass
        finally:
            reader.close()
            connection.close()


@pytest.fixture
def keep_alive_cutter():
    server = KeepAliveCutter()
    yield server
    server.close()


def api_environ(database_url: str, token_keys: str, auth_url: str, images_url: str, **extra: str) -> dict:
    return service_environ(
        "api", database_url, token_keys, AUTH_SERVICE_URL=auth_url, IMAGES_SERVICE_URL=images_url, **extra
    )


@pytest.fixture(scope="session")
def auth_service(database_urls, token_keys):
    """The real auth service under gunicorn, shared by the session (never stopped by a test)."""
    environ = service_environ("auth", database_urls["auth"], token_keys, BCRYPT_ROUNDS="4")
    service = ServiceProcess("auth", free_port(), environ).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def flaky_auth(database_urls, token_keys):
    """An auth service of its own, for the tests that stop and freeze it."""
    environ = service_environ("auth", database_urls["auth"], token_keys, BCRYPT_ROUNDS="4")
    service = ServiceProcess("auth", free_port(), environ, workers=1).start()
    yield service
    service.resume()
    service.stop()


@pytest.fixture(scope="session")
def stand_in_images():
    upstream = UpstreamProcess().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def garbage_server():
    server = GarbageServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def make_api_app(database_urls, token_keys):
    """An in-process api app wired to the given neighbours, with short timeouts."""

    def make(auth_url: str, images_url: str, **extra: str):
        settings = {
            "UPSTREAM_CONNECT_TIMEOUT_SECONDS": "1",
            "UPSTREAM_READ_TIMEOUT_SECONDS": "2",
            "IMAGES_READ_TIMEOUT_SECONDS": "2",
            **extra,
        }
        environ = api_environ(database_urls["api"], token_keys, auth_url, images_url, **settings)
        return api.create_app(config.load(ApiSettings, environ))

    return make


@pytest.fixture(scope="session")
def api_app(make_api_app, auth_service, stand_in_images):
    return make_api_app(auth_service.url, stand_in_images.url)


@pytest.fixture
def api_client(api_app, clean_databases):
    return api_app.test_client()


@pytest.fixture
def account(api_client):
    """Register a user through the gateway and log in: returns (user, Authorization headers)."""

    def make(username: str = "alice") -> tuple[dict, dict]:
        registered = api_client.post(
            "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.get_json()
        logged_in = api_client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert logged_in.status_code == 200, logged_in.get_json()
        return registered.get_json(), {"Authorization": f"Bearer {logged_in.get_json()['access_token']}"}

    return make


@pytest.fixture(scope="session")
def live_api(database_urls, token_keys, auth_service, stand_in_images):
    """The api under gunicorn (2 workers), in front of the real auth and the stand-in images."""
    environ = api_environ(
        database_urls["api"],
        token_keys,
        auth_service.url,
        stand_in_images.url,
        UPSTREAM_READ_TIMEOUT_SECONDS="5",
        IMAGES_READ_TIMEOUT_SECONDS="10",
    )
    service = ServiceProcess("api", free_port(), environ).start()
    yield service
    service.stop()


def _account_maker(gateway_url: str):
    def make(username: str = "alice") -> tuple[dict, dict]:
        body = {"username": username, "password": PASSWORD}
        registered = requests.post(f"{gateway_url}/api/v1/auth/register", json=body, timeout=10)
        assert registered.status_code == 201, registered.text
        logged_in = requests.post(f"{gateway_url}/api/v1/auth/login", json=body, timeout=10)
        assert logged_in.status_code == 200, logged_in.text
        return registered.json(), {"Authorization": f"Bearer {logged_in.json()['access_token']}"}

    return make


@pytest.fixture
def live_account(live_api, clean_databases):
    """Register and log in through the live gateway: returns (user, Authorization headers)."""

    return _account_maker(live_api.url)


@pytest.fixture(scope="session")
def images_service(database_urls, token_keys, minio, auth_service):
    """The real images service under gunicorn, on the session's MinIO, checking tokens with
    the keys the real auth service publishes."""
    environ = service_environ(
        "images",
        database_urls["images"],
        token_keys,
        AUTH_JWKS_URL=f"{auth_service.url}/.well-known/jwks.json",
        S3_ENDPOINT_URL=minio.endpoint,
        S3_ACCESS_KEY_ID=minio.access_key,
        S3_SECRET_ACCESS_KEY=minio.secret_key,
        S3_BUCKET="images",
        S3_REGION="us-east-1",
        S3_PATH_STYLE="true",
        S3_CREATE_BUCKET="true",
    )
    service = ServiceProcess("images", free_port(), environ).start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def gateway(database_urls, token_keys, auth_service, images_service):
    """The whole path a client takes: the api under gunicorn, real auth, real images."""
    # Limits high enough that the contract run checks what auth answers, not mostly the
    # gateway's 429 (the limits themselves: test_rate_limits.py).
    environ = api_environ(
        database_urls["api"],
        token_keys,
        auth_service.url,
        images_service.url,
        RATE_LIMIT_LOGIN="100000",
        RATE_LIMIT_REGISTER="100000",
    )
    service = ServiceProcess("api", free_port(), environ).start()
    yield service
    service.stop()


@pytest.fixture
def gateway_account(gateway, clean_databases):
    """Register and log in through the gateway: returns (user, Authorization headers)."""

    return _account_maker(gateway.url)
