"""A throwaway Jaeger v2 on loopback ports (the binary ci/install.sh builds): a trace backend.

With no config Jaeger v2 runs all-in-one on fixed ports on every interface; this one gets a
config of its own: the OTLP/HTTP receiver and the query API only, on free 127.0.0.1 ports,
spans kept in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import requests

from devstack.wait import WaitAborted, free_port, terminate, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def jaeger_binary() -> str:
    candidates = [PROJECT_ROOT / ".tools" / "bin" / "jaeger", shutil.which("jaeger")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError("jaeger not found; run `bash ci/install.sh` first")


class JaegerServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.otlp_port = free_port(host)
        self.query_port = free_port(host)
        self.query_grpc_port = free_port(host)
        self.data_dir = Path(tempfile.mkdtemp(prefix="platform-jaeger-"))
        self.process: subprocess.Popen | None = None

    @property
    def otlp_endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT names (the exporter adds /v1/traces)."""
        return f"http://{self.host}:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        """Jaeger's query API: /api/traces/{id}, /api/v3/traces, /api/services. A build from the
        module has no UI assets (they come with Jaeger's release), only a placeholder page."""
        return f"http://{self.host}:{self.query_port}"

    def config(self) -> dict:
        store = "memstore"
        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter"],
                    }
                },
                # Its own metrics would listen on :8888 of every interface.
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {store: {"memory": {"max_traces": 100000}}}},
                "jaeger_query": {
                    "storage": {"traces": store},
                    "http": {"endpoint": f"{self.host}:{self.query_port}"},
                    "grpc": {"endpoint": f"{self.host}:{self.query_grpc_port}"},
                },
            },
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{self.host}:{self.otlp_port}"}}}},
            "processors": {"batch": {}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": store}},
        }

    def start(self) -> JaegerServer:
        config = self.data_dir / "jaeger.yaml"
        # JSON is YAML, and needs no YAML library at run time.
        config.write_text(json.dumps(self.config(), indent=2))
        self._log = open(self.data_dir / "jaeger.log", "ab")
        self.process = subprocess.Popen(
            [jaeger_binary(), "--config", str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_until(self._serving, timeout=60, message="Jaeger to serve")
        return self

    def _serving(self) -> bool:
        if self.process and self.process.poll() is not None:
            raise WaitAborted(
                f"jaeger exited with {self.process.returncode}; see {self.data_dir / 'jaeger.log'}"
            )
        # The query API answers once storage is up; the receiver starts with the pipeline.
        services = requests.get(f"{self.query_url}/api/services", timeout=1)
        receiver = requests.post(f"{self.otlp_endpoint}/v1/traces", json={}, timeout=1)
        return services.status_code == 200 and receiver.status_code == 200

    def trace(self, trace_id: str) -> list[dict]:
        """The spans Jaeger holds for ``trace_id``, each with its service name (query API v2 JSON)."""
        answer = requests.get(f"{self.query_url}/api/traces/{trace_id}", timeout=5)
        if answer.status_code == 404:
            return []
        answer.raise_for_status()
        spans = []
        for trace in answer.json()["data"]:
            for span in trace["spans"]:
                service = trace["processes"][span["processID"]]["serviceName"]
                spans.append({**span, "serviceName": service})
        return spans

    def stop(self) -> None:
        terminate(self.process, getattr(self, "_log", None), grace_seconds=15)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
