"""A real Prometheus scrapes the running services with the chart's alert rules loaded.

It scrapes the way the chart's ServiceMonitors make kube-prometheus-stack scrape: job named
after the service, `namespace` and `endpoint` target labels, no honor_labels, with the rules
filled in for that namespace as the chart fills them for a single-namespace release. Scrapes
are every 2 s instead of 15 s, and ServiceDown and ObjectStorageUnavailable wait 3 s instead
of minutes before firing; everything else is the rules as shipped.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
import yaml

from devstack.wait import free_port, wait_until
from tests.observability.conftest import STARTED_SERVICES
from tests.observability.promql import (
    SERVICES,
    dashboard_queries,
    fill_namespaces,
    rule_files,
    substitute_grafana_variables,
)

# Real PostgreSQL, MinIO and gunicorn (devstack).
pytestmark = pytest.mark.integration

# Longer than one scrape interval, so one slow scrape on a busy 2-core machine fires nothing.
SHORT_FOR = {"ServiceDown": "3s", "ObjectStorageUnavailable": "3s"}
NAMESPACE = "platform"


class Prometheus:
    def __init__(self, binary: str, targets: dict[str, str], minio: str, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = []
        for path in rule_files():
            content = yaml.safe_load(fill_namespaces(path.read_text(), dict.fromkeys(SERVICES, NAMESPACE)))
            for group in content["groups"]:
                for rule in group["rules"]:
                    if rule.get("alert") in SHORT_FOR:
                        rule["for"] = SHORT_FOR[rule["alert"]]
            copy = workdir / path.name
            copy.write_text(yaml.safe_dump(content))
            rules.append(str(copy))
        config = {
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "scrape_configs": [
                {
                    "job_name": name,
                    "static_configs": [
                        {"targets": [address], "labels": {"endpoint": "metrics", "namespace": NAMESPACE}}
                    ],
                }
                for name, address in targets.items()
            ]
            + [
                # The path the chart's MinIO ServiceMonitor scrapes (minio.metrics.serviceMonitor.paths).
                {
                    "job_name": "minio",
                    "metrics_path": "/minio/v2/metrics/cluster",
                    "static_configs": [{"targets": [minio]}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout=30, message="Prometheus to be ready")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()}")
        return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def ask(self, expr: str) -> dict:
        return requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()

    def query(self, expr: str) -> list[dict]:
        answer = self.ask(expr)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def alerts(self, name: str, state: str = "firing") -> list[dict]:
        answer = requests.get(f"{self.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [a for a in answer if a["labels"]["alertname"] == name and a["state"] == state]

    def rules(self) -> list[dict]:
        groups = requests.get(f"{self.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def prometheus(prometheus_binary, platform_stack, traffic):
    # The metrics port, as the chart's ServiceMonitors scrape it.
    targets = {name: f"127.0.0.1:{platform_stack.services[name].metrics_port}" for name in STARTED_SERVICES}
    with tempfile.TemporaryDirectory(prefix="platform-prometheus-") as workdir:
        minio = platform_stack.minio.endpoint.removeprefix("http://")
        server = Prometheus(prometheus_binary, targets, minio, Path(workdir))
        try:
            yield server
        finally:
            server.stop()


def test_prometheus_fires_service_down_when_a_service_stops_and_clears_it_when_it_is_back(
    prometheus, platform_stack
):
    running = STARTED_SERVICES
    wait_until(
        lambda: (
            {r["metric"]["job"] for r in prometheus.query('up{job=~"auth|api|images"} == 1')} == set(running)
        ),
        timeout=20,
        message=f"Prometheus to scrape {running}",
    )
    # Every rule evaluates cleanly on the real series (no many-to-many match, no bad label).
    wait_until(
        lambda: all(rule["health"] == "ok" for rule in prometheus.rules()),
        timeout=20,
        message="every rule to have been evaluated without error",
    )
    wait_until(
        lambda: {r["metric"]["job"] for r in prometheus.query("job:http_requests:rate5m")} == set(running),
        timeout=20,
        message="job:http_requests:rate5m for every service",
    )
    # Scraped as the ServiceMonitors do, without honorLabels: the target's `endpoint` label
    # stays the port name and no service label had to be renamed to exported_*.
    served = prometheus.query("flask_http_request_duration_seconds_count")
    assert served and all(r["metric"]["endpoint"] == "metrics" and "route" in r["metric"] for r in served)
    assert not [r for r in served if any(label.startswith("exported_") for label in r["metric"])]
    assert prometheus.alerts("ServiceDown") == []

    victim = "images"
    platform_stack.services[victim].stop()
    try:
        firing = wait_until(
            lambda: prometheus.alerts("ServiceDown"), timeout=30, message=f"ServiceDown for {victim}"
        )
        assert [alert["labels"]["job"] for alert in firing] == [victim]
        assert firing[0]["labels"]["namespace"] == NAMESPACE
        assert firing[0]["labels"]["severity"] == "critical"
        assert firing[0]["annotations"]["runbook_url"].endswith("/docs/runbooks/ServiceDown.md")
    finally:
        platform_stack.services[victim].start()

    wait_until(lambda: not prometheus.alerts("ServiceDown"), timeout=30, message="ServiceDown to resolve")


def test_every_dashboard_query_runs_on_prometheus_with_the_services_and_minio_scraped(prometheus):
    running = STARTED_SERVICES
    wait_until(
        lambda: {r["metric"]["job"] for r in prometheus.query("up == 1")} == {*running, "minio"},
        timeout=20,
        message="Prometheus to scrape the services and MinIO",
    )
    failing = []
    for query in dashboard_queries():
        answer = prometheus.ask(substitute_grafana_variables(query.expr))
        if answer["status"] != "success":
            failing.append(f"{query.source}: {answer.get('error')}")
    assert not failing, "\n".join(failing)
    # The infrastructure rows have data from a real MinIO, not only valid syntax.
    assert prometheus.query("max(minio_cluster_nodes_online_total)")[0]["value"][1] == "1"


def test_prometheus_fires_object_storage_unavailable_when_minio_stops(prometheus, platform_stack):
    images, minio = platform_stack.services["images"], platform_stack.minio

    def probed_alerts(name: str) -> list[dict]:
        # The kubelet's readiness probe, which is what refreshes dependency_up.
        requests.get(f"{images.url}/ready", timeout=10)
        return prometheus.alerts(name)

    query = 'dependency_up{job="images",dependency="object_store"} == 1'
    wait_until(lambda: probed_alerts("ObjectStorageUnavailable") == [] and prometheus.query(query),
               timeout=20, interval=0.5, message="object storage seen up")  # fmt: skip
    minio.stop()
    try:
        firing = wait_until(
            lambda: probed_alerts("ObjectStorageUnavailable"),
            timeout=30,
            interval=0.5,
            message="ObjectStorageUnavailable",
        )
        assert [alert["labels"]["job"] for alert in firing] == ["images"]
        assert firing[0]["labels"]["severity"] == "critical"
        # The bucket has its own alert; DependencyDown stays for the database and the services.
        assert (
            prometheus.alerts("DependencyDown", state="pending") == prometheus.alerts("DependencyDown") == []
        )
    finally:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MINIO_PROMETHEUS_AUTH_TYPE", "public")
            minio.start()
    wait_until(images.ready, timeout=30, interval=0.5, message="images ready again")
    wait_until(lambda: not probed_alerts("ObjectStorageUnavailable"), timeout=30, interval=0.5,
               message="ObjectStorageUnavailable to resolve")  # fmt: skip
