"""The object store (S3 API, MinIO in practice) behind a small interface the routes use.

Every call is bounded in time (connect and read timeouts, few attempts), so an object store
that is down or hung turns into ``ObjectStoreUnavailable`` (a 503) within seconds instead of
holding a worker thread. Checksums are computed and validated only when an operation
requires them: current boto3 otherwise sends CRC headers and trailers that MinIO versions
and other S3-compatible stores do not all accept.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from images.config import ImagesSettings

log = logging.getLogger(__name__)

OPERATIONS = ("put", "get", "delete", "head_bucket", "create_bucket", "list")
OBJECT_STORE_ERRORS = Counter(
    "images_object_store_errors_total",
    "Object store calls that failed (unreachable, timed out or refused), by operation.",
    ["operation"],
)
for _operation in OPERATIONS:
    OBJECT_STORE_ERRORS.labels(_operation)

DOWNLOAD_CHUNK_BYTES = 64 * 1024
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_MISSING_BUCKET_CODES = {"404", "NoSuchBucket", "NotFound"}


class ObjectStoreUnavailable(Exception):
    """The object store could not be reached or refused the call."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"object store {operation} failed")
        self.operation = operation


class ObjectMissing(Exception):
    """The object store answered, and the object is not there."""


class ObjectChunks:
    """An object's bytes as the iterable of a response, closing the S3 body in close().

    The WSGI server calls close() on the iterable whether or not it was iterated (a client
    that disconnects first, an error before the first chunk); a generator's ``finally`` would
    not run in that case and the connection would stay checked out of the pool.
    """

    def __init__(self, body) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        return self.body.iter_chunks(DOWNLOAD_CHUNK_BYTES)

    def close(self) -> None:
        self.body.close()


@dataclass(frozen=True)
class Download:
    chunks: ObjectChunks
    content_length: int


@dataclass(frozen=True)
class StoredObject:
    key: str
    last_modified: datetime.datetime


def _client_config(settings: ImagesSettings, attempts: int) -> Config:
    return Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )


class ObjectStore:
    def __init__(self, settings: ImagesSettings) -> None:
        self.bucket = settings.s3_bucket
        self.create_bucket_if_missing = settings.s3_create_bucket
        # A session of our own: boto3's default session is not safe to share between threads.
        session = boto3.session.Session(
            aws_access_key_id=settings.s3_access_key_id or None,
            aws_secret_access_key=settings.s3_secret_access_key or None,
            region_name=settings.s3_region,
        )
        endpoint = settings.s3_endpoint_url or None
        self.client = session.client(
            "s3", endpoint_url=endpoint, config=_client_config(settings, settings.s3_max_attempts)
        )
        # The readiness probe asks once: its caller (the kubelet) retries on its own schedule.
        self.probe_client = session.client("s3", endpoint_url=endpoint, config=_client_config(settings, 1))

    # -- objects ---------------------------------------------------------------------------
    def put(self, key: str, body: IO[bytes], size: int, content_type: str) -> None:
        """Store ``body`` (a seekable file) under ``key``.

        The body is a file on disk (or a small in-memory spool); botocore reads and sends it in
        chunks and rewinds it on a retry, so an upload is never held in memory whole. A single
        PUT takes up to 5 GiB, far above any upload limit, so multipart is not needed.
        """
        body.seek(0)
        with _failures("put"):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentLength=size, ContentType=content_type
            )

    def open(self, key: str) -> Download:
        """Start reading an object; its bytes come as chunks while the response is sent."""
        with _failures("get"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES:
                    raise ObjectMissing(key) from None
                raise
        return Download(chunks=ObjectChunks(response["Body"]), content_length=response["ContentLength"])

    def size(self, key: str) -> int:
        """An object's length in bytes, asked without reading it (for HEAD)."""
        with _failures("get"):
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES:
                    raise ObjectMissing(key) from None
                raise
        return response["ContentLength"]

    def delete(self, key: str) -> None:
        """Remove an object; removing one that is not there succeeds (S3 semantics)."""
        with _failures("delete"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_quietly(self, key: str) -> bool:
        """Best-effort removal while undoing a failed upload; the reconcile catches what is left."""
        try:
            self.delete(key)
        except ObjectStoreUnavailable:
            log.warning("could not remove object; the reconcile will", extra={"object_key": key})
            return False
        return True

    def exists(self, key: str) -> bool:
        with _failures("get"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES:
                    return False
                raise
        return True

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object under ``prefix`` in key order (S3 lists keys in UTF-8 byte order)."""
        paginator = self.client.get_paginator("list_objects_v2")
        with _failures("list"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    yield StoredObject(key=entry["Key"], last_modified=entry["LastModified"])

    def abort_stale_multipart_uploads(self, older_than: datetime.datetime) -> list[str]:
        """Abort unfinished multipart uploads (other writers' leftovers); returns their keys."""
        aborted = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        with _failures("list"):
            for page in paginator.paginate(Bucket=self.bucket):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < older_than:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted.append(upload["Key"])
        return aborted

    # -- the bucket ------------------------------------------------------------------------
    def check(self) -> None:
        """Readiness: the bucket answers (and is created first when so configured)."""
        try:
            self.probe_client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if self.create_bucket_if_missing and _error_code(exc) in _MISSING_BUCKET_CODES:
                self.ensure_bucket()
                return
            raise

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing. Only called when S3_CREATE_BUCKET is set."""
        with _failures("create_bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _error_code(exc) not in _MISSING_BUCKET_CODES:
                    raise
            region = self.client.meta.region_name
            options = (
                {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            try:
                self.client.create_bucket(Bucket=self.bucket, **options)
            except ClientError as exc:
                # Another worker or pod created it at the same moment.
                if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise
            log.info("bucket created", extra={"bucket": self.bucket})


@contextlib.contextmanager
def _failures(operation: str) -> Iterator[None]:
    """Turns botocore's failures into ObjectStoreUnavailable, logged and counted."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        OBJECT_STORE_ERRORS.labels(operation).inc()
        log.warning(
            "object store call failed",
            extra={"operation": operation, "error": f"{type(exc).__name__}: {exc}"[:300]},
        )
        raise ObjectStoreUnavailable(operation) from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
