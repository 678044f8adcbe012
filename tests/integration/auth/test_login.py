"""POST /login: a token for the right password, the same refusal for everything else."""

from __future__ import annotations

import statistics
import time

import jwt
import pytest

import auth
from auth.config import AuthSettings
from servicekit import config
from tests.conftest import service_environ


def test_login_returns_a_bearer_token_with_its_lifetime(auth_client, register_user, token_keys):
    user = register_user()

    response = auth_client.post("/login", json={"username": "alice", "password": "correct horse battery"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    claims = jwt.decode(
        body["access_token"],
        token_keys.pair.private_key.public_key(),
        algorithms=["EdDSA"],
        audience="platform",
        issuer="platform-auth",
    )
    assert claims["sub"] == str(user["id"])
    assert claims["exp"] - claims["iat"] == 900


def test_tokens_are_signed_eddsa_and_name_their_key(auth_client, register_user, login, token_keys):
    register_user()
    assert jwt.get_unverified_header(login()) == {"alg": "EdDSA", "typ": "JWT", "kid": token_keys.pair.kid}


def test_login_ignores_the_case_of_the_username(auth_client, register_user):
    register_user("Alice")

    response = auth_client.post("/login", json={"username": "ALICE", "password": "correct horse battery"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong password"),
        ("nobody", "correct horse battery"),
        ("alice", ""),
        ("alice", "x" * 200),  # over bcrypt's limit: a refusal, not a 500
        ("alice", "correct horse battery\x00"),
        ("", ""),
    ],
)
def test_wrong_credentials_all_get_the_same_401(auth_client, register_user, username, password):
    register_user()

    response = auth_client.post("/login", json={"username": username, "password": password})

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == "Unknown username or wrong password."


@pytest.fixture
def costly_auth_client(database_urls, token_keys, clean_databases):
    # A real cost factor makes bcrypt dominate, as it does in production; enough free failures
    # that the repeated wrong passwords are all checked rather than throttled.
    environ = service_environ(
        "auth", database_urls["auth"], token_keys, BCRYPT_ROUNDS="10", LOGIN_FREE_FAILURES="20"
    )
    return auth.create_app(config.load(AuthSettings, environ)).test_client()


def _median_seconds(client, body: dict, repeat: int = 7) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.post("/login", json=body)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 401
    return statistics.median(samples)


def test_unknown_user_and_wrong_password_take_about_the_same_time(costly_auth_client):
    costly_auth_client.post("/register", json={"username": "alice", "password": "correct horse"})

    wrong_password = _median_seconds(costly_auth_client, {"username": "alice", "password": "wrong horse"})
    unknown_user = _median_seconds(costly_auth_client, {"username": "nobody", "password": "wrong horse"})

    # Both pay one bcrypt check at the same cost; without the dummy check the unknown user
    # would answer in well under a tenth of the time.
    assert 0.5 < unknown_user / wrong_password < 2.0, (unknown_user, wrong_password)


def test_the_default_bcrypt_cost_is_12(database_urls, token_keys):
    settings = config.load(AuthSettings, service_environ("auth", database_urls["auth"], token_keys))
    assert settings.bcrypt_rounds == 12
