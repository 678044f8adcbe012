"""The auth service's settings, on top of those every service has (servicekit.config)."""

from __future__ import annotations

import dataclasses
import datetime

from servicekit.config import ConfigError, TokenSettings, setting


@dataclasses.dataclass(frozen=True)
class AuthSettings(TokenSettings):
    jwt_signing_key: str = setting(
        "JWT_SIGNING_KEY",
        doc="Ed25519 private key (PKCS#8 PEM) the access tokens are signed with; held by auth alone."
        " Its RFC 7638 thumbprint is the `kid` of every token it signs",
        secret=True,
    )
    jwt_additional_keys: str = setting(
        "JWT_ADDITIONAL_KEYS",
        "",
        doc="further Ed25519 keys (PEM blocks, public or private, one after the other) published in"
        " the JWKS and accepted on /verify but not signed with: the next key before a rotation, the"
        " previous one after it (charts/platform/README.md, 'Rotating the token signing key')",
        secret=True,
    )
    jwks_max_age_seconds: int = setting(
        "JWKS_MAX_AGE_SECONDS",
        300,
        doc="Cache-Control max-age of GET /.well-known/jwks.json",
        minimum=0,
        maximum=86400,
    )
    bcrypt_rounds: int = setting(
        "BCRYPT_ROUNDS",
        12,
        doc="bcrypt cost factor (2^n rounds) for new password hashes",
        minimum=4,
        maximum=16,
    )
    token_lifetime_seconds: int = setting(
        "TOKEN_LIFETIME_SECONDS", 900, doc="lifetime of an access token", minimum=60, maximum=86400
    )
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES", 16 * 1024, doc="largest request body accepted (413 above)", minimum=1024
    )

    # Throttling counts failures per username (known or not) in auth_db, so every replica
    # and every restart sees the same count; see auth/throttle.py.
    login_free_failures: int = setting(
        "LOGIN_FREE_FAILURES",
        5,
        doc="consecutive failed logins for one username before each further attempt must wait",
        minimum=1,
        maximum=1000,
    )
    login_backoff_base_seconds: float = setting(
        "LOGIN_BACKOFF_BASE_SECONDS",
        1.0,
        doc="wait after the last free failure; it doubles with each further failure",
        minimum=0.1,
        maximum=3600,
    )
    login_backoff_max_seconds: float = setting(
        "LOGIN_BACKOFF_MAX_SECONDS",
        900.0,
        doc="longest wait between two login attempts for one username",
        minimum=1,
        maximum=86400,
    )
    login_failure_memory_seconds: float = setting(
        "LOGIN_FAILURE_MEMORY_SECONDS",
        86400.0,
        doc="a username's failure count starts over after this long without an attempt "
        "(at least LOGIN_BACKOFF_MAX_SECONDS)",
        minimum=60,
    )

    def __post_init__(self) -> None:
        # A memory shorter than the cap would forget the count before the wait ran out, so
        # an attacker pacing at the cap would get free failures again and again.
        if self.login_failure_memory_seconds < self.login_backoff_max_seconds:
            raise ConfigError(
                "invalid configuration for AuthSettings:\n  - LOGIN_FAILURE_MEMORY_SECONDS must be at "
                "least LOGIN_BACKOFF_MAX_SECONDS"
            )
        if self.login_backoff_base_seconds > self.login_backoff_max_seconds:
            raise ConfigError(
                "invalid configuration for AuthSettings:\n  - LOGIN_BACKOFF_BASE_SECONDS must be at "
                "most LOGIN_BACKOFF_MAX_SECONDS"
            )

    @property
    def token_lifetime(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.token_lifetime_seconds)
