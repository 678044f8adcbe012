"""A throwaway MinIO server on a loopback port (the binary ci/install.sh builds)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import requests

from devstack.wait import WaitAborted, free_port, terminate, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
