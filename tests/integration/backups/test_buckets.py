"""The backups bucket (who may do what, the daily/weekly layout, retention), the mirror of the
images bucket, and objects brought back from the bucket's versions."""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets

import pytest
from botocore.exceptions import ClientError

from backups.backup import run_backup
from backups.config import BackupSettings
from devstack.minio import BACKUPS_BUCKET
from devstack.wait import wait_until
from servicekit import config
from tests.integration.backups.conftest import IMAGES_BUCKET, REPLICA_BUCKET
from tests.integration.images.conftest import image_bytes

SUNDAY = datetime.datetime(2026, 11, 29, 3, 0, tzinfo=datetime.UTC)
MONDAY = datetime.datetime(2026, 11, 30, 3, 0, tzinfo=datetime.UTC)


@pytest.fixture
def backup_user_s3(minio, backup_user):
    return minio.client(*backup_user)


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


def test_the_backup_user_can_write_read_and_list_backups_but_not_delete_them(buckets, backup_user_s3):
    backup_user_s3.put_object(Bucket=BACKUPS_BUCKET, Key="daily/x/probe", Body=b"probe")
    assert backup_user_s3.get_object(Bucket=BACKUPS_BUCKET, Key="daily/x/probe")["Body"].read() == b"probe"
    assert keys(backup_user_s3, BACKUPS_BUCKET) == ["daily/x/probe"]

    with pytest.raises(ClientError) as denied:
        backup_user_s3.delete_object(Bucket=BACKUPS_BUCKET, Key="daily/x/probe")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        backup_user_s3.get_object(Bucket=IMAGES_BUCKET, Key="anything")
    assert keys(buckets, BACKUPS_BUCKET) == ["daily/x/probe"]


def test_retention_is_the_buckets_lifecycle_daily_after_7_days_weekly_after_28(buckets):
    rules = buckets.get_bucket_lifecycle_configuration(Bucket=BACKUPS_BUCKET)["Rules"]
    expiry = {rule["Filter"]["Prefix"]: rule["Expiration"]["Days"] for rule in rules}
    assert expiry == {"daily/": 7, "weekly/": 28}
    assert all(rule["Status"] == "Enabled" for rule in rules)


@pytest.mark.parametrize(("now", "schedules"), [(SUNDAY, ["daily", "weekly"]), (MONDAY, ["daily"])])
def test_every_backup_is_kept_under_daily_and_the_weekly_days_also_under_weekly(
    now, schedules, buckets, commands, monkeypatch
):
    for name, value in commands.backup_environ.items():
        monkeypatch.setenv(name, value)
    manifest = run_backup(config.load(BackupSettings), now)

    ident = manifest["backup_id"]
    assert ident == now.strftime("%Y%m%dT%H%M%SZ")
    files = ["api_db.tar.gz", "auth_db.tar.gz", "image_db.tar.gz", "manifest.json"]
    assert keys(buckets, BACKUPS_BUCKET) == sorted(f"{s}/{ident}/{name}" for s in schedules for name in files)
    assert [entry["database"] for entry in manifest["databases"]] == ["auth_db", "api_db", "image_db"]
    for entry in manifest["databases"]:
        stored = buckets.get_object(Bucket=BACKUPS_BUCKET, Key=f"daily/{ident}/{entry['file']}")[
            "Body"
        ].read()
        assert (len(stored), hashlib.sha256(stored).hexdigest()) == (entry["size"], entry["sha256"])
        assert entry["revision"] and entry["server_version"]


def now_ms() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def upload_some(api, gateway_account, count: int) -> tuple[dict, list[dict]]:
    _, headers = gateway_account("alice")
    made = [
        api.upload(headers, image_bytes("PNG", size=(10 + n, 10), noise=True), f"{n}.png", "image/png")
        for n in range(count)
    ]
    return headers, made


def copied(output: str) -> int:
    return int(re.search(r"(\d+) copied", output).group(1))


def test_the_mirror_copies_every_object_once_and_a_second_run_copies_nothing(
    api, gateway_account, buckets, commands
):
    upload_some(api, gateway_account, 5)

    first = commands.backup("platform-backup mirror")
    second = commands.backup("platform-backup mirror")

    assert first.returncode == second.returncode == 0
    assert (copied(first.stdout), copied(second.stdout)) == (5, 0)
    assert keys(buckets, REPLICA_BUCKET) == keys(buckets, IMAGES_BUCKET)
    for key in keys(buckets, IMAGES_BUCKET):
        original = buckets.get_object(Bucket=IMAGES_BUCKET, Key=key)
        replica = buckets.get_object(Bucket=REPLICA_BUCKET, Key=key)
        assert replica["Body"].read() == original["Body"].read()
        assert replica["ContentType"] == original["ContentType"]


def test_an_image_deleted_from_the_bucket_comes_back_from_its_versions(api, gateway_account, commands, minio):
    buckets = commands.s3
    minio.enable_versioning(IMAGES_BUCKET, noncurrent_days=30)
    headers, made = upload_some(api, gateway_account, 2)
    lost = made[0]
    user_id = keys(buckets, IMAGES_BUCKET)[0].split("/")[1]
    # A moment after the upload and, on S3's millisecond clock, before the delete.
    moment = now_ms()
    wait_until(lambda: now_ms() > moment, timeout=1, interval=0.001, message="the next millisecond")
    buckets.delete_object(Bucket=IMAGES_BUCKET, Key=f"users/{user_id}/{lost['filename']}")
    assert api.get(f"/images/{lost['filename']}", headers).status_code != 200

    command = f"platform-restore bucket --from versions --before {moment.isoformat()} --user {user_id}"
    result = commands.restore(command)

    assert result.returncode == 0, result.stderr
    assert "restored 1 objects" in result.stdout
    assert "reconcile: found nothing" in result.stdout
    download = api.get(f"/images/{lost['filename']}", headers)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == lost["sha256"]
    versioning = buckets.get_bucket_versioning(Bucket=IMAGES_BUCKET)
    assert versioning["Status"] == "Enabled"
    rules = buckets.get_bucket_lifecycle_configuration(Bucket=IMAGES_BUCKET)["Rules"]
    assert [rule["NoncurrentVersionExpiration"]["NoncurrentDays"] for rule in rules] == [30]


def test_a_backup_secret_that_starts_with_a_dash_is_not_taken_for_a_flag(
    minio, backup_user, root_s3, monkeypatch
):
    # secrets.token_urlsafe starts with "-" once in 64 runs; mc once read such a secret as a flag.
    dashed = "-leading-dash-secret-0123456789"
    monkeypatch.setattr(secrets, "token_urlsafe", lambda _bytes: dashed)
    try:
        user, secret = minio.provision_backups(BACKUPS_BUCKET)

        assert secret == dashed
        assert keys(minio.client(user, secret), BACKUPS_BUCKET) == keys(root_s3, BACKUPS_BUCKET)
    finally:
        # The session's backup user gets its own secret back (provisioning again replaces it).
        monkeypatch.setattr(secrets, "token_urlsafe", lambda _bytes: backup_user[1])
        minio.provision_backups(BACKUPS_BUCKET)
