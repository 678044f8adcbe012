"""A backup taken while users upload restores to a consistent state: after the restore's
reconcile, every image listed has its object, and no object is left without its row."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading

from devstack.wait import wait_until
from tests.integration.backups.conftest import IMAGES_BUCKET, delete_everything, drop_databases
from tests.integration.images.conftest import image_bytes


def test_a_backup_taken_during_uploads_restores_rows_and_objects_that_agree(
    api, gateway_account, commands, postgres
):
    _, headers = gateway_account("alice")
    stop = threading.Event()
    uploaded: list[dict] = []

    def keep_uploading() -> None:
        number = 0
        while not stop.is_set():
            content = image_bytes("PNG", size=(12 + number % 50, 12), noise=True)
            uploaded.append(api.upload(headers, content, f"{number}.png", "image/png"))
            number += 1

    uploader = threading.Thread(target=keep_uploading)
    uploader.start()
    try:
        wait_until(lambda: len(uploaded) >= 5, message="uploads to be under way")
        backed_up = commands.backup("platform-backup run")
        mirrored = commands.backup("platform-backup mirror")
    finally:
        stop.set()
        uploader.join()
    assert backed_up.returncode == mirrored.returncode == 0, backed_up.stderr + mirrored.stderr

    drop_databases(postgres, ["image_db"], ["image_user"])
    delete_everything(commands.s3, IMAGES_BUCKET, remove_bucket=True)
    restored = commands.restore("platform-restore databases --database image_db")
    assert restored.returncode == 0, restored.stderr
    fixed = commands.restore("platform-restore bucket --from replica --fix")
    assert fixed.returncode == 0, fixed.stderr
    # Whatever the snapshot caught halfway, or missed, is found and removed, all of it.
    assert re.search(r"fixed (\d+) of \1$", fixed.stdout.strip())

    listed = api.all_images(headers)
    assert 0 < len(listed) <= len(uploaded)
    for image in listed:
        download = api.get(f"/images/{image['filename']}", headers)
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == image["sha256"]
    again = subprocess.run(
        [sys.executable, "-m", "images.reconcile", "--grace-seconds", "0"],
        env=reconcile_environ(commands.restore_environ),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stdout + again.stderr


def reconcile_environ(restore_environ: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": restore_environ["IMAGES_DATABASE_URL"],
        "AUTH_JWKS_URL": "http://unused.invalid/jwks.json",
        "S3_ENDPOINT_URL": restore_environ["IMAGES_S3_ENDPOINT"],
        "S3_BUCKET": IMAGES_BUCKET,
        "S3_ACCESS_KEY_ID": restore_environ["IMAGES_S3_ACCESS_KEY_ID"],
        "S3_SECRET_ACCESS_KEY": restore_environ["IMAGES_S3_SECRET_ACCESS_KEY"],
    }
