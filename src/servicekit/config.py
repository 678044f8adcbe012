"""Configuration from environment variables, in one place.

Every setting a service reads is declared here as a field of a frozen dataclass with its
environment variable, its type and its default. ``load()`` reads them all and, when any is
missing or malformed, raises ``ConfigError`` listing every problem at once so that a pod
that cannot start says exactly why.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

REQUIRED = object()


class ConfigError(RuntimeError):
    """One or more settings are missing or malformed."""


def setting(
    env: str,
    default: Any = REQUIRED,
    *,
    doc: str,
    minimum: float | None = None,
    maximum: float | None = None,
    min_bytes: int | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
) -> Any:
    """Declare a dataclass field read from the environment variable ``env``."""
    return dataclasses.field(
        default=None if default is REQUIRED else default,
        metadata={
            "env": env,
            "required": default is REQUIRED,
            "doc": doc,
            "minimum": minimum,
            "maximum": maximum,
            "min_bytes": min_bytes,
            "choices": choices,
            "secret": secret,
        },
    )


_KIND_NAMES = {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected one of true/false, yes/no, on/off, 1/0")
    if kind is int:
        return int(raw.strip())
    if kind is float:
        value = float(raw.strip())
        # nan compares false with every bound, and inf is no timeout at all.
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    return raw


def load(cls: type, environ: Mapping[str, str] | None = None) -> Any:
    """Build ``cls`` (a dataclass of ``setting`` fields) from ``environ``."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    hints = _resolved_types(cls)
    for field in dataclasses.fields(cls):
        meta = field.metadata
        env = meta["env"]
        raw = environ.get(env)
        if raw is None or raw == "":
            if meta["required"]:
                problems.append(f"{env} is required: {meta['doc']}")
            else:
                values[field.name] = field.default
            continue
        kind = hints[field.name]
        try:
            value = _convert(raw, kind)
        except ValueError as exc:
            problems.append(f"{env} must be {_KIND_NAMES.get(kind, kind.__name__)}: {exc}")
            continue
        if meta["minimum"] is not None and value < meta["minimum"]:
            problems.append(f"{env} must be at least {meta['minimum']}, got {value}")
        if meta["maximum"] is not None and value > meta["maximum"]:
            problems.append(f"{env} must be at most {meta['maximum']}, got {value}")
        if meta["min_bytes"] is not None and len(value.encode()) < meta["min_bytes"]:
            problems.append(f"{env} must be at least {meta['min_bytes']} bytes long")
        if meta["choices"] is not None and value not in meta["choices"]:
            problems.append(f"{env} must be one of {', '.join(meta['choices'])}, got {value!r}")
        values[field.name] = value
    if problems:
        raise ConfigError(f"invalid configuration for {cls.__name__}:\n  - " + "\n  - ".join(problems))
    return cls(**values)


def _resolved_types(cls: type) -> dict[str, type]:
    import typing

    hints = typing.get_type_hints(cls)
    resolved = {}
    for name, hint in hints.items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        resolved[name] = args[0] if args else hint
    return resolved


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, description) rows, for docs/configuration.md."""
    rows = []
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if meta["required"]:
            default = "required"
        else:
            default = f"`{field.default}`" if field.default not in ("", None) else "(unset)"
        rows.append((meta["env"], default, meta["doc"]))
    return rows


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """Settings every service shares. Each service subclasses it with its own."""

    database_url: str = setting(
        "DATABASE_URL",
        doc="SQLAlchemy URL of the service's own database, e.g. postgresql+psycopg2://user:pass@host:5432/auth_db",
        secret=True,
    )
    log_level: str = setting(
        "LOG_LEVEL", "INFO", doc="Python log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    db_pool_size: int = setting("DB_POOL_SIZE", 5, doc="connections kept per worker process", minimum=1)
    db_max_overflow: int = setting("DB_MAX_OVERFLOW", 5, doc="extra connections under load", minimum=0)
    db_connect_timeout: int = setting(
        "DB_CONNECT_TIMEOUT_SECONDS", 3, doc="seconds to wait for a database connection", minimum=1
    )
    db_statement_timeout_ms: int = setting(
        "DB_STATEMENT_TIMEOUT_MS", 5000, doc="server-side limit for one statement", minimum=100
    )
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES", 64 * 1024, doc="largest request body accepted (413 above)", minimum=1024
    )
    otlp_endpoint: str = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        doc="OpenTelemetry collector (OTLP/HTTP) base URL, e.g. http://otel-collector:4318; "
        "traces are recorded and exported only when set (the SDK's own variables below then apply)",
    )


@dataclasses.dataclass(frozen=True)
class TokenSettings(ServiceSettings):
    """The claims of access tokens, for the services that issue or check them (auth, images).

    The api has no token settings: it asks auth's POST /verify."""

    jwt_issuer: str = setting("JWT_ISSUER", "platform-auth", doc="`iss` claim set and required on tokens")
    jwt_audience: str = setting("JWT_AUDIENCE", "platform", doc="`aud` claim set and required on tokens")
