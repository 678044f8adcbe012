"""gunicorn_worker_exits_total: the worker restarts Kubernetes never sees, counted by the master."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests

from devstack.services import ServiceProcess
from devstack.wait import free_port, wait_until
from tests.observability.promql import scraped_series

# Real PostgreSQL, MinIO and gunicorn (devstack).
pytestmark = pytest.mark.integration


def workers_of(service: ServiceProcess) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(service.process.pid)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def sample(service: ServiceProcess, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{service.metrics_url}/metrics", timeout=5).text
    assert name in scraped_series(text)
    return sum(
        s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    )


def test_a_killed_worker_is_counted_once_replaced_and_its_requests_stay_counted(platform_stack):
    service = ServiceProcess(
        "auth", free_port(), dict(platform_stack.services["auth"].env), workers=2
    ).start()
    try:
        assert sample(service, "gunicorn_worker_exits_total") == 0
        for _ in range(20):
            assert requests.get(f"{service.url}/live", timeout=5).status_code == 200
        victim = workers_of(service)[0]

        os.kill(victim, signal.SIGKILL)

        wait_until(
            lambda: len(workers_of(service)) == 2 and victim not in workers_of(service),
            timeout=20,
            message="gunicorn to replace the killed worker",
        )
        wait_until(
            lambda: sample(service, "gunicorn_worker_exits_total") == 1, timeout=10, message="the exit"
        )
        assert sample(service, "flask_http_request_total") >= 20
        # The dead worker's in-flight gauge went with it: nothing is left "in flight".
        assert sample(service, "http_requests_in_flight") <= 1  # the /metrics request itself
    finally:
        service.stop()
