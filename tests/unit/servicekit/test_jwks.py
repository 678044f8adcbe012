"""The JWKS cache a verifier keeps of auth's public keys: TTL, rate-limited refresh, timeouts, and
what it does while auth is down. A JWKS server on a loopback port stands in for auth; time is a
fake clock the tests move."""

from __future__ import annotations

import socket
import time

import pytest

from servicekit.jwks import JwksClient
from servicekit.tokens import KeysUnavailable, UnknownKey, keys_from_jwks
from tests.token_keys import JwksServer, KeyPair

TTL, MIN_REFRESH, TIMEOUT = 300.0, 10.0, 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def old_key() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture
def new_key() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture
def auth(old_key):
    server = JwksServer([old_key]).start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(auth, clock) -> JwksClient:
    return JwksClient(auth.url, timeout=TIMEOUT, ttl=TTL, min_refresh_interval=MIN_REFRESH, clock=clock)


def test_keys_are_fetched_once_and_reused_within_the_ttl(client, auth, clock, old_key):
    for _ in range(5):
        assert client.lookup(old_key.kid) is not None
        clock.advance(TTL / 10)

    assert auth.fetches == 1


def test_keys_are_fetched_again_once_the_ttl_has_passed(client, auth, clock, old_key):
    client.lookup(old_key.kid)
    clock.advance(TTL)

    client.lookup(old_key.kid)

    assert auth.fetches == 2


def test_an_unknown_kid_fetches_the_keys_again_and_finds_a_newly_published_key(
    client, auth, clock, old_key, new_key
):
    client.lookup(old_key.kid)
    clock.advance(MIN_REFRESH)
    auth.publish(old_key, new_key)

    assert client.lookup(new_key.kid) is not None
    assert auth.fetches == 2


def test_unknown_kids_fetch_at_most_once_per_refresh_interval(client, auth, clock, old_key):
    client.lookup(old_key.kid)
    clock.advance(MIN_REFRESH)

    for _ in range(20):
        with pytest.raises(UnknownKey):
            client.lookup(KeyPair.generate().kid)
    assert auth.fetches == 2

    clock.advance(MIN_REFRESH)
    with pytest.raises(UnknownKey):
        client.lookup("made-up")
    assert auth.fetches == 3


def test_with_auth_down_and_no_keys_a_lookup_says_keys_unavailable_and_does_not_hammer_auth(
    client, auth, clock, old_key
):
    auth.down = True

    for _ in range(10):
        with pytest.raises(KeysUnavailable):
            client.lookup(old_key.kid)
    assert auth.fetches == 1

    auth.down = False
    clock.advance(MIN_REFRESH)
    assert client.lookup(old_key.kid) is not None


def test_with_auth_down_the_keys_held_are_used_past_their_ttl(client, auth, clock, old_key):
    client.lookup(old_key.kid)
    auth.down = True
    clock.advance(TTL * 3)

    assert client.lookup(old_key.kid) is not None
    assert auth.fetches == 2


def test_a_retired_key_is_refused_once_the_refetched_jwks_lacks_it(client, auth, clock, old_key, new_key):
    client.lookup(old_key.kid)
    auth.publish(new_key)
    clock.advance(TTL)

    with pytest.raises(UnknownKey):
        client.lookup(old_key.kid)


def test_a_jwks_url_that_never_answers_fails_within_the_timeout(clock, old_key):
    # Accepts connections (the backlog) but never answers a byte.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/.well-known/jwks.json"
        client = JwksClient(url, timeout=TIMEOUT, ttl=TTL, min_refresh_interval=MIN_REFRESH, clock=clock)

        started = time.monotonic()
        with pytest.raises(KeysUnavailable):
            client.lookup(old_key.kid)

    assert time.monotonic() - started < TIMEOUT + 1


def test_a_jwks_url_refusing_connections_fails_at_once(clock, old_key):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/.well-known/jwks.json"
    client = JwksClient(url, timeout=TIMEOUT, ttl=TTL, min_refresh_interval=MIN_REFRESH, clock=clock)

    with pytest.raises(KeysUnavailable):
        client.lookup(old_key.kid)


def test_a_jwks_entry_cannot_lend_its_key_to_another_kid(old_key, new_key):
    entry = {**new_key.jwk, "kid": old_key.kid}

    assert list(keys_from_jwks({"keys": [entry]})) == [new_key.kid]


@pytest.mark.parametrize(
    "entry",
    [
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "OKP", "crv": "X25519", "x": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "x": "not-32-bytes"},
        {"kty": "OKP", "crv": "Ed25519", "x": 7},
        "not an object",
    ],
    ids=["rsa", "x25519", "short x", "x not a string", "not an object"],
)
def test_jwks_entries_a_verifier_would_never_use_are_skipped(entry, old_key):
    assert list(keys_from_jwks({"keys": [entry, old_key.jwk]})) == [old_key.kid]


def test_a_document_without_keys_is_not_a_jwks():
    with pytest.raises(ValueError, match="not a JWKS"):
        keys_from_jwks({"keys": "none"})
