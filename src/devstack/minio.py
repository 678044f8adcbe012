"""A throwaway MinIO server on a loopback port (the binary ci/install.sh builds)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import requests

from devstack.wait import WaitAborted, free_port, terminate, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]


BACKUPS_BUCKET = "backups"
BACKUP_USER = "backup"
# put, get and list on the backups bucket, and no delete: a leaked backup credential cannot
# erase the history, which only the bucket's lifecycle rules expire.
BACKUP_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": ["arn:aws:s3:::{bucket}"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": ["arn:aws:s3:::{bucket}/*"],
        },
    ],
}


def tool_binary(name: str) -> str:
    candidates = [PROJECT_ROOT / ".tools" / "bin" / name, shutil.which(name)]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError(f"{name} not found; run `bash ci/install.sh` first")


def minio_binary() -> str:
    candidates = [PROJECT_ROOT / ".tools" / "bin" / "minio", shutil.which("minio")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError("minio not found; run `bash ci/install.sh` first")


class MinioServer:
    def __init__(self, data_dir: str | None = None, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="platform-minio-"))
        self.host = host
        self.port = port or free_port(host)
        self.console_port = free_port(host)
        credentials = self.data_dir / ".root-credentials"
        if credentials.exists():
            self.access_key, self.secret_key = credentials.read_text().split()
        else:
            self.access_key = "platform-root"
            self.secret_key = secrets.token_urlsafe(24)
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MinioServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / ".root-credentials").write_text(f"{self.access_key} {self.secret_key}")
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        self._log = open(self.data_dir / "minio.log", "ab")
        self.process = subprocess.Popen(
            [
                minio_binary(),
                "server",
                str(self.data_dir / "data"),
                "--quiet",
                "--address",
                f"{self.host}:{self.port}",
                "--console-address",
                f"{self.host}:{self.console_port}",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._live, timeout=60, message="MinIO to serve")
        return self

    def _live(self) -> bool:
        if self.process and self.process.poll() is not None:
            raise WaitAborted(
                f"minio exited with {self.process.returncode}; see {self.data_dir / 'minio.log'}"
            )
        return requests.get(f"{self.endpoint}/minio/health/ready", timeout=1).status_code == 200

    def stop(self) -> None:
        terminate(self.process, getattr(self, "_log", None), grace_seconds=15)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- provisioning, as the chart's MinIO provision.sh does --------------------------------
    def client(self, access_key: str | None = None, secret_key: str | None = None):
        """A boto3 S3 client of this server, as root unless other keys are given."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def mc(self, *args: str) -> str:
        """Run MinIO's client against this server as root (the admin API is mc's)."""
        with tempfile.TemporaryDirectory(prefix="platform-mc-") as config_dir:
            env = {
                **os.environ,
                "MC_CONFIG_DIR": config_dir,
                "MC_HOST_platform": f"http://{self.access_key}:{self.secret_key}@{self.host}:{self.port}",
            }
            result = subprocess.run(
                [tool_binary("mc"), "--no-color", *args], env=env, capture_output=True, text=True, check=False
            )
        if result.returncode != 0:
            raise RuntimeError(f"mc {' '.join(args)} failed: {result.stderr or result.stdout}")
        return result.stdout

    def provision_backups(
        self, bucket: str = BACKUPS_BUCKET, keep_daily_days: int = 7, keep_weekly_days: int = 28
    ) -> tuple[str, str]:
        """The backups bucket with its retention rules, and the backup user; returns its keys."""
        client = self.client()
        if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
            client.create_bucket(Bucket=bucket)
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={
                "Rules": [
                    {"ID": f"expire-{prefix}", "Status": "Enabled", "Filter": {"Prefix": f"{prefix}/"},
                     "Expiration": {"Days": days}}
                    for prefix, days in (("daily", keep_daily_days), ("weekly", keep_weekly_days))
                ]
            },
        )  # fmt: skip
        secret = secrets.token_urlsafe(24)
        policy = json.loads(json.dumps(BACKUP_POLICY).replace("{bucket}", bucket))
        with tempfile.NamedTemporaryFile("w", suffix=".json") as policy_file:
            json.dump(policy, policy_file)
            policy_file.flush()
            self.mc("admin", "policy", "create", "platform", f"{bucket}-writer", policy_file.name)
        # After "--": a generated secret may start with "-", which mc would take for a flag.
        self.mc("admin", "user", "add", "--", "platform", BACKUP_USER, secret)
        try:
            self.mc("admin", "policy", "attach", "platform", f"{bucket}-writer", "--user", BACKUP_USER)
        except RuntimeError as exc:
            if "already" not in str(exc):  # attached by an earlier run: nothing to change
                raise
        return BACKUP_USER, secret

    def enable_versioning(self, bucket: str, noncurrent_days: int) -> None:
        """Keep overwritten and deleted objects for ``noncurrent_days`` (objectStorage.versioning)."""
        client = self.client()
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={
                "Rules": [
                    {"ID": "expire-noncurrent", "Status": "Enabled", "Filter": {"Prefix": ""},
                     "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days}}
                ]
            },
        )  # fmt: skip
