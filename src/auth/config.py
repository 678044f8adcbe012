"""The auth service's settings, on top of those every service has (servicekit.config)."""

from __future__ import annotations

import dataclasses
import datetime

from servicekit.config import ServiceSettings, setting


@dataclasses.dataclass(frozen=True)
class AuthSettings(ServiceSettings):
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
