"""The images service's settings, on top of those every service has (servicekit.config)."""

from __future__ import annotations

import dataclasses

from servicekit.config import TokenSettings, setting

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ImagesSettings(TokenSettings):
    auth_jwks_url: str = setting(
        "AUTH_JWKS_URL",
        doc="the auth service's public keys, which images checks tokens with,"
        " e.g. http://auth:3001/.well-known/jwks.json",
    )
    jwks_cache_seconds: float = setting(
        "JWKS_CACHE_SECONDS",
        300.0,
        doc="how long fetched keys are used before they are fetched again",
        minimum=1,
        maximum=86400,
    )
    jwks_fetch_timeout_seconds: float = setting(
        "JWKS_FETCH_TIMEOUT_SECONDS",
        2.0,
        doc="deadline of one JWKS fetch, connection and whole answer included",
        minimum=0.05,
        maximum=30,
    )
    jwks_min_refresh_seconds: float = setting(
        "JWKS_MIN_REFRESH_SECONDS",
        10.0,
        doc="least time between two fetches: a token naming an unknown key, or a failed fetch, waits"
        " this long before the JWKS is fetched again",
        minimum=0,
        maximum=3600,
    )
    s3_endpoint_url: str = setting(
        "S3_ENDPOINT_URL", "", doc="URL of the S3-compatible endpoint (MinIO); empty for AWS S3 itself"
    )
    s3_region: str = setting("S3_REGION", "us-east-1", doc="region the requests are signed for")
    s3_bucket: str = setting("S3_BUCKET", "images", doc="bucket holding the image bytes")
    s3_access_key_id: str = setting(
        "S3_ACCESS_KEY_ID", "", doc="access key; empty to use the default AWS credential chain", secret=True
    )
    s3_secret_access_key: str = setting(
        "S3_SECRET_ACCESS_KEY",
        "",
        doc="secret key; empty to use the default AWS credential chain",
        secret=True,
    )
    s3_path_style: bool = setting(
        "S3_PATH_STYLE", True, doc="path-style addressing (http://host/bucket/key), as MinIO needs"
    )
    s3_create_bucket: bool = setting(
        "S3_CREATE_BUCKET", False, doc="create the bucket when it is missing (dev and test setups)"
    )
    s3_connect_timeout_seconds: float = setting(
        "S3_CONNECT_TIMEOUT_SECONDS",
        2.0,
        doc="seconds to wait for a connection to the object store",
        minimum=0.1,
    )
    s3_read_timeout_seconds: float = setting(
        "S3_READ_TIMEOUT_SECONDS",
        3.0,
        doc="seconds to wait for the object store to answer or accept data",
        minimum=0.1,
    )
    s3_max_attempts: int = setting(
        "S3_MAX_ATTEMPTS", 2, doc="attempts per object store call, the first included", minimum=1, maximum=5
    )
    max_upload_bytes: int = setting(
        "MAX_UPLOAD_BYTES", 20 * MIB, doc="largest image accepted, in bytes (413 above)", minimum=1024
    )
    max_image_pixels: int = setting(
        "MAX_IMAGE_PIXELS",
        40_000_000,
        doc="most pixels (width x height) an image may have; bounds the memory one decode takes",
        minimum=1,
    )
    decode_memory_budget_bytes: int = setting(
        "DECODE_MEMORY_BUDGET_BYTES",
        96 * MIB,
        doc="most memory the image decodes of one worker process may hold at once (checking an"
        " upload decodes it: up to 16 bytes per pixel for WebP); an image needing more is refused"
        " (422), and uploads wait while the budget is in use. The default keeps two workers well"
        " within a 512Mi container",
        minimum=8 * MIB,
    )
    decode_wait_seconds: float = setting(
        "DECODE_WAIT_SECONDS",
        5.0,
        doc="seconds an upload waits for decode memory before it is answered 503 with Retry-After",
        minimum=0,
    )
