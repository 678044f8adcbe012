"""Calls to the services behind the gateway (auth, images): pooled, timed out, measured.

Every call goes through :class:`Upstream.send`, which turns each way a call can fail into the
answer the client gets, as problem+json:

- the service refuses the connection, or does not accept it in time: 503 (``unavailable``)
- the service accepts but does not answer within the read timeout: 504 (``timeout``)
- the service answers something that is not HTTP, or drops the connection: 502 (``bad_response``)

Nothing that may have been applied is retried: a POST that timed out may have been, and sending
it again could register a user or store an image twice. The connection pool absorbs the cost of
the calls. The one retry is for calls the caller marks idempotent (token checks, GET and HEAD):
when the service resets the connection (typically a pooled one whose keep-alive ended just as it
was reused), the call is sent once more on a new connection instead of failing with 502.

That race is also kept from happening: a pooled connection idle for longer than
``max_idle_seconds`` (set below the services' keep-alive) is closed at checkout and replaced by a
new one, so an upload is never sent on a connection the service is about to close.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Iterator

import requests
from prometheus_client import Counter, Histogram
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.util.retry import Retry

from servicekit.errors import ApiError
from servicekit.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)

TARGETS = ("auth", "images")
OUTCOMES = ("success", "client_error", "server_error", "timeout", "unavailable", "bad_response")

UPSTREAM_REQUESTS = Counter(
    "api_upstream_requests_total",
    "Calls from the gateway to another service, by target and outcome.",
    ["target", "outcome"],
)
UPSTREAM_LATENCY = Histogram(
    "api_upstream_request_duration_seconds",
    "Time from sending a call to another service until its status and headers arrived.",
    ["target"],
    buckets=LATENCY_BUCKETS,
)
for _target in TARGETS:
    UPSTREAM_LATENCY.labels(_target)
    for _outcome in OUTCOMES:
        UPSTREAM_REQUESTS.labels(_target, _outcome)

# Big enough to keep system calls few, small enough that a body in flight costs little memory.
CHUNK_BYTES = 64 * 1024


class RequestBody:
    """An incoming body as an iterable that ``requests`` sends as-is, with its Content-Length.

    A plain generator would make ``requests`` switch to chunked transfer encoding; giving it a
    length keeps the Content-Length the client sent, so the service behind can refuse an
    oversized upload before reading it.
    """

    def __init__(self, stream, length: int) -> None:
        self._stream = stream
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._stream.read(CHUNK_BYTES):
            yield chunk


def chunked_body(stream) -> Iterator[bytes]:
    """An incoming body of unknown length, passed on with chunked transfer encoding."""
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def _outcome_of_status(status: int) -> str:
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "success"


def _caused_by(exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return False


class IdleLimit:
    """A urllib3 pool that never hands out a connection idle for longer than ``max_idle_seconds``.

    urllib3 already drops a pooled connection the server has closed; this closes one the server
    may be closing right now. gunicorn ends a keep-alive connection after ``GUNICORN_KEEPALIVE``
    seconds without a request, and a request sent in that instant is lost without an answer.
    """

    def __init__(self, *args, max_idle_seconds: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_idle_seconds = max_idle_seconds

    def _put_conn(self, conn) -> None:
        if conn is not None:
            conn.returned_to_pool_at = time.monotonic()
        super()._put_conn(conn)

    def _get_conn(self, timeout: float | None = None):
        conn = super()._get_conn(timeout)
        returned_at = getattr(conn, "returned_to_pool_at", None)
        if returned_at is not None and time.monotonic() - returned_at > self.max_idle_seconds:
            # Closed, it reconnects on its next request, as urllib3 does for a dropped one.
            conn.close()
            conn.returned_to_pool_at = None
        return conn


class IdleLimitedHTTPConnectionPool(IdleLimit, HTTPConnectionPool):
    pass


class IdleLimitedHTTPSConnectionPool(IdleLimit, HTTPSConnectionPool):
    pass


class IdleLimitedAdapter(HTTPAdapter):
    """requests' adapter, with pools that close connections idle past ``max_idle_seconds``."""

    def __init__(self, *, max_idle_seconds: float, **kwargs) -> None:
        self.max_idle_seconds = max_idle_seconds
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        limit = self.max_idle_seconds
        self.poolmanager.pool_classes_by_scheme = {
            "http": functools.partial(IdleLimitedHTTPConnectionPool, max_idle_seconds=limit),
            "https": functools.partial(IdleLimitedHTTPSConnectionPool, max_idle_seconds=limit),
        }


