"""The services as real gunicorn processes, the way the images run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from devstack.wait import WaitAborted, free_port, terminate, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICE_PORTS = {"auth": 3001, "api": 3002, "images": 3003}
# The images' and the chart's METRICS_PORT: /metrics is never on the service port.
METRICS_PORTS = {"auth": 9101, "api": 9102, "images": 9103}


class ServiceProcess:
    """One service under gunicorn with the project's gunicorn config."""

    def __init__(
        self,
        name: str,
        port: int,
        env: dict[str, str],
        *,
        workers: int = 2,
        log_path: Path | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port
        # A free port unless told: tests start many services side by side.
        self.metrics_port = metrics_port or free_port()
        self.workers = workers
        self.env = env
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix=f"platform-{name}-")) / "service.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where Prometheus would scrape this service: GET {metrics_url}/metrics."""
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self, *, wait_ready: bool = True) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT / "src"),
            "SERVICE_NAME": self.name,
            "BIND": f"127.0.0.1:{self.port}",
            "METRICS_BIND": f"127.0.0.1:{self.metrics_port}",
            "WEB_CONCURRENCY": str(self.workers),
            "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix=f"prometheus-{self.name}-"),
            **self.env,
        }
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:servicekit.gunicorn_conf",
                f"{self.name}:create_app()",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        wait_until(
            self._serving if not wait_ready else self.ready,
            timeout=60,
            message=f"{self.name} on port {self.port} (log: {self.log_path})",
        )
        return self

    def _check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise WaitAborted(f"{self.name} exited; see {self.log_path}:\n{self.logs()[-2000:]}")

    def _serving(self) -> bool:
        self._check_alive()
        return requests.get(f"{self.url}/live", timeout=2).status_code == 200

    def ready(self) -> bool:
        self._check_alive()
        return requests.get(f"{self.url}/ready", timeout=5).status_code == 200

    def pause(self) -> None:
        """Freeze the service (SIGSTOP): connections are accepted but never answered."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: int) -> None:
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        for pid in [self.process.pid, *map(int, children.stdout.split())]:
            os.kill(pid, sig)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # Memory of the gunicorn workers (Linux /proc), for the tests and benchmarks that bound it.
    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's child processes."""
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return sorted(map(int, children.stdout.split()))

    def rss_kib(self) -> dict[int, int]:
        """Each worker's resident memory now (VmRSS), in KiB, by pid."""
        return {pid: memory_kib(pid)["VmRSS"] for pid in self.worker_pids()}

    def peak_rss_kib(self) -> dict[int, int]:
        """Each worker's peak resident memory (VmHWM) since it started or reset_peaks(), by pid."""
        return {pid: memory_kib(pid)["VmHWM"] for pid in self.worker_pids()}

    def reset_peaks(self) -> bool:
        """Start each worker's peak again from its current RSS; False where the kernel refuses."""
        return all([reset_peak(pid) for pid in self.worker_pids()])

    def stop(self) -> None:
        terminate(self.process, getattr(self, "_log", None), grace_seconds=30)
        self.process = None


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> bool:
    """Make a process's VmHWM start again from its current RSS (Linux: 5 > /proc/<pid>/clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
