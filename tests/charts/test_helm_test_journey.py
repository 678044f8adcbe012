"""The `helm test` journey script, run against the real services (devstack: PostgreSQL, MinIO,
auth, images and api under gunicorn), exactly as the test pod runs it: only through the api."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devstack.stack import Stack
from devstack.wait import free_port
from tests.charts.conftest import CHART

JOURNEY = CHART / "files" / "helm-test" / "journey.py"


@pytest.fixture(scope="module")
def stack():
    stack = Stack(ports={name: free_port() for name in ("auth", "api", "images")}).start()
    yield stack
    stack.stop()
    stack.minio.destroy()
    stack.postgres.destroy()


def run_journey(api_url: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(JOURNEY)],
        env={**os.environ, "API_URL": api_url, **env},
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
