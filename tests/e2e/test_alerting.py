"""Alerts that fire in the cluster: kube-prometheus-stack's Prometheus Operator, Prometheus and
Alertmanager as real pods (images built by ci/images/build.sh), installed on their own in the
monitoring namespace as single namespace mode wants it (tests/e2e/monitoring-stack.yaml), and
the dev install's ServiceMonitors, PrometheusRules and AlertmanagerConfig
(tests/e2e/dev-monitoring.yaml). A service scaled to zero fires ServiceDown, which reaches a
webhook receiver through the chart's routing (its Slack receiver, the webhook URL pointing at the
test); scaling it back resolves it. Admission webhooks stay off (the chart's default).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from devstack.wait import wait_until
from tests.e2e.conftest import CHART, Cluster, ready_pods

DEV_MONITORING_VALUES = Path(__file__).with_name("dev-monitoring.yaml")
MONITORING_STACK_VALUES = Path(__file__).with_name("monitoring-stack.yaml")
KUBE_PROMETHEUS_STACK = CHART / "charts" / "kube-prometheus-stack"
MONITORING_NAMESPACE = "monitoring"  # global.namespaces.monitoring, in both modes
SERVICES = ("auth", "api", "images")


class AlertReceiver:
    """An incoming webhook on the node: every message Alertmanager posts, as the JSON it sent."""

    def __init__(self, host: str):
        messages = self.messages = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                messages.append({"path": self.path, "body": json.loads(body), "at": time.monotonic()})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_port}/slack"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titled(self, title: str) -> list[dict]:
        return [
            message
            for message in self.messages
            if any(attachment.get("title") == title for attachment in message["body"].get("attachments", []))
        ]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def upgrade_dev_release(cluster: Cluster, namespace: str, *args: str):
    cluster.helm(
        "upgrade", "platform", str(CHART), "-n", namespace, "--reuse-values", *args,
        "--wait", "--timeout", "5m", timeout=400,
    )  # fmt: skip


def platform_stack_values(directory: Path) -> Path:
    """The platform chart's own values for its kube-prometheus-stack dependency, as a values file
    of the stack installed on its own (without the umbrella's switches)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())["kube-prometheus-stack"]
    for umbrella_only in ("enabled", "namespaceOverride"):
        values.pop(umbrella_only)
    path = directory / "platform-stack-values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def ready_apps(cluster: Cluster) -> set[str]:
    """app.kubernetes.io/name of the monitoring namespace's pods whose containers are all ready."""
    return {
        pod["metadata"]["labels"].get("app.kubernetes.io/name")
        for pod in cluster.objects("pods", MONITORING_NAMESPACE)
        if all(status["ready"] for status in pod["status"].get("containerStatuses") or [{"ready": False}])
    }


@pytest.fixture(scope="module")
def receiver(cluster: Cluster, dev_release, tmp_path_factory):
    receiver = AlertReceiver(cluster.node_ip)
    cluster.restricted_namespace(MONITORING_NAMESPACE)
    started = time.monotonic()
    stack_values = platform_stack_values(tmp_path_factory.mktemp("monitoring"))
    cluster.helm(
        "upgrade", "--install", "monitoring", str(KUBE_PROMETHEUS_STACK), "-n", MONITORING_NAMESPACE,
        "-f", str(stack_values), "-f", str(MONITORING_STACK_VALUES),
        "--wait", "--timeout", "5m", timeout=400,
    )  # fmt: skip
    # helm waits for the operator; Prometheus and Alertmanager are the pods it then creates.
    wait_until(lambda: {"prometheus", "alertmanager"} <= ready_apps(cluster), timeout=240, interval=2,
               message="Prometheus and Alertmanager to be ready")  # fmt: skip
    print(f"monitoring stack ready in {time.monotonic() - started:.0f} s")
    # Keys as the chart reads them (monitoring.alertmanager.*Key); email is off, its password unused.
    alerting = {"slack-webhook-url": receiver.url, "smtp-password": "-"}
    cluster.secret(dev_release, "platform-alerting", alerting)
    upgrade_dev_release(cluster, dev_release, "-f", str(DEV_MONITORING_VALUES))
    try:
        yield receiver
    finally:
        receiver.stop()
        upgrade_dev_release(cluster, dev_release, "--set", "monitoring.enabled=false")
        cluster.helm("uninstall", "monitoring", "-n", MONITORING_NAMESPACE, "--wait", timeout=300)
        # The install flows' staging and prod create a namespace of that name as theirs.
        cluster.kubectl(
            "delete", "namespace", MONITORING_NAMESPACE, "--wait", "--timeout", "180s", timeout=200
        )


@pytest.fixture(scope="module")
def prometheus(cluster: Cluster, receiver) -> str:
    (service,) = cluster.objects(
        "service", MONITORING_NAMESPACE, "-l", "app=kube-prometheus-stack-prometheus"
    )
    return f"http://{service['spec']['clusterIP']}:9090"


def query(prometheus: str, expression: str) -> list[dict]:
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def test_the_monitoring_stack_runs_as_real_pods(cluster, receiver):
    assert {"prometheus", "alertmanager", "kube-prometheus-stack-prometheus-operator"} <= ready_apps(cluster)
    for pod in cluster.objects("pods", MONITORING_NAMESPACE):
        assert pod["spec"]["nodeName"] == "node-1"
        assert pod["spec"]["securityContext"]["runAsNonRoot"], pod["metadata"]["name"]


def test_every_service_target_is_up_with_the_labels_the_rules_use(prometheus, dev_release):
    def every_target_up():
        series = query(prometheus, 'up{job=~"auth|api|images"} == 1')
        return series if len(series) == 2 * len(SERVICES) else None

    series = wait_until(every_target_up, timeout=180, interval=5, message="two targets up for every service")
    for metric in (s["metric"] for s in series):
        assert metric["namespace"] == dev_release, metric
        assert metric["pod"].startswith(f"platform-{metric['job']}-"), metric
        assert metric["endpoint"] == "metrics", metric
    # The recording rules see the services' own request metrics under the same labels.
    requests_of_api = f'flask_http_request_duration_seconds_count{{namespace="{dev_release}",job="api"}}'
    assert query(prometheus, requests_of_api)


def rules(prometheus: str) -> dict[str, dict]:
    response = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()
    return {rule["name"]: rule for group in response["data"]["groups"] for rule in group["rules"]}


def test_the_platform_rules_are_loaded_and_healthy(prometheus):
    loaded = rules(prometheus)
    assert "ServiceDown" in loaded and "job:http_requests:rate5m" in loaded
    unhealthy = [rule for rule in loaded.values() if rule["health"] != "ok"]
    assert not unhealthy, unhealthy
    # Pending while a service had no scrape yet (absent()), then quiet once every target answers.
    wait_until(lambda: rules(prometheus)["ServiceDown"]["state"] == "inactive", timeout=90, interval=2,
               message="ServiceDown to be inactive with every target up")  # fmt: skip


def test_a_service_scaled_to_zero_pages_through_the_chart_routing_and_resolves_when_back(
    cluster, receiver, prometheus, dev_release
):
    firing, resolved = "[FIRING] ServiceDown images", "[RESOLVED] ServiceDown images"
    assert not receiver.titled(firing)
    scaled_down = time.monotonic()
    cluster.kubectl("scale", "deployment/platform-images", "-n", dev_release, "--replicas", "0")
    try:
        page = wait_until(lambda: receiver.titled(firing), timeout=300, interval=2,
                          message="ServiceDown for images to reach the receiver")[0]  # fmt: skip
        print(f"ServiceDown delivered {page['at'] - scaled_down:.0f} s after images was scaled to zero")
        assert page["body"]["channel"] == "#platform-alerts"  # critical: the on-call channel
        (attachment,) = page["body"]["attachments"]
        assert "The images service is down" in attachment["text"]
        assert "docs/runbooks/ServiceDown.md" in attachment["text"]
    finally:
        cluster.kubectl("scale", "deployment/platform-images", "-n", dev_release, "--replicas", "2")
    scaled_up = time.monotonic()
    wait_until(lambda: len(ready_pods(cluster, dev_release, "images")) == 2, timeout=180, interval=2,
               message="images to have two ready pods again")  # fmt: skip
    message = wait_until(lambda: receiver.titled(resolved), timeout=300, interval=2,
                         message="ServiceDown for images to be resolved")[0]  # fmt: skip
    print(f"resolved message {message['at'] - scaled_up:.0f} s after images was scaled back")
    assert message["body"]["channel"] == "#platform-alerts"