class Upstream:
    """One service behind the gateway: its base URL, its timeouts and a pooled session."""

    def __init__(
        self,
        target: str,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 16,
        max_idle_seconds: float = 2.0,
    ) -> None:
        self.target = target
        self.name = f"the {target} service"
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        # Never retried, never redirected: see the module docstring.
        adapter = IdleLimitedAdapter(
            max_idle_seconds=max_idle_seconds,
            pool_connections=1,
            pool_maxsize=pool_size,
            max_retries=Retry(total=0, read=False, redirect=False, raise_on_status=False),
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # The environment's proxies are for people, not for calls inside the cluster.
        self.session.trust_env = False

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        data: Iterable[bytes] | bytes | None = None,
        params: str | None = None,
        stream: bool = False,
        timeout: tuple[float, float] | None = None,
        idempotent: bool = False,
    ) -> requests.Response:
        """Call the service; any failure to get an HTTP answer becomes an ApiError (502/503/504).

        ``idempotent``: the call changes nothing and has no body to stream, so it may be sent
        again once if the service closed the connection under it (see the module docstring).
        """
        url = self.url(path)
        if params:
            url = f"{url}?{params}"
        started = time.perf_counter()
        options = dict(headers=headers, data=data, stream=stream, timeout=timeout or self.timeout)
        try:
            response = self._request(method, url, idempotent=idempotent, **options)
        except requests.ConnectTimeout as exc:
            raise self._failed(
                "unavailable", started, exc, 503, f"{self.name} did not accept a connection in time."
            ) from None
        except requests.ReadTimeout as exc:
            raise self._failed("timeout", started, exc, 504, f"{self.name} did not answer in time.") from None
        except requests.ConnectionError as exc:
            if _caused_by(exc, NewConnectionError):
                raise self._failed("unavailable", started, exc, 503, f"{self.name} is unavailable.") from None
            if _caused_by(exc, (TimeoutError, Urllib3TimeoutError)):
                raise self._failed(
                    "timeout", started, exc, 504, f"{self.name} did not answer in time."
                ) from None
            raise self._failed(
                "bad_response",
                started,
                exc,
                502,
                f"{self.name} closed the connection or answered something that is not HTTP.",
            ) from None
        except requests.RequestException as exc:
            raise self._failed(
                "bad_response", started, exc, 502, f"{self.name} sent a malformed answer."
            ) from None
        UPSTREAM_LATENCY.labels(self.target).observe(time.perf_counter() - started)
        UPSTREAM_REQUESTS.labels(self.target, _outcome_of_status(response.status_code)).inc()
        return response

    def _request(self, method: str, url: str, *, idempotent: bool, **options) -> requests.Response:
        try:
            return self.session.request(method, url, allow_redirects=False, **options)
        except requests.ConnectionError as exc:
            closed_under_us = not isinstance(exc, requests.ConnectTimeout) and _caused_by(
                exc,
                (ConnectionResetError, BrokenPipeError),  # RemoteDisconnected is a reset
            )
            if not (idempotent and closed_under_us):
                raise
        log.info("upstream closed a reused connection; sending again", extra={"target": self.target})
        return self.session.request(method, url, allow_redirects=False, **options)

    def bad_response(self, detail: str) -> ApiError:
        """For an answer that is HTTP but not what the contract says: counted, logged, a 502."""
        # The call itself was already counted by its status; count the failure it turned out to be.
        UPSTREAM_REQUESTS.labels(self.target, "bad_response").inc()
        log.warning("malformed answer from upstream", extra={"target": self.target, "problem": detail})
        return ApiError(502, f"{self.name} sent a malformed answer.", type_="bad-gateway")

    def _failed(self, outcome: str, started: float, exc: Exception, status: int, detail: str) -> ApiError:
        elapsed = time.perf_counter() - started
        UPSTREAM_LATENCY.labels(self.target).observe(elapsed)
        UPSTREAM_REQUESTS.labels(self.target, outcome).inc()
        log.warning(
            "upstream call failed",
            extra={
                "target": self.target,
                "outcome": outcome,
                "error": f"{type(exc).__name__}: {exc}"[:300],
                "elapsed_ms": round(elapsed * 1000, 1),
            },
        )
        type_ = {502: "bad-gateway", 503: "upstream-unavailable", 504: "upstream-timeout"}[status]
        headers = {"Retry-After": "1"} if status == 503 else None
        return ApiError(status, detail, type_=type_, headers=headers, upstream=self.target)

    def probe(self, timeout: float) -> None:
        """Readiness: the service answers GET /live (no I/O on its side) within ``timeout``."""
        response = self.session.get(self.url("/live"), timeout=(timeout, timeout), allow_redirects=False)
        if response.status_code != 200:
            raise RuntimeError(f"{self.target} /live answered {response.status_code}")

    def close(self) -> None:
        self.session.close()
