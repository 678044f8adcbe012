"""The chart's MinIO provisioning Job script, run with the MinIO client against a real MinIO
server as the Job runs it: the images service's own user reaches its bucket and nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import boto3
import pytest
import requests
from botocore.client import Config
from botocore.exceptions import ClientError

from devstack.minio import MinioServer
from devstack.wait import wait_until
from tests.charts.conftest import ROOT

MC = ROOT / ".tools" / "bin" / "mc"
SERVICE_KEY, SERVICE_SECRET = "images-service", "images-service-secret-0123456789"


@pytest.fixture(scope="module")
def minio():
    server = MinioServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def provisioning(get_render):
    render = get_render("default-single")
    (config_map,) = [
        o for o in render.of_kind("ConfigMap") if o["metadata"]["name"] == "platform-minio-provisioning"
    ]
    (job,) = [
        o for o in render.of_kind("Job") if o["metadata"]["name"].startswith("platform-minio-provisioning-")
    ]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    return config_map["data"], env


def minio_ready(minio) -> bool:
    """Ready and authenticating its root user: what the script's own wait looks for."""
    if requests.get(f"{minio.endpoint}/minio/health/ready", timeout=2).status_code != 200:
        return False
    s3(minio, minio.access_key, minio.secret_key).list_buckets()
    return True


def run_provisioning(minio, provisioning, tmp_path, **overrides) -> subprocess.CompletedProcess:
    if not MC.exists():
        pytest.fail("the MinIO client is not installed: run `bash ci/install.sh`", pytrace=False)
    if "MINIO_URL" not in overrides:
        # A loaded machine may still be starting MinIO: wait for it here, not in the script's budget.
        wait_until(lambda: minio_ready(minio), timeout=60, message="MinIO to be ready")
    files, job_env = provisioning
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    for who, (user, password) in {
        "root": (minio.access_key, minio.secret_key),
        "service": (SERVICE_KEY, SERVICE_SECRET),
    }.items():
        (tmp_path / "credentials" / who).mkdir(parents=True, exist_ok=True)
        (tmp_path / "credentials" / who / "user").write_text(user)
        (tmp_path / "credentials" / who / "password").write_text(password)
    env = {
        "PATH": f"{MC.parent}:{os.environ['PATH']}",
        "MINIO_URL": minio.endpoint,
        "CREDENTIALS_DIR": str(tmp_path / "credentials"),
        "BUCKET": job_env["BUCKET"],
        "POLICY_NAME": job_env["POLICY_NAME"],
        "POLICY_FILE": str(tmp_path / "policy.json"),
        "MC_CONFIG_DIR": str(tmp_path / ".mc"),
        # Generous: the script's own wait, should MinIO still stall under load.
        "WAIT_SECONDS": "60",
        **overrides,
    }
    return subprocess.run(
        [shutil.which("bash"), str(tmp_path / "provision.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def s3(minio, key, secret):
    return boto3.client(
        "s3",
        endpoint_url=minio.endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def provisioned(minio, provisioning, tmp_path_factory):
    result = run_provisioning(minio, provisioning, tmp_path_factory.mktemp("provision"))
    assert result.returncode == 0, result.stdout + result.stderr
    return minio


def test_the_service_user_reads_and_writes_its_bucket(provisioned):
    client = s3(provisioned, SERVICE_KEY, SERVICE_SECRET)
    key = f"u1/{uuid.uuid4().hex}.png"
    client.put_object(Bucket="images", Key=key, Body=b"image bytes")
    assert client.get_object(Bucket="images", Key=key)["Body"].read() == b"image bytes"
    assert [o["Key"] for o in client.list_objects_v2(Bucket="images", Prefix="u1/")["Contents"]] == [key]
    client.delete_object(Bucket="images", Key=key)


def test_the_service_user_reaches_no_other_bucket_and_cannot_administer(provisioned):
    root = s3(provisioned, provisioned.access_key, provisioned.secret_key)
    root.create_bucket(Bucket="other")
    root.put_object(Bucket="other", Key="secret.txt", Body=b"not yours")
    client = s3(provisioned, SERVICE_KEY, SERVICE_SECRET)
    for attempt in (
        lambda: client.get_object(Bucket="other", Key="secret.txt"),
        lambda: client.put_object(Bucket="other", Key="x", Body=b"x"),
        lambda: client.create_bucket(Bucket="mine"),
        lambda: client.delete_bucket(Bucket="images"),
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            attempt()


def test_provisioning_again_is_harmless(provisioned, provisioning, tmp_path):
    result = run_provisioning(provisioned, provisioning, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    client = s3(provisioned, SERVICE_KEY, SERVICE_SECRET)
    client.put_object(Bucket="images", Key="again", Body=b"ok")


def test_provisioning_fails_clearly_when_minio_never_answers(minio, provisioning, tmp_path):
    result = run_provisioning(minio, provisioning, tmp_path, MINIO_URL="http://127.0.0.1:1", WAIT_SECONDS="4")
    assert result.returncode == 1
    assert "did not answer within 4s" in result.stderr


def test_secrets_that_start_with_a_dash_are_not_taken_for_flags(tmp_path, provisioning):
    server = MinioServer()
    server.secret_key = "-" + server.secret_key  # token_urlsafe can begin with '-'
    server.start()
    try:
        wait_until(lambda: minio_ready(server), timeout=60, message="MinIO to be ready")
        result = run_provisioning(server, provisioning, tmp_path)
        assert result.returncode == 0, result.stderr
    finally:
        server.destroy()
