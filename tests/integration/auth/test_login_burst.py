"""A burst of wrong passwords for one account against a live auth (gunicorn, bcrypt cost 12).

Run with ``-s`` to see the figures: how many bcrypt computations the burst cost, how long it
took, and how many logins per second another account got meanwhile.
"""

from __future__ import annotations

import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devstack.services import ServiceProcess
from devstack.wait import free_port
from tests.conftest import service_environ

BURST = 1000
CLIENT_THREADS = 32
FREE_FAILURES = 5
PASSWORD = "correct horse battery"


@pytest.fixture
def costly_auth(database_urls, token_keys, clean_databases):
    # The production cost: what the throttle exists to spare.
    environ = service_environ("auth", database_urls["auth"], token_keys, BCRYPT_ROUNDS="12")
    service = ServiceProcess("auth", free_port(), environ).start()
    yield service
    service.stop()


def bcrypt_checks(service: ServiceProcess) -> float:
    text = requests.get(f"{service.metrics_url}/metrics", timeout=10).text
    match = re.search(r'^auth_bcrypt_computations_total\{operation="check"\} (\S+)$', text, re.MULTILINE)
    assert match, "auth_bcrypt_computations_total is not exported"
    return float(match.group(1))


def test_a_burst_of_1000_wrong_passwords_costs_a_handful_of_bcrypt_checks(costly_auth):
    url = costly_auth.url
    for name in ("victim", "bystander"):
        body = {"username": name, "password": PASSWORD}
        assert requests.post(f"{url}/register", json=body, timeout=30).status_code == 201
    checks_before = bcrypt_checks(costly_auth)

    burst_over = threading.Event()
    bystander_statuses: list[int] = []

    def bystander() -> None:
        with requests.Session() as session:
            while not burst_over.is_set():
                answer = session.post(
                    f"{url}/login", json={"username": "bystander", "password": PASSWORD}, timeout=30
                )
                bystander_statuses.append(answer.status_code)

    session = threading.local()

    def wrong_password(_: int) -> int:
        if not hasattr(session, "http"):
            session.http = requests.Session()
        return session.http.post(
            f"{url}/login", json={"username": "victim", "password": "wrong password"}, timeout=60
        ).status_code

    watcher = threading.Thread(target=bystander)
    started = time.perf_counter()
    watcher.start()
    try:
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            statuses = list(pool.map(wrong_password, range(BURST)))
    finally:
        burst_over.set()
        watcher.join(timeout=60)
    elapsed = time.perf_counter() - started
    checks = bcrypt_checks(costly_auth) - checks_before

    refused, throttled = statuses.count(401), statuses.count(429)
    print(
        f"\nburst of {BURST} wrong passwords ({CLIENT_THREADS} concurrent clients, 2 gunicorn workers, "
        f"bcrypt cost 12): {elapsed:.2f} s, {refused} checked (401), {throttled} throttled (429), "
        f"{checks:.0f} bcrypt checks in all; another account: {bystander_statuses.count(200)} logins "
        f"({bystander_statuses.count(200) / elapsed:.1f}/s)"
    )
    assert refused + throttled == BURST
    # The free failures, then at most one attempt per doubling wait that fitted into the burst.
    assert refused <= FREE_FAILURES + math.floor(math.log2(elapsed + 1)) + 1
    # Each checked attempt and each of the other account's logins paid one bcrypt; no 429 did.
    assert checks == refused + len(bystander_statuses)
    assert bystander_statuses and set(bystander_statuses) == {200}
