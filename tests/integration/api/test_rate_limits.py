"""The gateway's per-client limit on login and register, shared by every replica through api_db,
and auth's per-username 429 passed through to the client."""

from __future__ import annotations

import pytest

from api.clients import RATE_LIMITED
from tests.integration.api.conftest import PASSWORD

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"


def login_from(client, address: str, username: str = "nobody", **headers: str):
    return client.post(
        LOGIN,
        json={"username": username, "password": "wrong password"},
        environ_base={"REMOTE_ADDR": address},
        headers=headers,
    )


def assert_rate_limited(response) -> None:
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"].endswith("/rate-limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


@pytest.fixture
def limited_replicas(make_api_app, auth_service, stand_in_images, clean_databases):
    """Two api replicas sharing api_db, 3 logins and 2 registrations per client and minute."""

    def replica():
        return make_api_app(
            auth_service.url,
            stand_in_images.url,
            RATE_LIMIT_LOGIN="3",
            RATE_LIMIT_REGISTER="2",
            TRUSTED_PROXIES="10.0.0.0/8",
        ).test_client()

    return replica(), replica()


def test_the_login_limit_holds_across_two_replicas_sharing_the_database(limited_replicas):
    first, second = limited_replicas
    limited_before = RATE_LIMITED.labels("login")._value.get()

    statuses = [login_from(replica, "203.0.113.7").status_code for replica in (first, second, first)]
    refused = login_from(second, "203.0.113.7")

    assert statuses == [401, 401, 401]
    assert_rate_limited(refused)
    assert RATE_LIMITED.labels("login")._value.get() == limited_before + 1


def test_another_client_is_not_held_back_by_one_over_its_limit(limited_replicas):
    first, second = limited_replicas
    for _ in range(4):
        login_from(first, "203.0.113.7")

    assert login_from(second, "203.0.113.8").status_code == 401


def test_register_has_its_own_limit(limited_replicas):
    first, second = limited_replicas
    for name in ("alice", "bob"):
        response = first.post(
            REGISTER,
            json={"username": name, "password": PASSWORD},
            environ_base={"REMOTE_ADDR": "203.0.113.7"},
        )
        assert response.status_code == 201

    assert_rate_limited(
        second.post(
            REGISTER,
            json={"username": "carol", "password": PASSWORD},
            environ_base={"REMOTE_ADDR": "203.0.113.7"},
        )
    )
    assert login_from(second, "203.0.113.7", "alice").status_code == 401


def test_x_forwarded_for_from_an_untrusted_peer_does_not_make_a_new_client(limited_replicas):
    first, _ = limited_replicas
    statuses = [
        login_from(first, "203.0.113.7", **{"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(4)
    ]

    assert statuses == [401, 401, 401, 429]


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(limited_replicas):
    first, _ = limited_replicas
    for _ in range(3):
        login_from(first, "10.0.0.5", **{"X-Forwarded-For": "198.51.100.1"})

    assert_rate_limited(login_from(first, "10.0.0.6", **{"X-Forwarded-For": "198.51.100.1"}))
    assert login_from(first, "10.0.0.5", **{"X-Forwarded-For": "198.51.100.2"}).status_code == 401


def test_spoofed_left_most_entries_do_not_make_a_new_client(limited_replicas):
    first, _ = limited_replicas
    statuses = [
        login_from(first, "10.0.0.5", **{"X-Forwarded-For": f"192.0.2.{n}, 198.51.100.1"}).status_code
        for n in range(4)
    ]

    assert statuses == [401, 401, 401, 429]


def test_a_429_from_auth_reaches_the_client_with_its_retry_after(api_client, account):
    account("alice")
    for _ in range(5):
        assert login_from(api_client, "203.0.113.7", "alice").status_code == 401

    response = api_client.post(
        LOGIN, json={"username": "alice", "password": PASSWORD}, environ_base={"REMOTE_ADDR": "203.0.113.8"}
    )

    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["type"].endswith("/login-throttled")
