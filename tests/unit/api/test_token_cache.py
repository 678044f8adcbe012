"""The token cache: bounded in size, bounded in time, never past the token's expiry."""

from __future__ import annotations

from api.identity import Caller, TokenCache

ALICE = Caller(user_id=1, username="alice")
BOB = Caller(user_id=2, username="bob")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_stored_caller_is_returned_until_its_lifetime_ends():
    clock = Clock()
    cache = TokenCache(max_entries=10, lifetime_seconds=5, clock=clock)
    cache.put("token-a", ALICE, token_expires_at=clock.now + 900)

    clock.now += 4.9
    assert cache.get("token-a") == ALICE
    clock.now += 0.1
    assert cache.get("token-a") is None
    assert len(cache) == 0


def test_an_entry_never_outlives_the_tokens_expiry():
    clock = Clock()
    cache = TokenCache(max_entries=10, lifetime_seconds=5, clock=clock)
    cache.put("token-a", ALICE, token_expires_at=clock.now + 2)

    clock.now += 1.9
    assert cache.get("token-a") == ALICE
    clock.now += 0.1
    assert cache.get("token-a") is None


def test_an_expired_or_expiry_less_token_is_not_stored():
    clock = Clock()
    cache = TokenCache(max_entries=10, lifetime_seconds=5, clock=clock)
    cache.put("expired", ALICE, token_expires_at=clock.now - 1)
    cache.put("no-exp", ALICE, token_expires_at=None)
    assert cache.get("expired") is None
    assert cache.get("no-exp") is None


def test_the_least_recently_used_entry_goes_when_the_cache_is_full():
    clock = Clock()
    cache = TokenCache(max_entries=2, lifetime_seconds=5, clock=clock)
    cache.put("a", ALICE, clock.now + 60)
    cache.put("b", BOB, clock.now + 60)
    assert cache.get("a") == ALICE  # "b" is now the least recently used
    cache.put("c", BOB, clock.now + 60)

    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == ALICE
    assert cache.get("c") == BOB


def test_a_lifetime_of_zero_disables_the_cache():
    cache = TokenCache(max_entries=10, lifetime_seconds=0)
    cache.put("a", ALICE, token_expires_at=10**12)
    assert cache.get("a") is None


def test_the_cache_keeps_digests_not_tokens():
    cache = TokenCache(max_entries=10, lifetime_seconds=5)
    cache.put("secret.token.value", ALICE, token_expires_at=10**12)
    assert all(b"secret" not in key for key in cache._entries)
