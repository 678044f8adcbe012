"""The restore drill: a system full of users, posts and images is backed up, destroyed (the
three databases, their roles, every object and the bucket), and restored with the runbook's
commands; everything is then as it was, seen through the public API."""

from __future__ import annotations

import hashlib

from tests.integration.backups.conftest import (
    IMAGES_BUCKET,
    delete_everything,
    drop_databases,
    runbook_commands,
)
from tests.integration.images.conftest import image_bytes

USERS = ("alice", "bob", "carol")
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
POSTS_PER_USER = 4


def fill(api, gateway_account) -> dict:
    """Users, posts and images of every format, through the gateway; returns what was made."""
    made = {"images": {}, "stats": {}}
    for number, username in enumerate(USERS):
        _, headers = gateway_account(username)
        for index in range(POSTS_PER_USER):
            body = {"title": f"{username} {index}", "content": f"post {index} by {username}: café ✓"}
            assert api.post("/posts", headers, json=body).status_code == 201
        for fmt, content_type in FORMATS.items():
            content = image_bytes(fmt, size=(16 + number, 9 + number), noise=True)
            image = api.upload(headers, content, f"{username}.{fmt.lower()}", content_type)
            made["images"][image["filename"]] = (username, image, hashlib.sha256(content).hexdigest())
        made["stats"][username] = api.get("/images/stats", headers).json()
    made["posts"] = api.all_posts()
    assert len(made["posts"]) == len(USERS) * POSTS_PER_USER
    return made


def test_the_runbook_brings_back_every_user_post_and_image_after_everything_is_destroyed(
    api, gateway_account, commands, postgres
):
    made = fill(api, gateway_account)
    assert commands.backup("platform-backup mirror").returncode == 0
    backed_up = commands.backup("platform-backup run")
    assert backed_up.returncode == 0, backed_up.stderr

    drop_databases(postgres, ["auth_db", "api_db", "image_db"], ["auth_user", "api_user", "image_user"])
    delete_everything(commands.s3, IMAGES_BUCKET, remove_bucket=True)
    assert api.get("/posts").status_code == 503

    runbook = runbook_commands("Everything lost: the databases and the bucket")
    assert runbook == [
        "platform-restore list",
        "platform-restore databases --backup latest",
        "platform-restore bucket --from replica --fix",
    ]
    outputs = []
    for command in runbook:
        result = commands.restore(command)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert "reconcile: found nothing; fixed 0 of 0" in outputs[-1]

    assert api.all_posts() == made["posts"]
    for username in USERS:
        headers = api.login(username)
        assert api.get("/images/stats", headers).json() == made["stats"][username]
        listed = api.all_images(headers)
        assert len(listed) == len(FORMATS)
        for image in listed:
            owner, before, digest = made["images"][image["filename"]]
            assert (owner, image) == (username, before)
            download = api.get(f"/images/{image['filename']}", headers)
            assert download.status_code == 200
            assert hashlib.sha256(download.content).hexdigest() == digest
            assert download.headers["Content-Type"] == before["content_type"]
