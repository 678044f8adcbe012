"""servicekit.tokens' own check around PyJWT: what it issues, which Authorization headers it
takes, that nothing but a well-formed EdDSA token naming a kid reaches a key lookup, and what is
checked again when a token it verified comes back. (Every forged token is refused by both real
verifiers in tests/integration: tests/token_keys.py.)"""

from __future__ import annotations

import base64
import json
import types

import jwt as pyjwt
import pytest

from servicekit import tokens
from servicekit.app import create_service_app
from servicekit.config import ServiceSettings, load
from servicekit.tokens import (
    MAX_TOKEN_CHARACTERS,
    VERIFIED_TOKENS_KEPT,
    SigningKeys,
    create_access_token,
    current_user,
    decode_access_token,
    generate_private_key_pem,
    init_tokens,
    token_required,
    user_id_of,
)

ISSUER, AUDIENCE = "test-issuer", "test-audience"


class Service:
    """A service app with one token_required route, counting its key lookups."""

    def __init__(
        self, *, users: dict[str, str], audience: str = AUDIENCE, keys: SigningKeys | None = None
    ) -> None:
        self.keys = keys or SigningKeys.from_pem(generate_private_key_pem())
        self.lookups: list[str] = []
        self.app = create_service_app("demo", load(ServiceSettings, {"DATABASE_URL": "postgresql://unused"}))
        init_tokens(
            self.app,
            issuer=ISSUER,
            audience=audience,
            lookup_key=self._lookup,
            load_user=lambda claims: users.get(claims["sub"]),
            signing=self.keys,
        )

        @self.app.get("/whoami")
        @token_required
        def whoami():
            return {"user": str(current_user)}

        self.client = self.app.test_client()

    def _lookup(self, kid: str):
        self.lookups.append(kid)
        return self.keys.lookup(kid)

    def token(self, identity: str = "1", username: str = "alice") -> str:
        with self.app.app_context():
            return create_access_token(identity, username)

    def whoami(self, authorization: str | None):
        headers = {} if authorization is None else {"Authorization": authorization}
        return self.client.get("/whoami", headers=headers)


@pytest.fixture(autouse=True)
def no_token_verified_before():
    # Each test starts from a process that has verified no token yet.
    tokens._verified_claims.cache_clear()
    yield
    tokens._verified_claims.cache_clear()


@pytest.fixture
def service() -> Service:
    return Service(users={"1": "alice"})


@pytest.fixture
def signature_checks(monkeypatch) -> list[str]:
    """The tokens PyJWT decodes (signature and claims), in order."""
    decoded: list[str] = []
    real_decode = tokens.pyjwt.decode

    def counting_decode(token, *args, **kwargs):
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(tokens.pyjwt, "decode", counting_decode)
    return decoded


def frozen_clock(monkeypatch, now: float) -> None:
    """servicekit.tokens' clock (and only its own) reads ``now``."""
    monkeypatch.setattr(tokens, "time", types.SimpleNamespace(time=lambda: now))


def test_an_issued_token_carries_exactly_the_claims_and_header_every_verifier_requires(service):
    token = service.token("1", "alice")

    assert pyjwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "JWT", "kid": service.keys.kid}
    claims = pyjwt.decode(
        token, service.keys.signing_key.public_key(), algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER
    )
    assert set(claims) == {"sub", "username", "iat", "exp", "iss", "aud", "type", "jti"}
    assert (claims["sub"], claims["username"], claims["type"]) == ("1", "alice", "access")
    assert claims["exp"] - claims["iat"] == 15 * 60


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_matched_whatever_its_case(service, scheme):
    response = service.whoami(f"{scheme} {service.token()}")

    assert response.status_code == 200
    assert response.get_json() == {"user": "alice"}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer",
        "Bearer  {token}",
        "Bearer {token} ",
        "Bearer {token}.extra",
        "Token {token}",
        "Bearer {token}" + "A" * MAX_TOKEN_CHARACTERS,
    ],
)
def test_anything_but_one_bearer_jws_is_refused_before_any_key_is_looked_up(service, authorization):
    if authorization is not None:
        authorization = authorization.replace("{token}", service.token())

    response = service.whoami(authorization)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert service.lookups == []


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "header",
    [
        _segment(b"not json"),
        _segment(b"[1, 2]"),
        _segment(json.dumps({"alg": "EdDSA", "kid": "k"}).encode())[:-3],  # a length base64 cannot have
        _segment(b"[" * 100_000),
        _segment(json.dumps({"alg": "HS256", "kid": "k"}).encode()),
        _segment(json.dumps({"alg": "EdDSA"}).encode()),
        _segment(json.dumps({"alg": "EdDSA", "kid": ""}).encode()),
    ],
    ids=[
        "not json",
        "not an object",
        "bad length",
        "deeply nested",
        "other algorithm",
        "no kid",
        "empty kid",
    ],
)
def test_a_header_that_names_no_eddsa_key_is_refused_before_any_key_is_looked_up(service, header):
    _, payload, signature = service.token().split(".")

    response = service.whoami(f"Bearer {header}.{payload}.{signature}")

    assert response.status_code == 401
    assert service.lookups == []


