"""`python -m images.reconcile [--fix] [--grace-seconds N]`: find, and with --fix remove,
what failed uploads and deletes left behind, so the rows and the objects agree again.

The bucket listing and the table, both in key order, are walked side by side:

- ``stale_pending``: a row still 'pending' after the grace period. The upload died between
  its first commit and its last (the client never got a 201). Fix: remove the row, then the
  object if one was written (the same order as the service's own undo).
- ``missing_object``: a committed row whose object is gone (a delete whose final commit
  failed). Users would see an image they cannot download. Fix: remove the row.
- ``orphan_object``: an object that no row names, older than the grace period (a crash or an
  unreachable database after the object was written). Nobody can see it; it only costs
  space. Fix: remove the object.

Anything younger than the grace period may belong to an upload still in progress and is left
alone. Unfinished multipart uploads older than the grace period are aborted as well.

Exit status: 0 when nothing is left to fix, 1 when orphans were found and not (all) removed,
2 when the database or the object store could not be read.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import create_engine, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from images.config import ImagesSettings
from images.models import COMMITTED, PENDING, Image
from images.storage import ObjectStore, ObjectStoreUnavailable, StoredObject
from servicekit import config, logs
from servicekit.database import engine_options

log = logging.getLogger("images.reconcile")

DEFAULT_GRACE_SECONDS = 900
USERS_PREFIX = "users/"


@dataclass(frozen=True)
class Finding:
    kind: str
    object_key: str
    row_id: int | None
    since: datetime.datetime
    has_object: bool


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    fixed: list[Finding] = field(default_factory=list)
    aborted_multipart_uploads: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return len(self.fixed) == len(self.findings)


def reconcile(session: Session, store: ObjectStore, *, grace: datetime.timedelta, fix: bool) -> Report:
    cutoff = datetime.datetime.now(datetime.UTC) - grace
    report = Report(findings=list(find_orphans(session, store, cutoff)))
    session.rollback()  # ends the read transaction (and its server-side cursor)
    for finding in report.findings:
        log.info(
            "orphan found",
            extra={
                "kind": finding.kind,
                "object_key": finding.object_key,
                "row_id": finding.row_id,
                "since": finding.since.isoformat(),
            },
        )
        if fix and _fix(session, store, finding):
            report.fixed.append(finding)
    if fix:
        report.aborted_multipart_uploads = store.abort_stale_multipart_uploads(cutoff)
    return report


def find_orphans(session: Session, store: ObjectStore, cutoff: datetime.datetime) -> Iterator[Finding]:
    for stored, row in _side_by_side(store.list_objects(USERS_PREFIX), _rows_by_key(session)):
        if row is None:
            if stored.last_modified < cutoff:
                yield Finding("orphan_object", stored.key, None, stored.last_modified, has_object=True)
        elif row.created_at >= cutoff:
            continue
        elif row.status == PENDING:
            yield Finding(
                "stale_pending", row.object_key, row.id, row.created_at, has_object=stored is not None
            )
        elif stored is None:
            yield Finding("missing_object", row.object_key, row.id, row.created_at, has_object=False)


def _rows_by_key(session: Session):
    # Byte order ("C" collation) is the order S3 lists keys in, whatever the database's locale.
    return session.execute(
        select(Image.id, Image.object_key, Image.status, Image.created_at)
        .order_by(Image.object_key.collate("C"))
        .execution_options(yield_per=1000)
    )


def _side_by_side(objects: Iterator[StoredObject], rows) -> Iterator[tuple]:
    """Merge two key-ordered streams into (object or None, row or None) pairs."""
    stored, row = next(objects, None), next(rows, None)
    while stored is not None or row is not None:
        if row is None or (stored is not None and stored.key < row.object_key):
            yield stored, None
            stored = next(objects, None)
        elif stored is None or row.object_key < stored.key:
            yield None, row
            row = next(rows, None)
        else:
            yield stored, row
            stored, row = next(objects, None), next(rows, None)


def _fix(session: Session, store: ObjectStore, finding: Finding) -> bool:
    try:
        if finding.kind == "orphan_object":
            store.delete(finding.object_key)
        else:
            status = PENDING if finding.kind == "stale_pending" else COMMITTED
            removed = session.execute(
                delete(Image).where(Image.id == finding.row_id, Image.status == status).returning(Image.id)
            ).first()
            session.commit()
            if removed is not None and finding.has_object:
                store.delete(finding.object_key)
    except (SQLAlchemyError, ObjectStoreUnavailable) as exc:
        session.rollback()
        log.warning(
            "orphan not removed",
            extra={"kind": finding.kind, "object_key": finding.object_key, "error": type(exc).__name__},
        )
        return False
    log.info("orphan removed", extra={"kind": finding.kind, "object_key": finding.object_key})
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fix", action="store_true", help="remove what is found (default: only list it)")
    parser.add_argument(
        "--grace-seconds",
        type=int,
        default=DEFAULT_GRACE_SECONDS,
        help=f"leave anything younger alone (default {DEFAULT_GRACE_SECONDS})",
    )
    args = parser.parse_args(argv)
    settings = config.load(ImagesSettings)
    logs.configure("images-reconcile", settings.log_level)
    engine = create_engine(settings.database_url, **engine_options(settings, "images-reconcile"))
    try:
        with Session(engine) as session:
            report = reconcile(
                session,
                ObjectStore(settings),
                grace=datetime.timedelta(seconds=args.grace_seconds),
                fix=args.fix,
            )
    except (SQLAlchemyError, ObjectStoreUnavailable) as exc:
        log.error("reconcile failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
        return 2
    finally:
        engine.dispose()
    log.info(
        "reconcile done",
        extra={
            "found": len(report.findings),
            "fixed": len(report.fixed),
            "aborted_multipart_uploads": len(report.aborted_multipart_uploads),
            "fix": args.fix,
        },
    )
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
