"""The api service's settings, on top of those every service has (servicekit.config)."""

from __future__ import annotations

import dataclasses
import ipaddress

from servicekit.config import ConfigError, ServiceSettings, setting


@dataclasses.dataclass(frozen=True)
class ApiSettings(ServiceSettings):
    auth_service_url: str = setting(
        "AUTH_SERVICE_URL", doc="base URL of the auth service, e.g. http://auth:3001"
    )
    images_service_url: str = setting(
        "IMAGES_SERVICE_URL", doc="base URL of the images service, e.g. http://images:3003"
    )
    upstream_connect_timeout_seconds: float = setting(
        "UPSTREAM_CONNECT_TIMEOUT_SECONDS",
        2.0,
        doc="seconds to wait for a connection to auth or images",
        minimum=0.05,
        maximum=30,
    )
    upstream_read_timeout_seconds: float = setting(
        "UPSTREAM_READ_TIMEOUT_SECONDS",
        5.0,
        doc="seconds to wait for each read of an answer from auth (and of the readiness probes)",
        minimum=0.05,
        maximum=120,
    )
    images_read_timeout_seconds: float = setting(
        "IMAGES_READ_TIMEOUT_SECONDS",
        30.0,
        doc="seconds to wait for each read of an answer from images (it stores uploads before answering)",
        minimum=0.05,
        maximum=300,
    )
    token_cache_seconds: float = setting(
        "TOKEN_CACHE_SECONDS",
        5.0,
        doc="how long a positive token verification is reused (never past the token's expiry); 0 disables",
        minimum=0,
        maximum=60,
    )
    token_cache_size: int = setting(
        "TOKEN_CACHE_SIZE", 10000, doc="most verified tokens each worker remembers", minimum=1
    )
    upstream_pool_size: int = setting(
        "UPSTREAM_POOL_SIZE",
        16,
        doc="keep-alive connections each worker holds per upstream service",
        minimum=1,
    )
    # gunicorn closes a keep-alive connection after GUNICORN_KEEPALIVE (5) idle seconds; a call
    # sent on it in that instant gets no answer, and an upload is not sent again (upstream.py).
    upstream_max_idle_seconds: float = setting(
        "UPSTREAM_MAX_IDLE_SECONDS",
        2.0,
        doc="seconds a pooled connection to auth or images may stay idle and still be reused; "
        "keep it below their GUNICORN_KEEPALIVE",
        minimum=0.05,
        maximum=300,
    )
    max_upload_bytes: int = setting(
        "MAX_UPLOAD_BYTES",
        20 * 1024 * 1024,
        doc="largest image the gateway lets through to images (plus room for the multipart framing)",
        minimum=1024,
    )
    # Off by default: when auth or images is down, every api pod sees it alike, so failing
    # readiness would take every pod out of the Service and the public posts routes with them.
    # The routes that need the missing service answer 503 on their own.
    ready_requires_upstreams: bool = setting(
        "READY_REQUIRES_UPSTREAMS",
        False,
        doc="whether GET /ready fails while auth or images is down (they are reported either way)",
    )
    # Posts are at most 10,000 characters; JSON escapes a character outside the BMP as 12 bytes.
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES", 128 * 1024, doc="largest JSON request body accepted (413 above)", minimum=1024
    )
    # A second layer under auth's per-username throttling: one client trying many usernames,
    # or registering accounts in bulk. Counted in api_db, so it holds across api replicas.
    rate_limit_window_seconds: int = setting(
        "RATE_LIMIT_WINDOW_SECONDS",
        60,
        doc="length of the fixed window in which each client's logins and registrations are counted",
        minimum=1,
        maximum=86400,
    )
    rate_limit_login: int = setting(
        "RATE_LIMIT_LOGIN",
        30,
        doc="logins one client address may attempt per window through the gateway (429 above)",
        minimum=1,
    )
    rate_limit_register: int = setting(
        "RATE_LIMIT_REGISTER",
        10,
        doc="registrations one client address may attempt per window through the gateway (429 above)",
        minimum=1,
    )
    # Empty by default: X-Forwarded-For is whatever the client wrote unless a proxy we run added it.
    trusted_proxies: str = setting(
        "TRUSTED_PROXIES",
        "",
        doc="comma-separated CIDRs of the proxies in front of the gateway (e.g. the ingress "
        "controller's pods) whose X-Forwarded-For names the client; none by default",
    )

    def __post_init__(self) -> None:
        # Refused at start: a typo here would otherwise silently trust no proxy, or the wrong one.
        for part in filter(None, (p.strip() for p in self.trusted_proxies.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError as exc:
                raise ConfigError(
                    "invalid configuration for ApiSettings:\n"
                    f"  - TRUSTED_PROXIES must be comma-separated CIDRs: {exc}"
                ) from None
