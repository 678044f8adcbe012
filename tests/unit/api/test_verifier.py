"""Token verification through the auth service, with the auth service replaced by stand-ins."""

from __future__ import annotations

import time
from unittest import mock

import jwt
import pytest
from flask import Flask
from werkzeug.exceptions import HTTPException

from api.identity import Caller, TokenCache, Verifier
from api.upstream import Upstream
from servicekit.errors import ApiError
from servicekit.tokens import unauthorized_response


def token(expires_in: float = 900) -> str:
    return jwt.encode({"sub": "1", "exp": int(time.time() + expires_in)}, "k" * 32, algorithm="HS256")


def auth_answer(status: int, body=None, text: str = "") -> mock.Mock:
    response = mock.MagicMock(status_code=status)
    response.__enter__.return_value = response
    if body is None:
        response.json.side_effect = ValueError("no JSON")
    else:
        response.json.return_value = body
    return response


@pytest.fixture
def auth():
    return Upstream("auth", "http://auth.invalid", connect_timeout=1, read_timeout=1)


@pytest.fixture
def verifier(auth):
    return Verifier(auth, TokenCache(max_entries=100, lifetime_seconds=5))


def verify(verifier, auth, answer, value=None):
    with Flask("t").test_request_context(), mock.patch.object(auth, "send", return_value=answer) as send:
        return verifier.verify(value or token()), send


def test_a_valid_token_becomes_the_caller_and_is_then_served_from_the_cache(verifier, auth):
    value = token()
    caller, send = verify(
        verifier, auth, auth_answer(200, {"valid": True, "user_id": 7, "username": "eve"}), value
    )
    assert caller == Caller(7, "eve")
    assert send.call_args.kwargs["headers"]["Authorization"] == f"Bearer {value}"

    again, send = verify(verifier, auth, auth_answer(500), value)
    assert again == caller
    send.assert_not_called()


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (auth_answer(401, {"detail": "no"}), 401),
        (auth_answer(403, {"detail": "no"}), 401),
        (auth_answer(503, {"detail": "db down"}), 503),
        (auth_answer(500, {"detail": "bug"}), 502),
        (auth_answer(200), 502),
        (auth_answer(200, ["not", "an", "object"]), 502),
        (auth_answer(200, {"valid": True, "user_id": "7", "username": "eve"}), 502),
        (auth_answer(200, {"valid": True, "user_id": True, "username": "eve"}), 502),
        (auth_answer(200, {"valid": False, "user_id": 7, "username": "eve"}), 502),
        (auth_answer(302, {}), 502),
    ],
)
def test_every_other_answer_is_refused_and_never_cached(verifier, auth, answer, status):
    value = token()
    with pytest.raises((ApiError, HTTPException)) as caught:
        verify(verifier, auth, answer, value)
    refused = caught.value
    assert (refused.response.status_code if isinstance(refused, HTTPException) else refused.status) == status
    assert verifier.cache.get(value) is None


def test_a_token_the_auth_service_refuses_gets_the_401_every_service_gives(verifier, auth):
    with pytest.raises(HTTPException) as caught:
        verify(verifier, auth, auth_answer(401, {"detail": "no"}))
    response = caught.value.response
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    with Flask("t").app_context():
        assert response.get_json() == unauthorized_response().get_json()
