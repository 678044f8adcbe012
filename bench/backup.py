"""Backup and restore: time and size of `platform-backup run` and `mirror`, then, after the
databases and the images bucket are destroyed, of `platform-restore databases` and `bucket
--from replica`: the figures the RPO and RTO in docs/runbooks/Restore.md come from.

The data set: BENCH_BACKUP_POSTS posts (default 10,000) of about 500 characters, written with
SQL (the dump does not care how rows arrived), and BENCH_BACKUP_IMAGES_MB of images (default 200)
in 2 MiB noise PNGs (incompressible) uploaded through the gateway, from 10 users.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

MIB = 1024 * 1024
IMAGE_SIDE = 836  # a noise RGB PNG of this side is about 2 MiB
USERS = 10
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run(bench) -> list[str]:
    stack = bench.stack
    posts = int(os.environ.get("BENCH_BACKUP_POSTS", "10000"))
    images_mb = int(os.environ.get("BENCH_BACKUP_IMAGES_MB", "200"))
    pg, minio = stack.postgres, stack.minio
    access_key, secret_key = minio.provision_backups()
    environ = {
        **os.environ,
        "PYTHONPATH": f"{PROJECT_ROOT / 'src'}{os.pathsep}{PROJECT_ROOT}",
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": "backup_user",
        "PGPASSWORD": pg.provision_backup_role(),
        "BACKUP_S3_ENDPOINT": minio.endpoint,
        "BACKUP_S3_ACCESS_KEY_ID": access_key,
        "BACKUP_S3_SECRET_ACCESS_KEY": secret_key,
        "IMAGES_S3_ENDPOINT": minio.endpoint,
        "IMAGES_S3_ACCESS_KEY_ID": minio.access_key,
        "IMAGES_S3_SECRET_ACCESS_KEY": minio.secret_key,
        "REPLICA_S3_ENDPOINT": minio.endpoint,
        "REPLICA_S3_ACCESS_KEY_ID": minio.access_key,
        "REPLICA_S3_SECRET_ACCESS_KEY": minio.secret_key,
    }
    restore_environ = {
        **environ,
        "PGUSER": "postgres",
        "PGPASSWORD": pg.superuser_password,
        "AUTH_DB_PASSWORD": pg.passwords["auth"],
        "API_DB_PASSWORD": pg.passwords["api"],
        "IMAGES_DB_PASSWORD": pg.passwords["images"],
        "IMAGES_DATABASE_URL": pg.url("image_db", "image_user", pg.passwords["images"]),
    }

    started = time.perf_counter()
    image_count, image_bytes = _fill(stack, posts, images_mb)
    figures = {
        "posts": posts,
        "images": image_count,
        "image_mib": round(image_bytes / MIB, 1),
        "fill_seconds": round(time.perf_counter() - started, 1),
    }
    lines = [
        f"data set: {posts} posts, {image_count} images ({image_bytes / MIB:.0f} MiB), {USERS} users;"
        f" filled in {figures['fill_seconds']:.0f} s"
    ]

    def timed(key: str, title: str, module: str, arguments: list[str], step_environ: dict[str, str]) -> None:
        line, seconds = _timed(title, module, arguments, step_environ)
        figures[f"{key}_seconds"] = round(seconds, 2)
        lines.append(line)

    timed("backup_run", "platform-backup run", "backups.backup", ["run"], environ)
    timed("backup_mirror", "platform-backup mirror (first, full copy)", "backups.backup", ["mirror"], environ)
    _destroy(stack)
    timed(
        "restore_databases", "platform-restore databases", "backups.restore", ["databases"], restore_environ
    )
    timed(
        "restore_bucket",
        "platform-restore bucket --from replica --fix",
        "backups.restore",
        ["bucket", "--from", "replica", "--fix"],
        restore_environ,
    )
    bench.record("backup", figures)
    return lines


def _timed(title: str, module: str, arguments: list[str], environ: dict[str, str]) -> tuple[str, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", module, *arguments], env=environ, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{title} failed: {result.stderr or result.stdout}")
    return f"{title}: {seconds:.1f} s -> {' | '.join(result.stdout.strip().splitlines())}", seconds


def _fill(stack, posts: int, images_mb: int) -> tuple[int, int]:
    gateway = stack.services["api"].url
    headers = []
    for number in range(USERS):
        body = {"username": f"bench{number}", "password": "bench password 1234"}
        requests.post(f"{gateway}/api/v1/auth/register", json=body, timeout=30)
        answer = requests.post(f"{gateway}/api/v1/auth/login", json=body, timeout=30)
        answer.raise_for_status()
        headers.append({"Authorization": f"Bearer {answer.json()['access_token']}"})
    connection = stack.postgres.connect(database="api_db")
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO posts (user_id, username, title, content, created_at)"
            " SELECT 1 + mod(n, %s), 'bench' || mod(n, %s), 'post ' || n, repeat(md5(n::text), 16),"
            " now() - n * interval '1 second' FROM generate_series(1, %s) AS n",
            (USERS, USERS, posts),
        )
    connection.close()

    count = images_mb * 1_000_000 // (2 * MIB) + 1

    def upload(number: int) -> int:
        buffer = io.BytesIO()
        pixels = os.urandom(IMAGE_SIDE * IMAGE_SIDE * 3)
        Image.frombytes("RGB", (IMAGE_SIDE, IMAGE_SIDE), pixels).save(buffer, "PNG", compress_level=1)
        answer = requests.post(
            f"{gateway}/api/v1/images/upload",
            headers=headers[number % USERS],
            files={"file": (f"{number}.png", buffer.getvalue(), "image/png")},
            timeout=120,
        )
        answer.raise_for_status()
        return answer.json()["size"]

    with ThreadPoolExecutor(4) as pool:
        sizes = list(pool.map(upload, range(count)))
    return count, sum(sizes)


def _destroy(stack) -> None:
    """The three databases and their roles, every object and the images bucket."""
    connection = stack.postgres.connect()
    connection.autocommit = True
    with connection.cursor() as cursor:
        for database in ("auth_db", "api_db", "image_db"):
            cursor.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        for role in ("auth_user", "api_user", "image_user"):
            cursor.execute(f'DROP ROLE "{role}"')
    connection.close()
    s3 = stack.minio.client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="images"):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket="images", Key=entry["Key"])
    s3.delete_bucket(Bucket="images")
