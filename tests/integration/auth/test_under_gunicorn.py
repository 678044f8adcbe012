"""The auth service as it runs in a pod: gunicorn, several workers, a database that can go away."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from devstack.services import PROJECT_ROOT, ServiceProcess
from devstack.wait import free_port, wait_until


@pytest.fixture
def auth_under_gunicorn(own_postgres, token_keys):
    server, url = own_postgres
    service = ServiceProcess(
        "auth",
        free_port(),
        {
            "DATABASE_URL": url,
            "JWT_SIGNING_KEY": token_keys.signing_pem,
            "BCRYPT_ROUNDS": "4",
            "DB_CONNECT_TIMEOUT_SECONDS": "2",
        },
        workers=3,
    ).start()
    yield service, server
    service.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            total += float(match.group(2))
    return total


def test_readiness_fails_while_the_database_is_down_and_recovers_without_restart(auth_under_gunicorn):
    service, database = auth_under_gunicorn
    assert requests.get(f"{service.url}/ready", timeout=5).status_code == 200

    database.stop()

    def not_ready():
        return requests.get(f"{service.url}/ready", timeout=10).status_code == 503

    wait_until(not_ready, timeout=20, message="/ready to answer 503")
    ready = requests.get(f"{service.url}/ready", timeout=10)
    assert ready.headers["Content-Type"] == "application/problem+json"
    assert ready.json()["checks"]["database"]["status"] == "unavailable"
    health = requests.get(f"{service.url}/health", timeout=10)
    assert health.status_code == 200  # the process still serves: liveness must not flap
    assert health.json()["checks"]["database"]["status"] == "unavailable"
    assert requests.get(f"{service.url}/live", timeout=2).status_code == 200
    login = requests.post(
        f"{service.url}/login", json={"username": "alice", "password": "correct horse"}, timeout=10
    )
    assert login.status_code == 503
    assert login.headers["Content-Type"] == "application/problem+json"
    assert login.headers["Retry-After"] == "5"

    database.start()

    wait_until(
        lambda: requests.get(f"{service.url}/ready", timeout=5).status_code == 200,
        timeout=30,
        message="/ready to recover",
    )
    registered = requests.post(
        f"{service.url}/register", json={"username": "alice", "password": "correct horse"}, timeout=10
    )
    assert registered.status_code == 201


def _backends_of(database, application_name: str) -> int:
    with database.connect() as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        )
        return cursor.fetchone()[0]


def test_each_worker_opens_a_connection_per_thread_as_it_starts(auth_under_gunicorn):
    service, database = auth_under_gunicorn
    threads = 4  # servicekit.gunicorn_conf's default GUNICORN_THREADS
    expected = service.workers * threads

    # Ready once one worker answers; the others may still be opening theirs.
    wait_until(
        lambda: _backends_of(database, "auth") >= expected, timeout=20, message=f"{expected} connections"
    )
    for _ in range(20):
        requests.get(f"{service.url}/ready", timeout=5).raise_for_status()

    # The readiness checks took pooled connections: none was opened for them.
    assert _backends_of(database, "auth") == expected


def test_a_worker_starts_and_serves_while_the_database_is_down(own_postgres, token_keys):
    database, url = own_postgres
    database.stop()
    service = ServiceProcess(
        "auth",
        free_port(),
        {"DATABASE_URL": url, "JWT_SIGNING_KEY": token_keys.signing_pem, "DB_CONNECT_TIMEOUT_SECONDS": "2"},
        workers=2,
    )
    try:
        service.start(wait_ready=False)

        assert requests.get(f"{service.url}/ready", timeout=10).status_code == 503
        assert "database connections not opened at start" in service.logs()
        database.start()
        wait_until(service.ready, timeout=30, message="auth to be ready once the database is back")
    finally:
        service.stop()


def test_metrics_are_served_by_the_master_on_their_own_port_never_on_the_app_port(auth_under_gunicorn):
    service, _ = auth_under_gunicorn

    scraped = requests.get(f"{service.metrics_url}/metrics", timeout=5)

    assert scraped.status_code == 200
    assert "gunicorn_worker_exits_total" in scraped.text
    assert requests.get(f"{service.url}/metrics", timeout=5).status_code == 404
    assert requests.get(f"{service.metrics_url}/ready", timeout=5).status_code == 404


def test_metrics_count_every_request_across_workers_and_worker_restarts(auth_under_gunicorn):
    service, _ = auth_under_gunicorn
    with requests.Session() as session:
        for _ in range(90):
            assert session.get(f"{service.url}/live", timeout=5).status_code == 200
        for name in ("alice", "bob", "carol"):
            session.post(
                f"{service.url}/register", json={"username": name, "password": "correct horse"}, timeout=5
            )
        session.post(
            f"{service.url}/register", json={"username": "alice", "password": "correct horse"}, timeout=5
        )
        for password in ("correct horse", "wrong horse", "wrong horse"):
            session.post(f"{service.url}/login", json={"username": "bob", "password": password}, timeout=5)

    # A worker that dies takes its in-memory state with it; its counts must survive.
    workers = subprocess.run(["pgrep", "-P", str(service.process.pid)], capture_output=True, text=True)
    os.kill(int(workers.stdout.split()[0]), signal.SIGKILL)
    wait_until(
        lambda: (
            len(
                subprocess.run(
                    ["pgrep", "-P", str(service.process.pid)], capture_output=True, text=True
                ).stdout.split()
            )
            == 3
        ),
        message="gunicorn to replace the worker",
    )

    metrics = requests.get(f"{service.metrics_url}/metrics", timeout=5).text
    requests_by_route = "flask_http_request_duration_seconds_count"
    assert _metric(metrics, requests_by_route, route="/live", status="200") == 90
    assert _metric(metrics, requests_by_route, route="/register", status="201") == 3
    assert _metric(metrics, requests_by_route, route="/register", status="409") == 1
    assert _metric(metrics, "flask_http_request_total", method="POST", status="201") == 3
    assert _metric(metrics, "auth_registrations_total", outcome="created") == 3
    assert _metric(metrics, "auth_registrations_total", outcome="duplicate") == 1
    assert _metric(metrics, "auth_logins_total", outcome="success") == 1
    assert _metric(metrics, "auth_logins_total", outcome="failure") == 2


def test_gunicorn_logs_one_json_access_line_per_request_with_the_request_id(auth_under_gunicorn):
    service, _ = auth_under_gunicorn
    requests.get(f"{service.url}/live", headers={"X-Request-ID": "trace-me-123"}, timeout=5)

    def access_line():
        for line in service.logs().splitlines():
            if '"trace-me-123"' in line and '"kind": "access"' in line:
                return line
        return None

    entry = json.loads(wait_until(access_line, timeout=10, message="the access log line"))
    assert entry["service"] == "auth"
    assert entry["route"] == "/live"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"JWT_SIGNING_KEY": ""}, "JWT_SIGNING_KEY is required"),
        ({"JWT_SIGNING_KEY": "not a key"}, "JWT_SIGNING_KEY or JWT_ADDITIONAL_KEYS: no PEM block found"),
        (
            {"JWT_ADDITIONAL_KEYS": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
            "JWT_SIGNING_KEY or JWT_ADDITIONAL_KEYS",
        ),
        ({"BCRYPT_ROUNDS": "twelve"}, "BCRYPT_ROUNDS must be an integer"),
        ({"DATABASE_URL": ""}, "DATABASE_URL is required"),
    ],
)
def test_the_service_refuses_to_start_with_bad_settings(own_postgres, token_keys, environ, message):
    _, url = own_postgres
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT / "src"),
        "SERVICE_NAME": "auth",
        "BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "1",
        "DATABASE_URL": url,
        "JWT_SIGNING_KEY": token_keys.signing_pem,
        **environ,
    }
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "python:servicekit.gunicorn_conf", "auth:create_app()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )

    assert result.returncode != 0
    assert message in result.stdout + result.stderr
