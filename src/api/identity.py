"""Who is calling: bearer tokens checked by the auth service (POST /verify), briefly remembered.

The auth service is the one judge of a token, as the design has it. Asking it on every request
would cost a network round trip each time, so each worker remembers positive answers for a few
seconds (TOKEN_CACHE_SECONDS), never past the token's own expiry, in a cache of bounded size
(TOKEN_CACHE_SIZE). Refusals are never remembered: a client that just logged in must not be
refused because of an old answer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NoReturn

import jwt as pyjwt
from flask import abort, current_app, g
from prometheus_client import Counter
from pydantic import ValidationError

from api.contract import Verification
from api.upstream import Upstream
from servicekit import tokens
from servicekit.context import outbound_headers
from servicekit.errors import ApiError
from servicekit.tokens import unauthorized_response

TOKEN_CACHE = Counter(
    "api_token_cache_total", "Token verifications answered from the cache or not.", ["result"]
)
for _result in ("hit", "miss"):
    TOKEN_CACHE.labels(_result)


@dataclasses.dataclass(frozen=True)
class Caller:
    user_id: int
    username: str


class TokenCache:
    """Positive verifications, each kept until the earlier of its lifetime and the token's expiry."""

    def __init__(self, max_entries: int, lifetime_seconds: float, clock: Callable[[], float] = time.time):
        self.max_entries = max_entries
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Caller, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        # The digest, not the token: the cache never holds a usable credential.
        return hashlib.sha256(token.encode()).digest()

    def get(self, token: str) -> Caller | None:
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            caller, expires_at = entry
            if self._clock() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return caller

    def put(self, token: str, caller: Caller, token_expires_at: float | None) -> None:
        if self.lifetime_seconds <= 0 or token_expires_at is None:
            return
        expires_at = min(self._clock() + self.lifetime_seconds, token_expires_at)
        if expires_at <= self._clock():
            return
        key = self._key(token)
        with self._lock:
            self._entries[key] = (caller, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _token_expiry(token: str) -> float | None:
    """The token's `exp`; read without checking the signature, which the auth service just did."""
    try:
        claims = pyjwt.decode(token, options={"verify_signature": False})
    except pyjwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def refuse_token() -> NoReturn:
    """Stop the request with the 401 every service gives for a bad token (one definition, in servicekit)."""
    abort(unauthorized_response())


class Verifier:
    """Turns a bearer token into a Caller, through the cache or the auth service."""

    def __init__(self, auth: Upstream, cache: TokenCache) -> None:
        self.auth = auth
        self.cache = cache

    def verify(self, token: str) -> Caller:
        caller = self.cache.get(token)
        if caller is not None:
            TOKEN_CACHE.labels("hit").inc()
            return caller
        TOKEN_CACHE.labels("miss").inc()
        headers = {**outbound_headers(), "Authorization": f"Bearer {token}", "Accept": "application/json"}
        response = self.auth.send("POST", "/verify", headers=headers, idempotent=True)
        with response:
            caller = self._caller_from(response)
        self.cache.put(token, caller, _token_expiry(token))
        return caller

    def _caller_from(self, response) -> Caller:
        status = response.status_code
        if status in (401, 403):
            refuse_token()
        if status in (503, 504):
            raise ApiError(
                503,
                "The auth service is unavailable.",
                type_="upstream-unavailable",
                headers={"Retry-After": "1"},
                upstream="auth",
            )
        if status != 200:
            raise self.auth.bad_response(f"/verify answered {status}")
        try:
            body = response.json()
        except ValueError:
            raise self.auth.bad_response("/verify answered 200 without JSON") from None
        try:
            answer = Verification.model_validate(body)
        except ValidationError:
            raise self.auth.bad_response("/verify answered 200 without valid, user_id and username") from None
        return Caller(user_id=answer.user_id, username=answer.username)


def bearer_token() -> str:
    """The request's bearer JWS; anything else is refused without asking the auth service."""
    try:
        return tokens.bearer_token()
    except pyjwt.PyJWTError:
        refuse_token()


def current_caller() -> Caller:
    """The verified caller of this request (verifying at most once per request)."""
    caller = getattr(g, "caller", None)
    if caller is None:
        verifier: Verifier = current_app.extensions["api.verifier"]
        caller = g.caller = verifier.verify(bearer_token())
    return caller


def login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        current_caller()
        return view(*args, **kwargs)

    return wrapper
