"""The reconcile finds and removes leftovers both ways: rows without objects, objects without rows."""

from __future__ import annotations

import datetime
import io
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from tests.integration.images.conftest import BUCKET, bucket_keys

HOUR = datetime.timedelta(hours=1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture
def leftovers(images_client, image_db, s3, alice, uploaded):
    """One healthy image plus one leftover of each kind, the rows an hour old."""

    def insert_row(key: str, status: str) -> None:
        with image_db.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO images (user_id, username, filename, object_key, original_filename,"
                    " content_type, size, width, height, sha256, status, created_at)"
                    " VALUES (1, 'alice', :filename, :key, 'a.png', 'image/png', 3, 1, 1, :sha, :status,"
                    " now() - interval '1 hour')"
                ),
                {"filename": key.rsplit("/", 1)[1], "key": key, "sha": "0" * 64, "status": status},
            )

    def put_object(key: str) -> None:
        s3.put_object(Bucket=BUCKET, Key=key, Body=io.BytesIO(b"abc"))

    healthy = uploaded(alice)
    vanished = uploaded(alice)
    s3.delete_object(Bucket=BUCKET, Key=f"users/1/{vanished['filename']}")
    with image_db.begin() as connection:
        connection.execute(text("UPDATE images SET created_at = now() - interval '1 hour'"))
    insert_row("users/1/" + "a" * 32 + ".png", "pending")
    put_object("users/1/" + "a" * 32 + ".png")
    insert_row("users/1/" + "b" * 32 + ".png", "pending")
    put_object("users/1/" + "c" * 32 + ".png")
    return {
        "healthy": f"users/1/{healthy['filename']}",
        "missing_object": f"users/1/{vanished['filename']}",
        "stale_pending_with_object": "users/1/" + "a" * 32 + ".png",
        "stale_pending_without_object": "users/1/" + "b" * 32 + ".png",
        "orphan_object": "users/1/" + "c" * 32 + ".png",
    }


def kinds(report) -> dict[str, str]:
    return {finding.object_key: finding.kind for finding in report.findings}


def test_without_fix_it_only_lists_what_it_finds(run_reconcile, leftovers, stored):
    before = stored()

    report = run_reconcile(grace=datetime.timedelta(0), fix=False)

    assert kinds(report) == {
        leftovers["missing_object"]: "missing_object",
        leftovers["stale_pending_with_object"]: "stale_pending",
        leftovers["stale_pending_without_object"]: "stale_pending",
        leftovers["orphan_object"]: "orphan_object",
    }
    assert report.fixed == [] and not report.clean
    assert stored() == before


def test_with_fix_only_the_healthy_image_remains(run_reconcile, leftovers, stored, images_client, alice):
    report = run_reconcile(grace=datetime.timedelta(0), fix=True)

    assert report.clean and len(report.fixed) == 4
    rows, keys = stored()
    assert [row["object_key"] for row in rows] == [leftovers["healthy"]]
    assert keys == [leftovers["healthy"]]
    listed = images_client.get("/images", headers=alice).get_json()["items"]
    assert [f"users/1/{item['filename']}" for item in listed] == [leftovers["healthy"]]
    assert run_reconcile(grace=datetime.timedelta(0), fix=False).findings == []


def test_anything_younger_than_the_grace_period_is_left_alone(run_reconcile, leftovers, image_db):
    # The rows are an hour old and the objects were written just now.
    report = run_reconcile(grace=datetime.timedelta(minutes=10), fix=True)

    assert leftovers["orphan_object"] not in kinds(report)
    assert leftovers["stale_pending_with_object"] in kinds(report)
    assert run_reconcile(grace=2 * HOUR, fix=True).findings == []


def test_the_command_exits_1_while_orphans_remain_and_0_once_fixed(leftovers, images_environ, s3):
    environ = {**os.environ, **images_environ, "PYTHONPATH": os.path.join(ROOT, "src")}

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "images.reconcile", *args],
            env=environ,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listing = command("--grace-seconds", "0")
    fixing = command("--grace-seconds", "0", "--fix")
    after = command("--grace-seconds", "0")

    assert listing.returncode == 1, listing.stderr
    assert leftovers["orphan_object"] in listing.stdout and '"orphan found"' in listing.stdout
    assert fixing.returncode == 0, fixing.stderr
    assert after.returncode == 0
    assert bucket_keys(s3) == [leftovers["healthy"]]


def test_unfinished_multipart_uploads_are_aborted(run_reconcile, images_client, s3):
    s3.create_multipart_upload(Bucket=BUCKET, Key="users/1/" + "d" * 32 + ".png")

    run_reconcile(grace=datetime.timedelta(0), fix=True)

    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
