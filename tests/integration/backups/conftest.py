"""Backups against the session's PostgreSQL and MinIO: the backup role and user provisioned as
the chart does, the whole system behind the api gateway (as in tests/integration/api), and the
console scripts run as the CronJob and the on-call engineer run them."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import PROJECT_ROOT
from tests.integration.api import conftest as api_suite

# The gateway and its real neighbours (auth, images on the session MinIO), as the api suite has them.
auth_service = api_suite.auth_service
images_service = api_suite.images_service
gateway = api_suite.gateway
gateway_account = api_suite.gateway_account
PASSWORD = api_suite.PASSWORD

IMAGES_BUCKET = "images"
REPLICA_BUCKET = "images-replica"
BACKUPS_BUCKET = "backups"
RUNBOOK = PROJECT_ROOT / "docs" / "runbooks" / "Restore.md"


def runbook_commands(heading: str) -> list[str]:
    """The commands of the shell block under ``heading`` in docs/runbooks/Restore.md, in order."""
    text = RUNBOOK.read_text()
    match = re.search(rf"^#+ {re.escape(heading)}\n.*?```(?:sh|bash)\n(.*?)```", text, re.S | re.M)
    assert match, f"no shell block under {heading!r} in {RUNBOOK}"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture(scope="session")
def console_scripts(tmp_path_factory) -> Path:
    """setup.cfg's console scripts, written as pip writes them into a bin folder: the shared
    environment may have been installed from another checkout."""
    parser = configparser.ConfigParser()
    parser.read(PROJECT_ROOT / "setup.cfg")
    folder = tmp_path_factory.mktemp("bin")
    for line in parser["options.entry_points"]["console_scripts"].splitlines():
        if "=" not in line or line.strip().startswith("#"):
            continue
        name, target = (part.strip() for part in line.split("="))
        module, function = target.split(":")
        script = folder / name
        script.write_text(
            f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
        )
        script.chmod(0o755)
    return folder


@pytest.fixture(scope="session")
def backup_user(minio) -> tuple[str, str]:
    return minio.provision_backups(BACKUPS_BUCKET)


@pytest.fixture(scope="session")
def backup_role_password(postgres, database_urls) -> str:
    return postgres.provision_backup_role()


@pytest.fixture(scope="session")
def root_s3(minio):
    return minio.client()


def delete_everything(s3, bucket: str, *, remove_bucket: bool = False) -> None:
    """Every object and version of the bucket (and the bucket itself if asked)."""
    try:
        pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return
        raise
    for page in pages:
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])
    if remove_bucket:
        s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def buckets(root_s3, backup_user, gateway):
    """An empty backups bucket and replica before the test; the images bucket plain and empty after."""
    for bucket in (BACKUPS_BUCKET, REPLICA_BUCKET):
        try:
            root_s3.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        delete_everything(root_s3, bucket)
    yield root_s3
    # Unversioned again for the suites that follow: a versioned bucket is only deleted empty.
    delete_everything(root_s3, IMAGES_BUCKET, remove_bucket=True)
    root_s3.create_bucket(Bucket=IMAGES_BUCKET)


@pytest.fixture
def backup_environ(postgres, minio, backup_user, backup_role_password) -> dict[str, str]:
    """What the backup CronJob's pod gets: the backup role, the backup user, read-only images keys."""
    return {
        "PGHOST": postgres.host,
        "PGPORT": str(postgres.port),
        "PGUSER": "backup_user",
        "PGPASSWORD": backup_role_password,
        "BACKUP_S3_ENDPOINT": minio.endpoint,
        "BACKUP_S3_BUCKET": BACKUPS_BUCKET,
        "BACKUP_S3_ACCESS_KEY_ID": backup_user[0],
        "BACKUP_S3_SECRET_ACCESS_KEY": backup_user[1],
        "IMAGES_S3_ENDPOINT": minio.endpoint,
        "IMAGES_S3_BUCKET": IMAGES_BUCKET,
        "IMAGES_S3_ACCESS_KEY_ID": minio.access_key,
        "IMAGES_S3_SECRET_ACCESS_KEY": minio.secret_key,
        "REPLICA_S3_ENDPOINT": minio.endpoint,
        "REPLICA_S3_BUCKET": REPLICA_BUCKET,
        "REPLICA_S3_ACCESS_KEY_ID": minio.access_key,
        "REPLICA_S3_SECRET_ACCESS_KEY": minio.secret_key,
    }


