"""The images service bound to the session's PostgreSQL and MinIO, tokens for two users, and
small real images made with Pillow."""

from __future__ import annotations

import datetime
import io
import os

import boto3
import pytest
from botocore.config import Config
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

import images
from devstack.minio import MinioServer
from devstack.wait import wait_until
from images.config import ImagesSettings
from images.reconcile import reconcile
from servicekit import config
from tests.conftest import service_environ, truncate_all_tables

BUCKET = "images"
ALICE = (1, "alice")
BOB = (2, "bob")


def minio_environ(server: MinioServer) -> dict[str, str]:
    return {
        "S3_ENDPOINT_URL": server.endpoint,
        "S3_ACCESS_KEY_ID": server.access_key,
        "S3_SECRET_ACCESS_KEY": server.secret_key,
        "S3_BUCKET": BUCKET,
        "S3_REGION": "us-east-1",
        "S3_PATH_STYLE": "true",
        "S3_CREATE_BUCKET": "true",
    }


def s3_client(server: MinioServer):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def bucket_keys(client) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


def empty_bucket(client) -> None:
    for key in bucket_keys(client):
        client.delete_object(Bucket=BUCKET, Key=key)


# -- the service ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def images_environ(database_urls, minio, token_keys) -> dict[str, str]:
    return service_environ("images", database_urls["images"], token_keys, **minio_environ(minio))


@pytest.fixture(scope="session")
def images_settings(images_environ) -> ImagesSettings:
    return config.load(ImagesSettings, images_environ)


@pytest.fixture(scope="session")
def images_app(images_settings):
    return images.create_app(images_settings)


@pytest.fixture(scope="session")
def s3(minio):
    """A client of the session MinIO for looking behind the service's back."""
    return s3_client(minio)


@pytest.fixture
def clean_image_rows(clean_databases):
    """An empty images table before the test (other suites share the database) and after it."""
    truncate_all_tables(clean_databases["images"])
    return clean_databases


@pytest.fixture
def clean_bucket(s3, clean_image_rows):
    """An empty bucket (and table) before the test and after it."""
    empty_bucket(s3)
    yield s3
    empty_bucket(s3)


@pytest.fixture
def images_client(images_app, clean_databases, clean_bucket):
    return images_app.test_client()


@pytest.fixture(scope="session")
def image_db(database_urls):
    """The images database, for reading rows directly."""
    engine = create_engine(database_urls["images"])
    yield engine
    engine.dispose()


@pytest.fixture
def run_reconcile(image_db, images_app):
    """images.reconcile against the test database and a service's object store."""

    def run(grace: datetime.timedelta, fix: bool, app=None):
        with Session(image_db) as session:
            store = (app or images_app).extensions["images.store"]
            return reconcile(session, store, grace=grace, fix=fix)

    return run


@pytest.fixture
def image_rows(image_db):
    def rows() -> list[dict]:
        with image_db.connect() as connection:
            result = connection.execute(text("SELECT * FROM images ORDER BY id"))
            return [dict(row._mapping) for row in result]

    return rows


# -- identities ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def make_token(token_keys):
    """An access token signed with auth's key, exactly as the auth service issues them."""

    def make(user_id: int | str = ALICE[0], username: str | None = ALICE[1], **claims) -> str:
        return token_keys.pair.token(user_id, username, **claims)

    return make


@pytest.fixture(scope="session")
def alice(make_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(*ALICE)}"}


@pytest.fixture(scope="session")
def bob(make_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(*BOB)}"}


# -- images --------------------------------------------------------------------------------
def image_bytes(fmt: str, size: tuple[int, int] = (8, 6), noise: bool = False, **save_options) -> bytes:
    """A real image in ``fmt`` (JPEG, PNG, GIF, WEBP); noise makes it incompressible."""
    width, height = size
    if noise:
        picture = Image.frombytes("RGB", size, os.urandom(width * height * 3))
    else:
        picture = Image.new("RGB", size, (200, 40, 90))
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **save_options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_images() -> dict[str, bytes]:
    return {fmt: image_bytes(fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP")}


@pytest.fixture
def upload(images_client):
    """POST /upload with `data` as the multipart field `file`."""

    def post(
        headers: dict, data: bytes, filename: str = "photo.png", content_type: str = "image/png", client=None
    ):
        body = {"file": (io.BytesIO(data), filename, content_type)}
        return (client or images_client).post(
            "/upload", headers=headers, data=body, content_type="multipart/form-data"
        )

    return post


@pytest.fixture
def uploaded(upload, tiny_images):
    """Upload one PNG for a user and return the 201 body."""

    def one(headers: dict, data: bytes | None = None) -> dict:
        response = upload(headers, data or tiny_images["PNG"])
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return one


@pytest.fixture
def stored(image_rows, s3):
    """What the service has stored: (rows of the images table, keys in the bucket)."""

    def state() -> tuple[list[dict], list[str]]:
        return image_rows(), bucket_keys(s3)

    return state


# -- a MinIO of its own, for the tests that stop or freeze it ------------------------------
@pytest.fixture(scope="module")
def own_minio():
    server = MinioServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def fragile_images_app(database_urls, own_minio, token_keys):
    """The service on its own MinIO, with the short timeouts a fault test can wait out."""
    environ = service_environ(
        "images",
        database_urls["images"],
        token_keys,
        **minio_environ(own_minio),
        S3_CONNECT_TIMEOUT_SECONDS="1",
        S3_READ_TIMEOUT_SECONDS="1",
        S3_MAX_ATTEMPTS="2",
    )
    return images.create_app(config.load(ImagesSettings, environ))


@pytest.fixture
def own_s3(own_minio):
    client = s3_client(own_minio)
    yield client
    if own_minio.process is not None:
        empty_bucket(client)


# -- holding an upload between its object and its final commit -----------------------------
class CommitGate:
    """A trigger makes every 'pending -> committed' update wait on an advisory lock we hold,
    so a test can act while an upload's object is written and its row not yet committed."""

    LOCK = 720_431

    def __init__(self, postgres) -> None:
        self.admin = postgres.connect(database="image_db")
        self.admin.autocommit = True
        self.holder = postgres.connect(database="image_db")
        self.holder.autocommit = True
        with self.admin.cursor() as cursor:
            cursor.execute(f"""
                CREATE FUNCTION test_commit_gate() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_xact_lock_shared({self.LOCK}); RETURN NEW; END $$;
                CREATE TRIGGER test_commit_gate BEFORE UPDATE ON images FOR EACH ROW
                WHEN (NEW.status = 'committed') EXECUTE FUNCTION test_commit_gate();
            """)
        with self.holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (self.LOCK,))

    def waiting_upload(self) -> int:
        """The backend pid of an upload stopped at the gate (waits for one to arrive)."""

        def find() -> int | None:
            with self.admin.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = 'image_db'"
                    " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                )
                row = cursor.fetchone()
                return row[0] if row else None

        return wait_until(find, timeout=30, message="an upload to reach its final commit")

    def backend_gone(self, pid: int) -> bool:
        with self.admin.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            return cursor.fetchone()[0] == 0

    def cut_connection(self, pid: int) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))

    def open(self) -> None:
        with self.holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")

    def remove(self) -> None:
        self.open()
        with self.admin.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER IF EXISTS test_commit_gate ON images;"
                " DROP FUNCTION IF EXISTS test_commit_gate()"
            )
        self.holder.close()
        self.admin.close()


@pytest.fixture
def commit_gate(postgres, database_urls):
    gate = CommitGate(postgres)
    yield gate
    gate.remove()
