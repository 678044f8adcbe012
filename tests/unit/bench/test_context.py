"""The tokens the benchmark mints for loads where no two requests may share one
(bench.context.Bench.minted_tokens): each is one auth itself would accept, for a pool account."""

from __future__ import annotations

import types

import jwt as pyjwt
import pytest

from bench.context import Bench, User
from bench.measure import Pinning
from servicekit.tokens import ALGORITHM, SigningKeys, generate_private_key_pem

SIGNING_PEM = generate_private_key_pem()
AUTH_ENV = {
    "DATABASE_URL": "postgresql+psycopg2://auth_user:unused@127.0.0.1:1/auth_db",
    "JWT_SIGNING_KEY": SIGNING_PEM,
    "JWT_ISSUER": "bench-issuer",
    "JWT_AUDIENCE": "bench-audience",
    "TOKEN_LIFETIME_SECONDS": "600",
}
SIGNING = SigningKeys.from_pem(SIGNING_PEM)


def _login_token(user_id: int, username: str) -> str:
    """What /login answered for a pool account: only its ``sub`` is read."""
    return pyjwt.encode({"sub": str(user_id), "username": username}, SIGNING.signing_key, algorithm=ALGORITHM)


@pytest.fixture
def bench() -> Bench:
    stack = types.SimpleNamespace(services={"auth": types.SimpleNamespace(env=AUTH_ENV)})
    users = [
        User(name, _login_token(user_id, name))
        for user_id, name in ((7, "bench-user-000"), (8, "bench-user-001"))
    ]
    return Bench(stack, Pinning(None, None), 1.0, {"scenarios": {}}, users)


def _claims(token: str) -> dict:
    return pyjwt.decode(
        token,
        SIGNING.signing_key.public_key(),
        algorithms=[ALGORITHM],
        audience="bench-audience",
        issuer="bench-issuer",
    )


def test_minted_tokens_are_all_different(bench):
    minted = bench.minted_tokens(50)

    assert len(minted) == 50
    assert len(set(minted)) == 50


def test_minted_tokens_are_signed_and_claimed_as_auth_issues_them(bench):
    token = bench.minted_tokens(1)[0]

    assert pyjwt.get_unverified_header(token)["kid"] == SIGNING.kid
    claims = _claims(token)
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 600


def test_minted_tokens_take_the_pool_accounts_in_turn(bench):
    owners = [(claims["sub"], claims["username"]) for claims in map(_claims, bench.minted_tokens(4))]

    assert owners == [("7", "bench-user-000"), ("8", "bench-user-001")] * 2
