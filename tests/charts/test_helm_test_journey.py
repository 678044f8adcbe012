"""The `helm test` journey script, run against the real services (devstack: PostgreSQL, MinIO,
auth, images and api under gunicorn), exactly as the test pod runs it: only through the api."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest
import requests

from devstack.stack import Stack
from devstack.wait import free_port
from tests.charts.conftest import CHART

JOURNEY = CHART / "files" / "helm-test" / "journey.py"
# A valid 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def stack():
    stack = Stack(
        ports={name: free_port() for name in ("auth", "api", "images")},
        metrics_ports={name: free_port() for name in ("auth", "api", "images")},
    ).start()
    yield stack
    stack.stop()
    stack.minio.destroy()
    stack.postgres.destroy()


# As the chart passes them: tests.username and the password of the helm test Secret.
USERNAME, PASSWORD = "helm-test", "journey-password-from-the-secret-0123"


def run_journey(api_url: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(JOURNEY)],
        env={
            **os.environ,
            "API_URL": api_url,
            "JOURNEY_USERNAME": USERNAME,
            "JOURNEY_PASSWORD": PASSWORD,
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_journey_passes_against_the_running_services(stack):
    result = run_journey(f"http://127.0.0.1:{stack.ports['api']}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("journey passed")
    for step in (
        "register",
        "log in",
        "create a post",
        "upload an image",
        "download it",
        "delete the image and the post",
        "both are gone",
    ):
        assert f"-- {step}" in result.stdout


def test_the_journey_fails_with_the_reason_when_a_service_is_down(stack):
    stack.services["images"].pause()
    try:
        result = run_journey(
            f"http://127.0.0.1:{stack.ports['api']}", READY_WAIT_SECONDS="3", REQUEST_TIMEOUT_SECONDS="3"
        )
    finally:
        stack.services["images"].resume()
    assert result.returncode == 1
    assert "FAILED: api not ready" in result.stdout


def accounts(stack) -> list[str]:
    connection = stack.postgres.connect("auth_db")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT username FROM users ORDER BY id")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def api_session(stack, username=USERNAME, password=PASSWORD):
    api = f"http://127.0.0.1:{stack.ports['api']}/api/v1"
    login = requests.post(f"{api}/auth/login", json={"username": username, "password": password}, timeout=10)
    assert login.status_code == 200, login.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    return api, session


def test_repeated_runs_reuse_one_account_and_leave_nothing_else(stack):
    first = run_journey(f"http://127.0.0.1:{stack.ports['api']}")
    assert first.returncode == 0, first.stdout + first.stderr
    # An interrupted run leaves a post and an image behind; the next run clears them first.
    api, session = api_session(stack)
    assert (
        session.post(f"{api}/posts", json={"title": "left", "content": "behind"}, timeout=10).status_code
        == 201
    )
    upload = session.post(f"{api}/images/upload", files={"file": ("p.png", PNG, "image/png")}, timeout=10)
    assert upload.status_code == 201, upload.text
    second = run_journey(f"http://127.0.0.1:{stack.ports['api']}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{USERNAME} is already there" in second.stdout
    assert accounts(stack).count(USERNAME) == 1
    assert not [name for name in accounts(stack) if name != USERNAME], (
        "the journey registered another account"
    )
    assert session.get(f"{api}/posts/my", timeout=10).json()["items"] == []
    assert session.get(f"{api}/images", timeout=10).json()["items"] == []


def test_a_wrong_password_for_the_account_fails_with_the_reason(stack):
    setup = run_journey(f"http://127.0.0.1:{stack.ports['api']}")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    result = run_journey(
        f"http://127.0.0.1:{stack.ports['api']}", JOURNEY_PASSWORD="another-password-entirely-42"
    )
    assert result.returncode == 1
    assert f"FAILED: login as {USERNAME} refused: the account exists with another password" in result.stdout


def test_without_a_password_the_journey_says_what_is_missing(stack):
    result = run_journey(f"http://127.0.0.1:{stack.ports['api']}", JOURNEY_PASSWORD="")
    assert result.returncode == 1
    assert "FAILED: no password: set JOURNEY_PASSWORD_FILE" in result.stdout


def test_the_password_is_read_from_the_mounted_secret_file(stack, tmp_path):
    (tmp_path / "password").write_text(PASSWORD + "\n")
    result = run_journey(
        f"http://127.0.0.1:{stack.ports['api']}",
        JOURNEY_PASSWORD="",
        JOURNEY_PASSWORD_FILE=str(tmp_path / "password"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
