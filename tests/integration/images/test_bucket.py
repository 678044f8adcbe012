"""The bucket is created when missing only if S3_CREATE_BUCKET says so."""

from __future__ import annotations

import contextlib
import io
import secrets

import pytest
from botocore.exceptions import ClientError

import images
from images.config import ImagesSettings
from servicekit import config
from tests.integration.images.conftest import image_bytes


@pytest.fixture
def app_with_bucket(images_environ, s3):
    made = []

    def make(create: bool):
        bucket = f"fresh-{secrets.token_hex(4)}"
        environ = {**images_environ, "S3_BUCKET": bucket, "S3_CREATE_BUCKET": "true" if create else "false"}
        made.append(bucket)
        return images.create_app(config.load(ImagesSettings, environ)), bucket

    yield make
    for bucket in made:
        with contextlib.suppress(ClientError):  # never created
            s3.delete_bucket(Bucket=bucket)


def bucket_exists(s3, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        return False
    return True


def test_a_missing_bucket_is_created_when_configured(app_with_bucket, s3):
    app, bucket = app_with_bucket(create=True)

    assert bucket_exists(s3, bucket)
    assert app.test_client().get("/ready").status_code == 200


def test_a_missing_bucket_is_left_missing_otherwise_and_the_service_is_not_ready(
    app_with_bucket, s3, alice, clean_image_rows
):
    app, bucket = app_with_bucket(create=False)
    client = app.test_client()

    ready = client.get("/ready")
    upload = client.post(
        "/upload",
        headers=alice,
        data={"file": (io.BytesIO(image_bytes("PNG")), "a.png")},
        content_type="multipart/form-data",
    )

    assert not bucket_exists(s3, bucket)
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["object_store"]["status"] == "unavailable"
    assert upload.status_code == 503
