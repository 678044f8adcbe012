"""The running platform the observability tests watch: devstack's Stack on free ports.

One stack per session (PostgreSQL, MinIO and the three services, each under
real gunicorn), with some traffic of every kind already sent, so that every counter and
histogram the dashboards and alerts name has samples.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field

import pytest
import requests
from PIL import Image

from devstack.stack import Stack
from devstack.wait import free_port
from tests.observability.promql import PROMETHEUS, PROMTOOL, SERVICES

TIMEOUT = 10


# Start order: the gateway last, once what it calls answers.
STARTED_SERVICES = ("auth", "images", "api")


@pytest.fixture(scope="session")
def promtool() -> str:
    assert PROMTOOL.exists(), "promtool missing: run `bash ci/install.sh`"
    return str(PROMTOOL)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    assert PROMETHEUS.exists(), "prometheus missing: run `bash ci/install.sh`"
    return str(PROMETHEUS)


def png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Traffic:
    """What drive_traffic did, for the tests that look for it afterwards."""

    request_ids: dict[str, str] = field(default_factory=dict)
    token: str | None = None


def _post(url: str, **kwargs) -> requests.Response:
    return requests.post(url, timeout=TIMEOUT, **kwargs)


def drive_traffic(stack: Stack) -> Traffic:
    """Requests of every outcome the services count, through the gateway where it exists."""
    traffic = Traffic()
    services = stack.services
    auth = services["auth"].url
    user, password = f"u{uuid.uuid4().hex[:10]}", "correct horse battery staple"

    # auth directly: each registration and login outcome once.
    assert _post(f"{auth}/register", json={"username": user, "password": password}).status_code == 201
    assert _post(f"{auth}/register", json={"username": user, "password": password}).status_code == 409
    assert _post(f"{auth}/register", json={"username": "x"}).status_code == 400
    assert _post(f"{auth}/login", json={"username": user, "password": "wrong password"}).status_code == 401
    assert _post(f"{auth}/login", json={"username": user}).status_code == 400
    login = _post(f"{auth}/login", json={"username": user, "password": password})
    assert login.status_code == 200
    token = login.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert _post(f"{auth}/verify", headers=bearer).status_code == 200
    traffic.token = token
    # A username past its free failures: the next attempt is throttled without a bcrypt check.
    guessed = f"u{uuid.uuid4().hex[:10]}"
    for _ in range(5):
        assert _post(f"{auth}/login", json={"username": guessed, "password": "guess"}).status_code == 401
    assert _post(f"{auth}/login", json={"username": guessed, "password": "guess"}).status_code == 429

    if "images" in services:
        images = services["images"].url
        stored = _post(
            f"{images}/upload", headers=bearer, files={"file": ("dot.png", png_bytes(), "image/png")}
        )
        assert stored.status_code == 201, stored.text
        rejected = _post(
            f"{images}/upload", headers=bearer, files={"file": ("fake.png", b"not an image", "image/png")}
        )
        assert 400 <= rejected.status_code < 500, rejected.text
        assert requests.get(f"{images}/images", headers=bearer, timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{images}/stats", headers=bearer, timeout=TIMEOUT).status_code == 200

    if "api" in services:
        api = f"{services['api'].url}/api/v1"
        second = f"u{uuid.uuid4().hex[:10]}"
        assert (
            _post(f"{api}/auth/register", json={"username": second, "password": password}).status_code == 201
        )
        logged_in = _post(f"{api}/auth/login", json={"username": second, "password": password})
        assert logged_in.status_code == 200
        api_bearer = {"Authorization": f"Bearer {logged_in.json()['access_token']}"}
        created = _post(f"{api}/posts", headers=api_bearer, json={"title": "hello", "content": "first post"})
        assert created.status_code == 201, created.text
        assert requests.get(f"{api}/posts", timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{api}/posts/my", headers=api_bearer, timeout=TIMEOUT).status_code == 200
        post_id = created.json()["id"]
        deleted = requests.delete(f"{api}/posts/{post_id}", headers=api_bearer, timeout=TIMEOUT)
        assert deleted.status_code in (200, 204), deleted.text
        if "images" in services:
            # One request id that the gateway, auth (token check) and images all serve.
            request_id = f"trace-{uuid.uuid4().hex}"
            upload = _post(
                f"{api}/images/upload",
                headers={**api_bearer, "X-Request-ID": request_id},
                files={"file": ("dot.png", png_bytes((16, 16)), "image/png")},
            )
            assert upload.status_code == 201, upload.text
            traffic.request_ids["gateway_upload"] = request_id
            listed = requests.get(f"{api}/images", headers=api_bearer, timeout=TIMEOUT)
            assert listed.status_code == 200
    return traffic


@pytest.fixture(scope="session")
def platform_stack():
    """PostgreSQL, MinIO and the three services, started once; MinIO's metrics are public."""
    stack = Stack(
        ports={name: free_port() for name in SERVICES},
        metrics_ports={name: free_port() for name in SERVICES},
    )
    try:
        # MinIO reads it from its environment, as the Bitnami chart sets it
        # (metrics.prometheusAuthType: public); only this stack's MinIO gets it.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MINIO_PROMETHEUS_AUTH_TYPE", "public")
            stack.start(only=STARTED_SERVICES)
        yield stack
    finally:
        stack.stop()
        for server in (getattr(stack, "postgres", None), getattr(stack, "minio", None)):
            if server is not None:
                server.destroy()


@pytest.fixture(scope="session")
def traffic(platform_stack) -> Traffic:
    return drive_traffic(platform_stack)
