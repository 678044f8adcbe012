"""Login throttling per username: free failures, then a doubling wait, counted in auth_db.

Time is moved on by rewriting the throttle rows (the ``time_passes`` fixture), never slept.
"""

from __future__ import annotations

import threading

import pytest

import auth
from auth.config import AuthSettings
from auth.passwords import BCRYPT_COMPUTATIONS
from devstack.wait import wait_until
from servicekit import config
from servicekit.config import ConfigError
from tests.conftest import service_environ

PASSWORD = "correct horse battery"


def attempt(client, username: str = "alice", password: str = "wrong password"):
    return client.post("/login", json={"username": username, "password": password})


def fail(client, username: str = "alice", times: int = 1) -> None:
    for _ in range(times):
        response = attempt(client, username)
        assert response.status_code == 401, response.get_json()


def bcrypt_checks() -> float:
    return BCRYPT_COMPUTATIONS.labels("check")._value.get()


def assert_throttled(response, retry_after: int) -> None:
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == str(retry_after)
    body = response.get_json()
    assert body["status"] == 429
    assert body["type"].endswith("/login-throttled")


def test_five_failures_are_free_and_the_sixth_attempt_must_wait_a_second(auth_client, register_user):
    register_user()
    fail(auth_client, times=5)

    assert_throttled(attempt(auth_client), retry_after=1)


def test_the_wait_doubles_with_each_further_failure_up_to_fifteen_minutes(
    auth_client, register_user, time_passes
):
    register_user()
    fail(auth_client, times=5)
    waits = []
    for _ in range(13):
        response = attempt(auth_client)
        assert response.status_code == 429
        wait = int(response.headers["Retry-After"])
        waits.append(wait)
        time_passes(wait)
        fail(auth_client)

    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]


def test_the_right_password_is_refused_while_throttled_and_costs_no_bcrypt(auth_client, register_user):
    register_user()
    fail(auth_client, times=5)
    checks_before = bcrypt_checks()

    response = attempt(auth_client, password=PASSWORD)

    assert_throttled(response, retry_after=1)
    assert "access_token" not in response.get_json()
    assert bcrypt_checks() == checks_before


def test_the_right_password_after_the_wait_logs_in_and_starts_the_count_over(
    auth_client, register_user, time_passes
):
    register_user()
    fail(auth_client, times=5)
    assert attempt(auth_client, password=PASSWORD).status_code == 429
    time_passes(1)

    assert attempt(auth_client, password=PASSWORD).status_code == 200
    fail(auth_client, times=5)
    assert_throttled(attempt(auth_client), retry_after=1)


def test_a_success_before_the_limit_resets_the_count(auth_client, register_user):
    register_user()
    fail(auth_client, times=4)
    assert attempt(auth_client, password=PASSWORD).status_code == 200

    fail(auth_client, times=4)

    assert attempt(auth_client, password=PASSWORD).status_code == 200


def test_unknown_usernames_are_throttled_exactly_like_real_ones(auth_client, register_user, time_passes):
    register_user()

    def answers(username: str) -> list[tuple[int, str | None, str]]:
        seen = []
        for _ in range(8):
            response = attempt(auth_client, username)
            seen.append(
                (response.status_code, response.headers.get("Retry-After"), response.get_json()["detail"])
            )
            if response.status_code == 429:
                time_passes(int(response.headers["Retry-After"]))
        return seen

    assert answers("alice") == answers("nobody")


@pytest.mark.parametrize("spelling", ["ALICE", "Alice", "aLiCe"])
def test_the_count_is_per_username_whatever_its_case(auth_client, register_user, spelling):
    register_user()
    fail(auth_client, "alice", times=5)

    assert_throttled(attempt(auth_client, spelling, PASSWORD), retry_after=1)


def test_names_no_account_can_have_are_counted_too(auth_client):
    for _ in range(5):
        assert attempt(auth_client, "not a\x00name").status_code == 401

    assert attempt(auth_client, "not a\x00name").status_code == 429


def test_another_account_logs_in_while_one_is_throttled(auth_client, register_user):
    register_user("alice")
    register_user("bob")
    fail(auth_client, "alice", times=5)

    assert attempt(auth_client, "bob", PASSWORD).status_code == 200
    assert attempt(auth_client, "alice", PASSWORD).status_code == 429


def test_the_count_is_shared_by_every_replica(auth_client, register_user, auth_settings):
    register_user()
    fail(auth_client, times=5)
    other_replica = auth.create_app(auth_settings).test_client()

    assert_throttled(attempt(other_replica, password=PASSWORD), retry_after=1)


def test_failures_are_forgotten_after_a_day_without_attempts(auth_client, register_user, time_passes):
    register_user()
    fail(auth_client, times=5)
    for wait in (1, 2, 4, 8):
        time_passes(wait)
        fail(auth_client)
    time_passes(86400 + 1)

    fail(auth_client, times=5)
    assert_throttled(attempt(auth_client), retry_after=1)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOGIN_FAILURE_MEMORY_SECONDS": "600"}, "LOGIN_FAILURE_MEMORY_SECONDS must be at least"),
        ({"LOGIN_BACKOFF_BASE_SECONDS": "1000"}, "LOGIN_BACKOFF_BASE_SECONDS must be at most"),
        ({"LOGIN_FREE_FAILURES": "0"}, "LOGIN_FREE_FAILURES must be at least 1"),
    ],
)
def test_inconsistent_throttle_settings_are_refused_at_start(token_keys, environ, message):
    with pytest.raises(ConfigError, match=message):
        config.load(AuthSettings, service_environ("auth", "postgresql://x", token_keys, **environ))


def test_an_attempt_that_waited_for_a_concurrent_one_is_judged_when_it_gets_the_row(
    auth_client, register_user, postgres
):
    """Two logins of one account at once, within the free failures: both get through to bcrypt,
    even when the one that started first is the one that waits for the other's commit."""
    register_user()
    fail(auth_client)
    concurrent = postgres.connect("auth_db")
    try:
        with concurrent.cursor() as cursor:
            # The concurrent attempt holds the row before ours starts ...
            cursor.execute("SELECT 1 FROM login_throttles FOR UPDATE")
            answers = []
            ours = threading.Thread(target=lambda: answers.append(attempt(auth_client, password=PASSWORD)))
            ours.start()
            wait_until(lambda: _waiting_for_a_row_lock(postgres), timeout=10, message="our claim to wait")
            # ... and is counted (a free failure) after ours started, then commits.
            cursor.execute(
                "UPDATE login_throttles SET failures = failures + 1,"
                " last_attempt_at = statement_timestamp(), next_attempt_at = statement_timestamp()"
            )
        concurrent.commit()
        ours.join(timeout=30)
    finally:
        concurrent.close()

    assert [answer.status_code for answer in answers] == [200]


def _waiting_for_a_row_lock(postgres) -> bool:
    with postgres.connect("auth_db") as watcher, watcher.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = 'auth_db' AND wait_event_type = 'Lock' AND query LIKE '%login_throttles%'"
        )
        waiting = cursor.fetchone()[0] == 1
    watcher.close()
    return waiting
