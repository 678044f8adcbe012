"""POST /verify: a valid token of an existing user, and a 401 for every kind of bad token."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

import auth
from auth.config import AuthSettings
from servicekit import config
from servicekit.tokens import key_id, public_key_from_jwk
from tests.conftest import service_environ
from tests.token_keys import KeyPair, TokenKeys, forged_tokens


def _verify(client, token: str | None, scheme: str = "Bearer"):
    headers = {} if token is None else {"Authorization": f"{scheme} {token}".strip()}
    return client.post("/verify", headers=headers)


def test_a_valid_token_is_accepted_with_the_user(auth_client, register_user, login):
    user = register_user()

    response = _verify(auth_client, login())

    assert response.status_code == 200
    assert response.get_json() == {"valid": True, "user_id": user["id"], "username": "alice"}


def test_verifying_a_token_costs_one_database_round_trip(
    auth_client, register_user, login, database_round_trips
):
    register_user()
    token = login()
    _verify(auth_client, token)  # a warm pool

    with database_round_trips() as waits:
        assert _verify(auth_client, token).status_code == 200

    assert waits == [1]  # the user lookup alone: no BEGIN, no pre-ping, no ROLLBACK


def _attacks(token_keys, user_id: int, good_token: str) -> dict[str, str | None]:
    pair = token_keys.pair
    return {
        **forged_tokens(pair, good_token, user_id, "alice"),
        "non-numeric subject": pair.token("admin"),
        "unknown user": pair.token(user_id + 1000),
    }


_NAMING_KEYS = TokenKeys(KeyPair.generate(), None)
ATTACKS = list(_attacks(_NAMING_KEYS, 1, _NAMING_KEYS.pair.token()))


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_bad_token_gets_401_problem_json(auth_client, register_user, login, token_keys, attack):
    user = register_user()
    token = _attacks(token_keys, user["id"], login())[attack]

    response = _verify(auth_client, token)

    assert response.status_code == 401, response.data
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_signed_by_a_published_additional_key_is_accepted(
    database_urls, token_keys, register_user, clean_databases
):
    # The next key during a rotation, or the previous one after it: published and accepted.
    other = KeyPair.generate()
    environ = service_environ(
        "auth", database_urls["auth"], token_keys, BCRYPT_ROUNDS="4", JWT_ADDITIONAL_KEYS=other.public_pem
    )
    client = auth.create_app(config.load(AuthSettings, environ)).test_client()
    user = register_user()

    response = _verify(client, other.token(user["id"]))

    assert response.status_code == 200
    assert response.get_json()["user_id"] == user["id"]


def test_the_jwks_publishes_every_accepted_public_key_and_may_be_cached(database_urls, token_keys):
    other = KeyPair.generate()
    environ = service_environ(
        "auth",
        database_urls["auth"],
        token_keys,
        JWT_ADDITIONAL_KEYS=other.private_pem,
        JWKS_MAX_AGE_SECONDS="120",
    )
    client = auth.create_app(config.load(AuthSettings, environ)).test_client()

    response = client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=120"
    keys = response.get_json()["keys"]
    # The signing key first; public members only, never the private `d`.
    assert [key["kid"] for key in keys] == [token_keys.pair.kid, other.kid]
    assert keys == [token_keys.pair.jwk, other.jwk]
    assert all(set(key) == {"kty", "crv", "x", "kid", "alg", "use"} for key in keys)


def test_the_kid_is_the_rfc7638_thumbprint_of_the_key():
    # RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}

    assert key_id(public_key_from_jwk(jwk)) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.mark.parametrize("scheme", ["Basic", "Token", "bearer-ish"])
def test_other_authorization_schemes_get_401(auth_client, register_user, login, scheme):
    register_user()
    assert _verify(auth_client, login(), scheme=scheme).status_code == 401


def test_a_token_of_a_deleted_user_is_refused(auth_client, register_user, login, database_urls):
    register_user()
    token = login()
    assert _verify(auth_client, token).status_code == 200

    engine = create_engine(database_urls["auth"])
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM users WHERE lower(username) = 'alice'"))
    engine.dispose()

    assert _verify(auth_client, token).status_code == 401
