"""The chart's MinIO provisioning Job script, run with the MinIO client against a real MinIO
server as the Job runs it: the images service's own user reaches its bucket and nothing else; with
backups on, the backup user writes backups it cannot delete into a bucket whose lifecycle rules
expire them, the replication's user only reads the images bucket, and the images bucket keeps
overwritten and deleted images as versions that expire."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import boto3
import pytest
import requests
import yaml
from botocore.client import Config
from botocore.exceptions import ClientError

from devstack.minio import MinioServer
from devstack.wait import wait_until
from tests.charts.conftest import ROOT

MC = ROOT / ".tools" / "bin" / "mc"
SERVICE_KEY, SERVICE_SECRET = "images-service", "images-service-secret-0123456789"
BACKUP_KEY, BACKUP_SECRET = "platform-backup", "backup-secret-0123456789abcdef"
READONLY_KEY, READONLY_SECRET = "images-readonly", "readonly-secret-0123456789abcdef"
# What staging turns on, with a replica somewhere else (only its values matter to provisioning).
BACKUPS_ON = [
    "--set",
    "backup.enabled=true",
    "--set",
    "images.objectStorage.versioning.enabled=true",
    "--set",
    "backup.replication.enabled=true",
    "--set",
    "backup.replication.endpoint=https://replica.example",
    "--set",
    "backup.replication.bucket=images-replica",
    "--set",
    "backup.replication.existingSecret=replica-keys",
    "--set-json",
    'networkPolicy.backupObjectStorage.to=[{"ipBlock": {"cidr": "52.219.0.0/16"}}]',
]


@pytest.fixture(scope="module")
def minio():
    server = MinioServer().start()
    yield server
    server.destroy()


def provisioning_of(objects):
    """The provisioning ConfigMap's files and the Job's environment, as rendered."""
    (config_map,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "platform-minio-provisioning"
    ]
    (job,) = [
        o
        for o in objects
        if o["kind"] == "Job" and o["metadata"]["name"].startswith("platform-minio-provisioning-")
    ]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    return config_map["data"], env


@pytest.fixture(scope="module")
def provisioning(get_render):
    return provisioning_of(get_render("default-single").objects)


@pytest.fixture(scope="module")
def provisioning_with_backups(template):
    result = template(*BACKUPS_ON)
    assert result.returncode == 0, result.stderr
    return provisioning_of([o for o in yaml.safe_load_all(result.stdout) if o])


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
        "backup": (BACKUP_KEY, BACKUP_SECRET),
        "readonly": (READONLY_KEY, READONLY_SECRET),
    }.items():
        (tmp_path / "credentials" / who).mkdir(parents=True, exist_ok=True)
        (tmp_path / "credentials" / who / "user").write_text(user)
        (tmp_path / "credentials" / who / "password").write_text(password)
    env = {
        # The Job's environment, its mounted files found in tmp_path instead.
        **{name: value.replace("/provisioning/", f"{tmp_path}/") for name, value in job_env.items()},
        "PATH": f"{MC.parent}:{os.environ['PATH']}",
        "MINIO_URL": minio.endpoint,
        "CREDENTIALS_DIR": str(tmp_path / "credentials"),
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


@pytest.fixture(scope="module")
def provisioned_with_backups(provisioning_with_backups, tmp_path_factory):
    server = MinioServer().start()
    try:
        result = run_provisioning(server, provisioning_with_backups, tmp_path_factory.mktemp("backups"))
        assert result.returncode == 0, result.stdout + result.stderr
        yield server
    finally:
        server.destroy()


def test_without_backups_there_is_no_backup_bucket_nor_versioning(provisioned):
    root = s3(provisioned, provisioned.access_key, provisioned.secret_key)
    assert "backups" not in {bucket["Name"] for bucket in root.list_buckets()["Buckets"]}
    assert root.get_bucket_versioning(Bucket="images").get("Status") is None


def test_the_backup_user_writes_reads_and_lists_backups_but_cannot_delete_them(provisioned_with_backups):
    client = s3(provisioned_with_backups, BACKUP_KEY, BACKUP_SECRET)
    key = f"daily/{uuid.uuid4().hex}/auth_db.tar.gz"
    client.put_object(Bucket="backups", Key=key, Body=b"dump")
    assert client.get_object(Bucket="backups", Key=key)["Body"].read() == b"dump"
    assert key in [o["Key"] for o in client.list_objects_v2(Bucket="backups", Prefix="daily/")["Contents"]]
    # A leaked backup credential cannot erase the history: retention is the lifecycle rules' job.
    for attempt in (
        lambda: client.delete_object(Bucket="backups", Key=key),
        lambda: client.delete_objects(Bucket="backups", Delete={"Objects": [{"Key": key}]})["Errors"][0],
        lambda: client.put_bucket_lifecycle_configuration(
            Bucket="backups",
            LifecycleConfiguration={
                "Rules": [
                    {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}
                ]
            },
        ),
        lambda: client.get_object(Bucket="images", Key="anything"),
        lambda: client.create_bucket(Bucket="elsewhere"),
    ):
        try:
            outcome = attempt()
        except ClientError as error:
            assert error.response["Error"]["Code"] == "AccessDenied"
        else:
            # delete_objects answers 200 and reports each refused key in Errors.
            assert outcome["Code"] == "AccessDenied", outcome
    assert client.get_object(Bucket="backups", Key=key)["Body"].read() == b"dump"


def test_the_backup_bucket_expires_daily_backups_after_7_days_and_weekly_ones_after_28(
    provisioned_with_backups,
):
    root = s3(
        provisioned_with_backups, provisioned_with_backups.access_key, provisioned_with_backups.secret_key
    )
    rules = root.get_bucket_lifecycle_configuration(Bucket="backups")["Rules"]
    assert {
        (rule["Filter"]["Prefix"], rule["Expiration"]["Days"])
        for rule in rules
        if rule["Status"] == "Enabled"
    } == {("daily/", 7), ("weekly/", 28)}


def test_the_images_bucket_keeps_replaced_images_as_versions_that_expire_after_30_days(
    provisioned_with_backups,
):
    root = s3(
        provisioned_with_backups, provisioned_with_backups.access_key, provisioned_with_backups.secret_key
    )
    assert root.get_bucket_versioning(Bucket="images")["Status"] == "Enabled"
    (rule,) = root.get_bucket_lifecycle_configuration(Bucket="images")["Rules"]
    assert rule["Status"] == "Enabled" and rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert "Expiration" not in rule  # current images never expire
    service = s3(provisioned_with_backups, SERVICE_KEY, SERVICE_SECRET)
    service.put_object(Bucket="images", Key="u1/a.png", Body=b"first")
    service.put_object(Bucket="images", Key="u1/a.png", Body=b"second")
    service.delete_object(Bucket="images", Key="u1/a.png")
    versions = root.list_object_versions(Bucket="images", Prefix="u1/a.png")
    assert len(versions["Versions"]) == 2 and len(versions["DeleteMarkers"]) == 1


def test_the_replication_user_only_reads_the_images_bucket(provisioned_with_backups):
    s3(provisioned_with_backups, SERVICE_KEY, SERVICE_SECRET).put_object(
        Bucket="images", Key="u2/b.png", Body=b"image"
    )
    client = s3(provisioned_with_backups, READONLY_KEY, READONLY_SECRET)
    assert client.get_object(Bucket="images", Key="u2/b.png")["Body"].read() == b"image"
    assert [o["Key"] for o in client.list_objects_v2(Bucket="images", Prefix="u2/")["Contents"]] == [
        "u2/b.png"
    ]
    for attempt in (
        lambda: client.put_object(Bucket="images", Key="u2/c.png", Body=b"x"),
        lambda: client.delete_object(Bucket="images", Key="u2/b.png"),
        lambda: client.get_object(Bucket="backups", Key="anything"),
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            attempt()


def test_provisioning_backups_again_keeps_one_rule_of_each_and_the_backups(
    provisioned_with_backups, provisioning_with_backups, tmp_path
):
    client = s3(provisioned_with_backups, BACKUP_KEY, BACKUP_SECRET)
    client.put_object(Bucket="backups", Key="weekly/b1/manifest.json", Body=b"{}")
    result = run_provisioning(provisioned_with_backups, provisioning_with_backups, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    root = s3(
        provisioned_with_backups, provisioned_with_backups.access_key, provisioned_with_backups.secret_key
    )
    assert len(root.get_bucket_lifecycle_configuration(Bucket="backups")["Rules"]) == 2
    assert len(root.get_bucket_lifecycle_configuration(Bucket="images")["Rules"]) == 1
    assert client.get_object(Bucket="backups", Key="weekly/b1/manifest.json")["Body"].read() == b"{}"