def test_a_valid_token_whose_user_is_gone_is_refused(service):
    response = service.whoami(f"Bearer {service.token('2', 'bob')}")

    assert response.status_code == 401
    assert service.lookups == [service.keys.kid]


def test_a_service_without_a_signing_key_cannot_issue_tokens():
    verifier_only = create_service_app("demo", load(ServiceSettings, {"DATABASE_URL": "postgresql://unused"}))
    init_tokens(verifier_only, issuer=ISSUER, audience=AUDIENCE, lookup_key=None, load_user=None)

    with verifier_only.app_context(), pytest.raises(RuntimeError, match="only the auth service"):
        create_access_token("1", "alice")


@pytest.mark.parametrize(("subject", "user_id"), [("1", 1), ("999999999999999999", 999_999_999_999_999_999)])
def test_a_subject_auth_writes_is_its_user_id(subject, user_id):
    assert user_id_of({"sub": subject}) == user_id


@pytest.mark.parametrize(
    "subject",
    ["", "0", "01", "-1", "+1", "1 ", "1\n", "\u0661", "1000000000000000000", "9" * 40, 7, None],
    ids=repr,
)
def test_any_other_subject_names_no_user(subject):
    # Past BIGINT, the lookup would be a database error (a 500) instead of a refused token.
    assert user_id_of({"sub": subject}) is None


def test_a_token_seen_before_is_not_verified_again_but_its_key_is_looked_up_again(service, signature_checks):
    token = service.token()

    answers = [service.whoami(f"Bearer {token}") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert signature_checks == [token]
    assert service.lookups == [service.keys.kid] * 3


def test_a_token_seen_before_is_refused_from_the_second_its_exp_names(service, monkeypatch):
    token = service.token()
    exp = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    assert service.whoami(f"Bearer {token}").status_code == 200

    frozen_clock(monkeypatch, exp - 0.5)
    assert service.whoami(f"Bearer {token}").status_code == 200
    frozen_clock(monkeypatch, exp)
    assert service.whoami(f"Bearer {token}").status_code == 401


def test_a_token_seen_before_is_refused_once_its_key_is_no_longer_accepted(service):
    token = service.token()
    assert service.whoami(f"Bearer {token}").status_code == 200

    service.keys.accepted.clear()  # the key was dropped from the key set: a rotation's last step

    assert service.whoami(f"Bearer {token}").status_code == 401


def test_a_token_one_verifier_accepted_is_checked_again_by_a_verifier_with_other_rules(service):
    token = service.token()
    assert service.whoami(f"Bearer {token}").status_code == 200
    other_audience = Service(users={"1": "alice"}, audience="another-audience", keys=service.keys)

    assert other_audience.whoami(f"Bearer {token}").status_code == 401
    assert tokens._verified_claims.cache_info().currsize == 1  # a refused token is not kept


def test_the_claims_a_caller_gets_are_its_own_to_change(service):
    token = service.token()

    with service.app.app_context():
        decode_access_token(token)["sub"] = "2"
        again = decode_access_token(token)

    assert again["sub"] == "1"


def test_a_process_keeps_a_bounded_number_of_verified_tokens():
    assert tokens._verified_claims.cache_info().maxsize == VERIFIED_TOKENS_KEPT
