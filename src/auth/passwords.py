"""Password rules and bcrypt, with the same cost for a user that does not exist."""

from __future__ import annotations

import bcrypt
from flask import Flask, current_app
from prometheus_client import Counter

from servicekit.validation import invalid

MIN_CHARACTERS = 8
# bcrypt reads only the first 72 bytes; longer passwords are refused, never truncated.
MAX_BYTES = 72

# What login throttling exists to bound: each one is tens to hundreds of ms of a CPU.
BCRYPT_COMPUTATIONS = Counter(
    "auth_bcrypt_computations_total",
    "bcrypt computations, by operation (hash for a new password, check for a login).",
    ["operation"],
)
for _operation in ("hash", "check"):
    BCRYPT_COMPUTATIONS.labels(_operation)


def init_app(app: Flask, rounds: int) -> None:
    app.extensions["auth.bcrypt_rounds"] = rounds
    # Checked against when the user is unknown, so that answer takes as long as a wrong password.
    app.extensions["auth.dummy_hash"] = bcrypt.hashpw(b"timing-equaliser", bcrypt.gensalt(rounds))


def validate_new(password: str) -> bytes:
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry as an escape
        raise invalid("password", "must be valid Unicode text") from None
    if len(password) < MIN_CHARACTERS:
        raise invalid("password", f"must be at least {MIN_CHARACTERS} characters")
    if len(encoded) > MAX_BYTES:
        raise invalid("password", f"must be at most {MAX_BYTES} bytes in UTF-8 (bcrypt's limit)")
    if b"\x00" in encoded:
        raise invalid("password", "must not contain NUL characters")
    return encoded


def hash_password(encoded: bytes) -> str:
    rounds = current_app.extensions["auth.bcrypt_rounds"]
    BCRYPT_COMPUTATIONS.labels("hash").inc()
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, stored_hash: str | None) -> bool:
    """True only for the right password of an existing user; always pays one bcrypt check."""
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no stored password can match it
        encoded = b""
    usable = 0 < len(encoded) <= MAX_BYTES and b"\x00" not in encoded
    candidate = encoded if usable else b"not-a-possible-password"
    target = stored_hash.encode("ascii") if stored_hash else current_app.extensions["auth.dummy_hash"]
    BCRYPT_COMPUTATIONS.labels("check").inc()
    matches = bcrypt.checkpw(candidate, target)
    return matches and usable and stored_hash is not None
