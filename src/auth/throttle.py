"""Per-username login throttling, shared by every auth replica through auth_db.

Each attempt first claims a slot with one atomic statement: it counts the attempt as a failure
and sets when the next one may come, but only if that time has arrived. PostgreSQL serialises
the statements on the row, and each re-reads the row its predecessor wrote, so a burst of
concurrent attempts cannot all pass before the first failure is recorded: only the free
attempts and then one per backoff interval get as far as bcrypt. A success deletes the row.

Counting before bcrypt (rather than after a failure) is what makes this hold under concurrency;
an attempt that dies half-way therefore counts as a failure, which errs on the safe side.

The key is a digest of the lower-cased username whether or not an account has it, so an
unknown name is throttled exactly like a real one and the answers tell nothing apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random

from sqlalchemy import text

from auth.config import AuthSettings
from auth.models import db

# An existing row is judged by clock_timestamp(), read once the row is locked: an attempt that
# waited for a concurrent one to commit compares with a time after that one, not with when its own
# statement started (which could be before the other's, so it would be refused as too early).
# The delay after the n-th consecutive failure: nothing while n is below the free failures,
# then the base doubling per failure, capped (the exponent is bounded so power() cannot
# overflow). The count starts over when the last attempt is older than the failure memory.
_CLAIM = text(
    """
    WITH attempt AS (SELECT statement_timestamp() AS now)
    INSERT INTO login_throttles AS t (username_digest, failures, next_attempt_at, last_attempt_at)
    SELECT :digest, 1, now + make_interval(secs => CASE
            WHEN 1 < :free THEN 0
            ELSE CAST(:base AS float8) END), now
    FROM attempt
    ON CONFLICT (username_digest) DO UPDATE SET
        failures = CASE
            WHEN t.last_attempt_at < clock_timestamp() - make_interval(secs => CAST(:memory AS float8))
            THEN 1 ELSE t.failures + 1 END,
        next_attempt_at = clock_timestamp() + make_interval(secs => (
            SELECT CASE
                WHEN n < :free THEN 0
                ELSE LEAST(CAST(:cap AS float8), CAST(:base AS float8) * power(2.0, LEAST(n - :free, 40)))
                END
            FROM (SELECT CASE
                WHEN t.last_attempt_at
                    < clock_timestamp() - make_interval(secs => CAST(:memory AS float8))
                THEN 1 ELSE t.failures + 1 END AS n) AS consecutive)),
        last_attempt_at = clock_timestamp()
    WHERE t.next_attempt_at <= clock_timestamp()
    RETURNING failures
    """
)
_WAIT = text(
    "SELECT EXTRACT(EPOCH FROM next_attempt_at - statement_timestamp()) "
    "FROM login_throttles WHERE username_digest = :digest"
)
_RESET = text("DELETE FROM login_throttles WHERE username_digest = :digest")
# Names tried once and never again would otherwise stay for ever; a bounded batch keeps each
# clean-up short.
_FORGET = text(
    "DELETE FROM login_throttles WHERE ctid IN (SELECT ctid FROM login_throttles WHERE last_attempt_at "
    "< statement_timestamp() - make_interval(secs => CAST(:memory AS float8)) LIMIT 1000)"
)
_FORGET_ONE_IN = 200


@dataclasses.dataclass(frozen=True)
class Claim:
    allowed: bool
    retry_after_seconds: int = 0


def username_digest(username: str) -> bytes:
    # surrogatepass: a lone surrogate (JSON can carry one) is still some name to count.
    return hashlib.sha256(username.lower().encode("utf-8", "surrogatepass")).digest()


def claim_attempt(username: str, settings: AuthSettings) -> Claim:
    """Count an attempt for ``username`` if it may be made now; commits, so others see it at once."""
    digest = username_digest(username)
    params = {
        "digest": digest,
        "free": settings.login_free_failures,
        "base": settings.login_backoff_base_seconds,
        "cap": settings.login_backoff_max_seconds,
        "memory": settings.login_failure_memory_seconds,
    }
    claimed = db.session.execute(_CLAIM, params).scalar_one_or_none()
    if claimed is None:
        wait = db.session.execute(_WAIT, {"digest": digest}).scalar_one_or_none()
        db.session.commit()
        # The wait may have just run out between the two statements: one second is still honest.
        return Claim(False, max(1, math.ceil(float(wait or 0))))
    if random.randrange(_FORGET_ONE_IN) == 0:  # noqa: S311 - a sampling rate, not a secret
        db.session.execute(_FORGET, {"memory": settings.login_failure_memory_seconds})
    db.session.commit()
    return Claim(True)


def reset(username: str) -> None:
    """The right password: the username starts over with all its free failures."""
    db.session.execute(_RESET, {"digest": username_digest(username)})
    db.session.commit()
