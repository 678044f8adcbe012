"""The S3 side: clients, the backups bucket's layout, and copying objects between buckets.

Layout of the backups bucket: ``daily/<backup id>/<database>.tar.gz`` and
``daily/<backup id>/manifest.json`` every run, the same under ``weekly/<backup id>/`` on the
weekly day. The manifest is written last, so a backup without one is incomplete and is never
restored. Retention is the bucket's lifecycle rules, not this code: the backup user may not
delete anything.
"""

from __future__ import annotations

import datetime
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

MANIFEST = "manifest.json"
SCHEDULES = ("daily", "weekly")
# Objects up to this size are copied through memory, larger ones through a temporary file.
SPOOL_BYTES = 16 * 1024 * 1024


def client(endpoint_url: str, access_key_id: str, secret_access_key: str, region: str):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        region_name=region,
        # As the images service does (images.storage): MinIO and other S3 stores do not all take
        # the CRC headers current boto3 sends by default.
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "total_max_attempts": 5},
        ),
    )


def location_client(location):
    """A client for ImagesBucketSettings or ReplicaBucketSettings."""
    return client(location.endpoint_url, location.access_key_id, location.secret_access_key, location.region)


def backup_id(now: datetime.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


# -- the backups bucket --------------------------------------------------------------------
@dataclass(frozen=True)
class Backup:
    schedule: str
    id: str
    manifest: dict

    @property
    def prefix(self) -> str:
        return f"{self.schedule}/{self.id}/"


def list_backups(s3, bucket: str) -> list[Backup]:
    """Every complete backup (one with a manifest), oldest first; a weekly one appears once."""
    found: dict[str, Backup] = {}
    for schedule in SCHEDULES:
        listing = s3.get_paginator("list_objects_v2")
        pages = listing.paginate(Bucket=bucket, Prefix=f"{schedule}/", Delimiter="/")
        for page in pages:
            for prefix in page.get("CommonPrefixes", []):
                ident = prefix["Prefix"].split("/")[1]
                if ident in found:
                    continue
                try:
                    body = s3.get_object(Bucket=bucket, Key=f"{schedule}/{ident}/{MANIFEST}")["Body"]
                except ClientError as exc:
                    if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                        continue  # a run that did not finish
                    raise
                found[ident] = Backup(schedule, ident, json.loads(body.read()))
    return [found[ident] for ident in sorted(found)]


def find_backup(s3, bucket: str, wanted: str) -> Backup:
    backups = list_backups(s3, bucket)
    if not backups:
        raise LookupError(f"no complete backup in bucket {bucket}")
    if wanted == "latest":
        return backups[-1]
    for backup in backups:
        if backup.id == wanted:
            return backup
    raise LookupError(f"no complete backup {wanted} in bucket {bucket} (see `platform-restore list`)")


# -- objects between buckets ---------------------------------------------------------------
@dataclass(frozen=True)
class ObjectEntry:
    key: str
    etag: str
    size: int


def list_objects(s3, bucket: str, prefix: str = "") -> Iterator[ObjectEntry]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            yield ObjectEntry(entry["Key"], entry["ETag"], entry["Size"])


def ensure_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3.create_bucket(Bucket=bucket)


def copy_object(source, source_bucket: str, key: str, target, target_bucket: str, *, version_id: str = ""):
    """Copy one object (its bytes and content type) between two clients, possibly two servers.

    One PUT, never multipart, so the copy's ETag is the source's (an MD5 for a single PUT) and
    the next comparison finds them equal.
    """
    options = {"VersionId": version_id} if version_id else {}
    answer = source.get_object(Bucket=source_bucket, Key=key, **options)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        for chunk in answer["Body"].iter_chunks(1024 * 1024):
            spool.write(chunk)
        spool.seek(0)
        target.put_object(
            Bucket=target_bucket,
            Key=key,
            Body=spool,
            ContentLength=answer["ContentLength"],
            ContentType=answer.get("ContentType", "application/octet-stream"),
            Metadata=answer.get("Metadata", {}),
        )


@dataclass
class MirrorReport:
    examined: int = 0
    copied: int = 0
    copied_bytes: int = 0


def mirror(source, source_bucket: str, target, target_bucket: str, prefix: str = "") -> MirrorReport:
    """Copy every object of the source that the target lacks or holds different; never delete
    on the target (an object deleted by mistake at the source stays recoverable there)."""
    report = MirrorReport()
    present = {entry.key: entry for entry in list_objects(target, target_bucket, prefix)}
    for entry in list_objects(source, source_bucket, prefix):
        report.examined += 1
        there = present.get(entry.key)
        if there is not None and (there.etag, there.size) == (entry.etag, entry.size):
            continue
        copy_object(source, source_bucket, entry.key, target, target_bucket)
        report.copied += 1
        report.copied_bytes += entry.size
    return report


def restore_versions(s3, bucket: str, before: datetime.datetime, prefix: str = "") -> list[str]:
    """Make each object's newest version written at or before ``before`` current again, where
    it is not already (deleted since, or overwritten since). Returns the keys brought back."""
    newest_before: dict[str, dict] = {}
    current: dict[str, dict] = {}
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        entries = [(v, False) for v in page.get("Versions", [])] + [
            (m, True) for m in page.get("DeleteMarkers", [])
        ]
        for entry, is_marker in entries:
            record = {**entry, "IsDeleteMarker": is_marker}
            if entry["IsLatest"]:
                current[entry["Key"]] = record
            if entry["LastModified"] <= before:
                best = newest_before.get(entry["Key"])
                if best is None or entry["LastModified"] > best["LastModified"]:
                    newest_before[entry["Key"]] = record
    restored = []
    for key, wanted in sorted(newest_before.items()):
        if wanted["IsDeleteMarker"] or current.get(key, {}).get("VersionId") == wanted["VersionId"]:
            continue
        copy_object(s3, bucket, key, s3, bucket, version_id=wanted["VersionId"])
        restored.append(key)
    return restored
