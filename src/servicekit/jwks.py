"""The auth service's public keys, fetched from its JWKS and cached, for a service that verifies
tokens itself (images).

- Every fetch has a deadline (``timeout``) for the whole exchange, not only per read, and a
  size cap, so a slow or hostile answer never holds a request longer than that.
- Keys are reused for ``ttl`` seconds, then refetched on the next lookup.
- A token naming a kid the cache does not hold triggers a refetch (a key was just added and
  this cache predates it), at most once per ``min_refresh_interval``: tokens with made-up
  kids cannot turn into a stream of requests to auth.
- A failed fetch keeps the keys already held (auth being down must not refuse tokens that
  verified a moment ago) and is not retried before ``min_refresh_interval`` either. With no
  keys held at all, a lookup raises KeysUnavailable: the request is answered 503, quickly.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import Counter

from servicekit.tokens import KeysUnavailable, UnknownKey, keys_from_jwks

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 64 * 1024
FETCHES = Counter("jwks_fetches_total", "Fetches of the auth service's JWKS, by outcome.", ["outcome"])
for _outcome in ("success", "failure"):
    FETCHES.labels(_outcome)


class JwksClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        ttl: float,
        min_refresh_interval: float,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._session = session or requests.Session()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def lookup(self, kid: str) -> Ed25519PublicKey:
        """The public key named ``kid``; raises UnknownKey (401) or KeysUnavailable (503)."""
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None and self._fresh(now):
            return key
        self._refresh(now)
        key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._keys:
            raise KeysUnavailable(f"no keys from {self.url}")
        raise UnknownKey("unknown kid")

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self.ttl

    def _refresh(self, now: float) -> None:
        # One thread fetches; the others of the worker wait for it, at most one timeout.
        if not self._lock.acquire(timeout=self.timeout):
            return
        try:
            attempted = self._attempted_at
            if attempted is not None and now - attempted < self.min_refresh_interval:
                return
            self._attempted_at = self._clock()
            try:
                keys = keys_from_jwks(self._fetch())
            except (requests.RequestException, ValueError) as error:
                FETCHES.labels("failure").inc()
                log.warning(
                    "jwks fetch failed",
                    extra={"url": self.url, "error": str(error), "keys_held": len(self._keys)},
                )
                return
            FETCHES.labels("success").inc()
            self._keys = keys
            self._fetched_at = self._clock()
        finally:
            self._lock.release()

    def _fetch(self) -> dict:
        deadline = time.monotonic() + self.timeout
        with self._session.get(
            self.url, timeout=self.timeout, stream=True, headers={"Accept": "application/json"}
        ) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_content(8192):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise requests.Timeout(f"JWKS not received within {self.timeout} s")
        return json.loads(body)
