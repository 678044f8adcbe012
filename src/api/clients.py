"""Who the client is, and how often it may log in or register (a limit shared by every replica).

The client is the TCP peer. X-Forwarded-For is anyone's to write, so it is believed only as far
as proxies we trust vouch for it: walking it from the right (the entry the nearest proxy
added), each trusted hop hands over to the address it saw, and the first untrusted one is the
client. Entries a client wrote itself sit further left and are never reached.

The limit is a fixed window per client and scope, counted with one atomic upsert in api_db, so
concurrent requests on several replicas each get their own count and none slips past it.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import random
from collections.abc import Callable

from flask import current_app, request
from prometheus_client import Counter
from sqlalchemy import text

from api.models import db
from servicekit.app import settings_of
from servicekit.errors import ApiError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

SCOPES = ("login", "register")
RATE_LIMITED = Counter(
    "api_rate_limited_total",
    "Requests the gateway refused (429) because their client was over its limit, by scope.",
    ["scope"],
)
for _scope in SCOPES:
    RATE_LIMITED.labels(_scope)

# The integer cap keeps a flood from overflowing the counter; past the limit the count is moot.
_HIT = text(
    """
    INSERT INTO client_rate_limits AS c (scope, client, window_start, hits)
    VALUES (
        :scope, :client,
        to_timestamp(floor(extract(epoch FROM statement_timestamp()) / :window) * :window),
        1
    )
    ON CONFLICT (scope, client, window_start) DO UPDATE SET hits = LEAST(c.hits + 1, 2147483647)
    RETURNING hits,
        extract(epoch FROM c.window_start + make_interval(secs => :window) - statement_timestamp())
    """
)
_FORGET = text(
    "DELETE FROM client_rate_limits WHERE ctid IN (SELECT ctid FROM client_rate_limits "
    "WHERE window_start < statement_timestamp() - make_interval(secs => 2 * :window) LIMIT 1000)"
)
_FORGET_ONE_IN = 200


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, fd00::/8"`` -> networks; a bare address is a network of one."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()
    )


def _address(value: str) -> Address | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, or what trusted proxies say the peer was forwarding for."""
    current = _address(peer or "")
    if current is None:
        return peer or "unknown"
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    while hops and any(current in network for network in trusted):
        previous = _address(hops.pop())
        if previous is None:
            # A trusted proxy passed on something that is not an address: the proxy is all we know.
            break
        current = previous
    return str(current)


def limit_key(address: str) -> str:
    """One key per IPv4 address, and per /64 for IPv6: one host is usually given a whole /64."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address[:64]


def install(app, settings) -> None:
    app.extensions["api.trusted_proxies"] = parse_networks(settings.trusted_proxies)


def current_client() -> str:
    forwarded_for = ", ".join(request.headers.getlist("X-Forwarded-For"))
    return client_address(request.remote_addr, forwarded_for, current_app.extensions["api.trusted_proxies"])


def _check(scope: str) -> None:
    settings = settings_of(current_app)
    limit = {"login": settings.rate_limit_login, "register": settings.rate_limit_register}[scope]
    window = settings.rate_limit_window_seconds
    hits, remaining = db.session.execute(
        _HIT, {"scope": scope, "client": limit_key(current_client()), "window": window}
    ).one()
    if random.randrange(_FORGET_ONE_IN) == 0:  # noqa: S311 - a sampling rate, not a secret
        db.session.execute(_FORGET, {"window": window})
    db.session.commit()
    if hits > limit:
        RATE_LIMITED.labels(scope).inc()
        raise ApiError(
            429,
            "Too many requests from this client; try again later.",
            type_="rate-limited",
            headers={"Retry-After": str(max(1, math.ceil(float(remaining))))},
        )


def rate_limited(scope: str) -> Callable:
    """Count the request against its client's limit for ``scope`` before the view runs."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def limited(*args, **kwargs):
            _check(scope)
            return view(*args, **kwargs)

        return limited

    return decorate
