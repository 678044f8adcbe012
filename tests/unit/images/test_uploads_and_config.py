"""The counting spool, the settings and the object store client configuration."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import RequestEntityTooLarge

from images.config import ImagesSettings
from images.storage import _client_config
from images.uploads import SPOOL_IN_MEMORY_BYTES, CountingSpooledFile, request_body_limit
from servicekit import config
from servicekit.config import ConfigError

BASE = {
    "DATABASE_URL": "postgresql+psycopg2://u:p@127.0.0.1/image_db",
    "AUTH_JWKS_URL": "http://127.0.0.1:1/.well-known/jwks.json",
}


def test_the_spool_stays_in_memory_while_small_and_moves_to_disk_after():
    spool = CountingSpooledFile(limit=10 * SPOOL_IN_MEMORY_BYTES)
    spool.write(b"a" * 1000)
    assert not spool._rolled

    spool.write(b"b" * SPOOL_IN_MEMORY_BYTES)

    assert spool._rolled
    spool.seek(0)
    assert spool.read(1001) == b"a" * 1000 + b"b"


def test_the_spool_refuses_the_first_write_past_its_limit():
    spool = CountingSpooledFile(limit=100)
    spool.write(b"x" * 100)

    with pytest.raises(RequestEntityTooLarge):
        spool.write(b"x")


def test_the_request_body_limit_leaves_room_only_for_multipart_framing():
    assert 0 < request_body_limit(1000) - 1000 <= 64 * 1024


def test_defaults_follow_the_environment_contract():
    settings = config.load(ImagesSettings, BASE)

    assert settings.s3_bucket == "images"
    assert settings.max_upload_bytes == 20 * 1024 * 1024
    assert settings.s3_path_style is True
    assert settings.s3_create_bucket is False
    assert settings.decode_memory_budget_bytes == 96 * 1024 * 1024
    assert settings.decode_wait_seconds == 5.0


def test_every_s3_setting_is_read_from_its_variable():
    settings = config.load(
        ImagesSettings,
        {
            **BASE,
            "S3_ENDPOINT_URL": "http://minio:9000",
            "S3_REGION": "eu-west-1",
            "S3_BUCKET": "pics",
            "S3_ACCESS_KEY_ID": "key",
            "S3_SECRET_ACCESS_KEY": "secret",
            "S3_PATH_STYLE": "false",
            "S3_CREATE_BUCKET": "yes",
            "MAX_UPLOAD_BYTES": "1048576",
            "MAX_IMAGE_PIXELS": "1000000",
        },
    )

    assert (settings.s3_endpoint_url, settings.s3_region, settings.s3_bucket) == (
        "http://minio:9000",
        "eu-west-1",
        "pics",
    )
    assert (settings.s3_access_key_id, settings.s3_secret_access_key) == ("key", "secret")
    assert (settings.s3_path_style, settings.s3_create_bucket) == (False, True)
    assert (settings.max_upload_bytes, settings.max_image_pixels) == (1048576, 1000000)


def test_nonsense_limits_are_refused_at_start():
    with pytest.raises(ConfigError) as error:
        config.load(ImagesSettings, {**BASE, "MAX_UPLOAD_BYTES": "12", "S3_MAX_ATTEMPTS": "0"})

    assert "MAX_UPLOAD_BYTES" in str(error.value) and "S3_MAX_ATTEMPTS" in str(error.value)


def test_the_client_works_with_minio_and_current_boto3():
    settings = config.load(ImagesSettings, {**BASE, "S3_CONNECT_TIMEOUT_SECONDS": "1.5"})

    client_config = _client_config(settings, attempts=2)

    assert client_config.signature_version == "s3v4"
    assert client_config.s3 == {"addressing_style": "path"}
    assert client_config.request_checksum_calculation == "when_required"
    assert client_config.response_checksum_validation == "when_required"
    assert (client_config.connect_timeout, client_config.read_timeout) == (1.5, 3.0)
    assert client_config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_virtual_host_addressing_when_path_style_is_off():
    settings = config.load(ImagesSettings, {**BASE, "S3_PATH_STYLE": "false"})

    assert _client_config(settings, attempts=1).s3 == {"addressing_style": "auto"}
