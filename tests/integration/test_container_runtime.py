"""Each service runs the way its container does: every capability dropped, a read-only root
filesystem and an empty, writable /tmp (the chart's emptyDir), and nothing but the environment
the Dockerfile and the chart give it.

A mount namespace makes the whole root filesystem read-only and mounts a fresh tmpfs on /tmp;
setpriv drops every capability, so not even root's privileges can write elsewhere. (The uid
stays 0 here because the test's Python lives in root's home; the image's USER 10001 is checked
on the Dockerfile.) The service must become ready against the real PostgreSQL and MinIO and
serve requests that write temporary files and metrics.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests

from devstack.services import SERVICE_PORTS
from devstack.wait import free_port, wait_until
from tests.conftest import PROJECT_ROOT
from tests.integration.images.conftest import image_bytes

CONTAINER_UID = 10001

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="mount namespaces and setpriv need root (CI runs as root)"
)


def _dockerfile_env(service: str) -> dict[str, str]:
    """The ENV lines of the service's Dockerfile (the image's environment)."""
    text = (PROJECT_ROOT / "src" / service / "Dockerfile").read_text()
    block = re.search(r"^ENV (.*?)(?=^\S)", text.split("FROM ")[-1], re.S | re.M).group(1)
    pairs = dict(re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")))
    pairs.pop("PATH")
    return pairs


def _command(service: str) -> list[str]:
    text = (PROJECT_ROOT / "src" / service / "Dockerfile").read_text()
    return json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))


@pytest.fixture
def run_as_container(tmp_path):
    processes = []

    def run(service: str, settings: dict[str, str]) -> str:
        port = free_port()
        environ = {
            **_dockerfile_env(service),
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": "/nonexistent",
            "PYTHONPATH": str(PROJECT_ROOT / "src"),
            "PORT": str(port),
            **settings,
        }
        command = _command(service)
        # Inside the namespace: a fresh /tmp, then the whole root read-only, then drop every
        # capability for good.
        script = (
            "mount --make-rprivate / && mount -t tmpfs -o mode=1777,size=256m tmpfs /tmp "
            "&& mount -o remount,bind,ro / "
            "&& exec setpriv --inh-caps=-all --bounding-set=-all --no-new-privs "
            f"env -i {' '.join(shlex.quote(f'{k}={v}') for k, v in environ.items())} "
            f"{' '.join(shlex.quote(part) for part in command)}"
        )
        log = open(tmp_path / f"{service}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT, cwd="/"
        )
        processes.append((process, log))
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError((tmp_path / f"{service}.log").read_text())
            return requests.get(f"{url}/ready", timeout=5).status_code == 200

        wait_until(ready, timeout=60, message=f"{service} ready as a container")
        return url

    yield run
    for process, log in processes:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _token(secret: str, user_id: int = 7) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "username": "alice",
        "iat": now,
        "exp": now + 300,
        "iss": "platform-auth",
        "aud": "platform",
        "type": "access",
        "jti": "x",
        "fresh": False,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def test_the_dockerfiles_set_the_service_name_and_its_port():
    for service, port in SERVICE_PORTS.items():
        assert _dockerfile_env(service) == {
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "SERVICE_NAME": service,
            "PORT": str(port),
        }
        assert (
            f"USER {CONTAINER_UID}:{CONTAINER_UID}"
            in (PROJECT_ROOT / "src" / service / "Dockerfile").read_text()
        )


def test_auth_serves_on_a_read_only_root_without_capabilities(
    run_as_container, database_urls, jwt_secret, clean_databases
):
    url = run_as_container(
        "auth", {"DATABASE_URL": database_urls["auth"], "JWT_SECRET": jwt_secret, "BCRYPT_ROUNDS": "4"}
    )

    registered = requests.post(
        f"{url}/register", json={"username": "alice", "password": "correct horse"}, timeout=10
    )
    logged_in = requests.post(
        f"{url}/login", json={"username": "alice", "password": "correct horse"}, timeout=10
    )
    metrics = requests.get(f"{url}/metrics", timeout=10).text

    assert registered.status_code == 201
    assert logged_in.status_code == 200
    assert 'auth_logins_total{outcome="success"} 1.0' in metrics


def test_images_stores_a_large_upload_on_a_read_only_root(
    run_as_container, database_urls, jwt_secret, minio, clean_databases
):
    url = run_as_container(
        "images",
        {
            "DATABASE_URL": database_urls["images"],
            "JWT_SECRET": jwt_secret,
            "S3_ENDPOINT_URL": minio.endpoint,
            "S3_ACCESS_KEY_ID": minio.access_key,
            "S3_SECRET_ACCESS_KEY": minio.secret_key,
            "S3_BUCKET": "images",
            "S3_PATH_STYLE": "true",
            "S3_CREATE_BUCKET": "true",
        },
    )
    # Over a megabyte, so the upload is spooled to /tmp rather than held in memory.
    body = image_bytes("PNG", size=(700, 700), noise=True)
    assert len(body) > 1024 * 1024

    headers = {"Authorization": f"Bearer {_token(jwt_secret)}"}
    uploaded = requests.post(
        f"{url}/upload", files={"file": ("big.png", body, "image/png")}, headers=headers, timeout=30
    )

    assert uploaded.status_code == 201, uploaded.text
    downloaded = requests.get(f"{url}/images/{uploaded.json()['filename']}", headers=headers, timeout=30)
    assert downloaded.content == body
