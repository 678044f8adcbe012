"""POST /verify: a valid token of an existing user, and a 401 for every kind of bad token."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from sqlalchemy import create_engine, text


def _claims(user_id: int, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + 300,
        "iss": "platform-auth",
        "aud": "platform",
        "type": "access",
        "jti": "test",
        "fresh": False,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _verify(client, token: str | None, scheme: str = "Bearer"):
    headers = {} if token is None else {"Authorization": f"{scheme} {token}".strip()}
    return client.post("/verify", headers=headers)


def test_a_valid_token_is_accepted_with_the_user(auth_client, register_user, login):
    user = register_user()

    response = _verify(auth_client, login())

    assert response.status_code == 200
    assert response.get_json() == {"valid": True, "user_id": user["id"], "username": "alice"}


def _attacks(secret: str, user_id: int, good_token: str) -> dict[str, str | None]:
    header, payload, signature = good_token.split(".")
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user_id))}"
    forged_payload = _b64({**json.loads(base64.urlsafe_b64decode(payload + "==")), "sub": str(user_id + 1)})
    return {
        "no authorization header": None,
        "empty bearer": "",
        "malformed": "not-a-jwt",
        "two segments": f"{header}.{payload}",
        "garbage segments": "a.b.c",
        "tampered payload": f"{header}.{forged_payload}.{signature}",
        "bad signature": jwt.encode(
            _claims(user_id), "another-secret-that-is-long-enough-x", algorithm="HS256"
        ),
        "alg none": f"{unsigned}.",
        "alg none with signature": f"{unsigned}.{signature}",
        "other algorithm HS512": jwt.encode(_claims(user_id), secret, algorithm="HS512"),
        "other algorithm HS384": jwt.encode(_claims(user_id), secret, algorithm="HS384"),
        "expired": jwt.encode(
            _claims(user_id, iat=int(time.time()) - 600, exp=int(time.time()) - 1), secret, algorithm="HS256"
        ),
        "wrong issuer": jwt.encode(_claims(user_id, iss="someone-else"), secret, algorithm="HS256"),
        "no issuer": jwt.encode(_claims(user_id, iss=None), secret, algorithm="HS256"),
        "wrong audience": jwt.encode(_claims(user_id, aud="other-app"), secret, algorithm="HS256"),
        "no audience": jwt.encode(_claims(user_id, aud=None), secret, algorithm="HS256"),
        "no expiry": jwt.encode(_claims(user_id, exp=None), secret, algorithm="HS256"),
        "future nbf": jwt.encode(_claims(user_id, nbf=int(time.time()) + 600), secret, algorithm="HS256"),
        "non-numeric subject": jwt.encode(_claims(user_id, sub="admin"), secret, algorithm="HS256"),
        "unknown user": jwt.encode(_claims(user_id + 1000), secret, algorithm="HS256"),
        "refresh token type": jwt.encode(_claims(user_id, type="refresh"), secret, algorithm="HS256"),
    }


ATTACKS = list(_attacks("s" * 64, 1, jwt.encode({"sub": "1"}, "s" * 64, algorithm="HS256")))


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_bad_token_gets_401_problem_json(auth_client, register_user, login, auth_settings, attack):
    user = register_user()
    token = _attacks(auth_settings.jwt_secret, user["id"], login())[attack]

    response = _verify(auth_client, token)

    assert response.status_code == 401, response.data
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


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