@pytest.fixture
def restore_environ(postgres, database_urls, backup_environ) -> dict[str, str]:
    """What the restore Job gets: the superuser (it creates databases and roles), the services'
    database passwords as their Secrets hold them, the backups (read), both buckets (write)."""
    return {
        **backup_environ,
        "PGUSER": "postgres",
        "PGPASSWORD": postgres.superuser_password,
        "AUTH_DB_PASSWORD": postgres.passwords["auth"],
        "API_DB_PASSWORD": postgres.passwords["api"],
        "IMAGES_DB_PASSWORD": postgres.passwords["images"],
        "IMAGES_DATABASE_URL": database_urls["images"],
    }


@pytest.fixture
def run(console_scripts):
    """Run a command line (a string, as the runbook gives it) with the console scripts on PATH."""

    def run(command: str, environ: dict[str, str]) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            **environ,
            "PATH": f"{console_scripts}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": f"{PROJECT_ROOT / 'src'}{os.pathsep}{PROJECT_ROOT}",
        }
        result = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        print(f"$ {command}\n{result.stdout}{result.stderr}")
        return result

    return run


@dataclass(frozen=True)
class Commands:
    """The console scripts run as the backup CronJob runs them, and as the restore Job does."""

    run: Callable[[str, dict[str, str]], subprocess.CompletedProcess]
    backup_environ: dict[str, str]
    restore_environ: dict[str, str]
    s3: object  # a root client of the session MinIO, for looking behind the commands' backs

    def backup(self, command: str) -> subprocess.CompletedProcess:
        return self.run(command, self.backup_environ)

    def restore(self, command: str) -> subprocess.CompletedProcess:
        return self.run(command, self.restore_environ)


@pytest.fixture
def commands(run, backup_environ, restore_environ, buckets) -> Commands:
    return Commands(run, backup_environ, restore_environ, buckets)


@pytest.fixture
def api(gateway):
    """Calls to the gateway's public API."""

    class Api:
        url = f"{gateway.url}/api/v1"

        def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
            body = {"username": username, "password": password}
            answer = requests.post(f"{self.url}/auth/login", json=body, timeout=10)
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['access_token']}"}

        def get(self, path: str, headers: dict | None = None, **options) -> requests.Response:
            return requests.get(f"{self.url}{path}", headers=headers, timeout=30, **options)

        def post(self, path: str, headers: dict, **options) -> requests.Response:
            return requests.post(f"{self.url}{path}", headers=headers, timeout=60, **options)

        def all_posts(self) -> list[dict]:
            items, cursor = [], None
            while True:
                page = self.get("/posts", params={"limit": 100, **({"cursor": cursor} if cursor else {})})
                assert page.status_code == 200, page.text
                items += page.json()["items"]
                cursor = page.json()["next_cursor"]
                if not cursor:
                    return items

        def all_images(self, headers: dict) -> list[dict]:
            items: list[dict] = []
            while True:
                page = self.get("/images", headers, params={"limit": 100, "offset": len(items)})
                assert page.status_code == 200, page.text
                items += page.json()["items"]
                if len(page.json()["items"]) < 100:
                    return items

        def upload(self, headers: dict, content: bytes, name: str, content_type: str) -> dict:
            answer = self.post("/images/upload", headers, files={"file": (name, content, content_type)})
            assert answer.status_code == 201, answer.text
            return answer.json()

    return Api()


def drop_databases(postgres, databases: list[str], roles: list[str]) -> None:
    """What a lost database server leaves: no database, no role."""
    connection = postgres.connect()
    connection.autocommit = True
    with connection.cursor() as cursor:
        for database in databases:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in roles:
            cursor.execute(f'DROP ROLE IF EXISTS "{role}"')
    connection.close()
