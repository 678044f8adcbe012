"""The auth service's settings, on top of those every service has (servicekit.config)."""

from __future__ import annotations

import dataclasses
import datetime

from servicekit.config import TokenSettings, setting


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

    @property
    def token_lifetime(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.token_lifetime_seconds)
