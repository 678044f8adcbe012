"""`platform-backup run`: dump every database into the backups bucket.
`platform-backup mirror`: copy the images bucket to its replica.

``run`` connects with libpq's variables (PGHOST, PGUSER, ... as the backup role, which may read
everything and change nothing), writes one dump per database and then the manifest, which makes
the backup complete. Exit status: 0 done, 1 failed (the message says where).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from backups import buckets, dump
from backups.config import DATABASE_SERVICES, BackupSettings, ImagesBucketSettings, ReplicaBucketSettings
from servicekit import config


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def run_backup(settings: BackupSettings, now: datetime.datetime | None = None) -> dict:
    """Take one backup; returns its manifest."""
    now = now or datetime.datetime.now(datetime.UTC)
    ident = buckets.backup_id(now)
    s3 = buckets.client(
        settings.s3_endpoint_url, settings.s3_access_key_id, settings.s3_secret_access_key, settings.s3_region
    )
    schedules = ["daily"] + (["weekly"] if now.weekday() == settings.weekly_weekday else [])
    manifest = {"backup_id": ident, "timestamp": now.isoformat(), "schedules": schedules, "databases": []}
    with tempfile.TemporaryDirectory(prefix="platform-backup-") as scratch:
        for database in settings.database_names():
            path = Path(scratch) / f"{database}.tar.gz"
            connection = psycopg2.connect(dbname=database)
            try:
                info = dump.dump(connection, database, DATABASE_SERVICES[database], path)
            finally:
                connection.close()
            entry = {
                "database": database,
                "service": info.service,
                "file": path.name,
                "size": path.stat().st_size,
                "sha256": sha256_of(path),
                "revision": info.revision,
                "server_version": info.server_version,
            }
            manifest["databases"].append(entry)
            for schedule in schedules:
                s3.upload_file(str(path), settings.s3_bucket, f"{schedule}/{ident}/{path.name}")
            print(f"dumped {database}: {entry['size']} bytes, revision {info.revision}", flush=True)
    body = json.dumps(manifest, indent=2).encode()
    for schedule in schedules:
        s3.put_object(
            Bucket=settings.s3_bucket,
            Key=f"{schedule}/{ident}/{buckets.MANIFEST}",
            Body=body,
            ContentType="application/json",
        )
    return manifest


def _push_metrics(url: str, manifest: dict, seconds: float) -> None:
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    values = {
        "backup_last_success_timestamp_seconds": ("End of the last successful backup.", time.time()),
        "backup_duration_seconds": ("Duration of the last successful backup.", seconds),
        "backup_size_bytes": (
            "Size of the last successful backup's dumps.",
            sum(entry["size"] for entry in manifest["databases"]),
        ),
    }
    for name, (description, value) in values.items():
        Gauge(name, description, registry=registry).set(value)
    push_to_gateway(url, job="platform-backup", registry=registry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platform-backup", description="Back up the platform's data.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="dump every database into the backups bucket")
    commands.add_parser("mirror", help="copy the images bucket's objects to the replica bucket")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.command == "mirror":
            source = config.load(ImagesBucketSettings)
            replica = config.load(ReplicaBucketSettings)
            target = buckets.location_client(replica)
            buckets.ensure_bucket(target, replica.bucket)
            report = buckets.mirror(buckets.location_client(source), source.bucket, target, replica.bucket)
            print(
                f"mirror {source.bucket} -> {replica.bucket}: {report.examined} objects examined,"
                f" {report.copied} copied ({report.copied_bytes} bytes)"
                f" in {time.monotonic() - started:.1f} s"
            )
            return 0
        settings = config.load(BackupSettings)
        manifest = run_backup(settings)
    except Exception as exc:  # the job's log must say why, in one line
        print(f"platform-backup {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    size = sum(entry["size"] for entry in manifest["databases"])
    print(
        f"backup {manifest['backup_id']} ({', '.join(manifest['schedules'])}):"
        f" {len(manifest['databases'])} databases, {size} bytes in {seconds:.1f} s"
    )
    if settings.pushgateway_url:
        _push_metrics(settings.pushgateway_url, manifest, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
