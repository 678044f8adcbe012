"""Autoscaling that acts: the resource metrics API served for real (metrics-server through the
aggregation layer), and the api HPA scaling out under load and back in once it ends.

The load is wrk through the ingress (Traefik, tests/e2e/traefik.py) on the public post list, the
route the chart README's sizing arithmetic starts from. values/dev.yaml gives the api 100m CPU
requested and 400m allowed, so a saturated pod runs at up to 400 % of its request against the
70 % target: the HPA wants more pods at once.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

from devstack.wait import wait_until
from tests.e2e.conftest import pods_of, ready_pods
from tests.e2e.traefik import HTTPS_PORT, INGRESS_HOST

# The dev install's HPA: minReplicas 2, maxReplicas 3 (values/dev.yaml), the scale-in window
# shortened by tests/e2e/dev-external.yaml so that the test sees it act.
API_MIN_REPLICAS = 2
API_MAX_REPLICAS = 3


def hpa(cluster, namespace: str, service: str) -> dict:
    (autoscaler,) = cluster.objects("hpa", namespace, "-l", f"app.kubernetes.io/name={service}")
    return autoscaler


def cpu_utilization(autoscaler: dict) -> int | None:
    for metric in autoscaler["status"].get("currentMetrics") or []:
        if metric.get("type") == "Resource" and metric["resource"]["name"] == "cpu":
            return metric["resource"]["current"].get("averageUtilization")
    return None


def wrk_through_the_ingress(traefik, seconds: int) -> subprocess.Popen:
    """wrk on the public list, by the Ingress's host name at Traefik's address (wrk checks no certificate)."""
    return subprocess.Popen(
        ["wrk", "-t", "2", "-c", "16", "-d", f"{seconds}s", "-H", f"Host: {INGRESS_HOST}",
         f"https://{traefik.address}:{HTTPS_PORT}/api/v1/posts"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_kubectl_top_shows_the_pods_of_each_service(cluster, dev_release):
    def usage_of_every_pod():
        top = cluster.kubectl("top", "pods", "-n", dev_release, "--no-headers", check=False)
        lines = top.stdout.splitlines()
        return lines if sum(line.startswith("platform-") for line in lines) >= 6 else None

    lines = wait_until(usage_of_every_pod, timeout=120, interval=5, message="kubectl top to list the pods")
    for line in lines:
        _pod, cpu, memory = line.split()
        assert cpu.endswith("m") and memory.endswith("Mi"), line
    assert "node-1" in cluster.kubectl("top", "node").stdout


def test_the_api_scales_out_under_load_and_back_in_after_the_window(cluster, dev_release, traefik):
    def autoscaler_reading_cpu():
        autoscaler = hpa(cluster, dev_release, "api")
        return autoscaler if cpu_utilization(autoscaler) is not None else None

    autoscaler = wait_until(
        autoscaler_reading_cpu, timeout=120, interval=5, message="the api HPA to read CPU"
    )
    assert autoscaler["status"]["currentReplicas"] == API_MIN_REPLICAS, autoscaler["status"]

    started = time.monotonic()
    load = wrk_through_the_ingress(traefik, seconds=600)
    try:
        wait_until(
            lambda: len(ready_pods(cluster, dev_release, "api")) > API_MIN_REPLICAS,
            timeout=240, interval=2, message="the api HPA to add a ready pod under load",
        )  # fmt: skip
        scaled_out = time.monotonic() - started
        autoscaler = hpa(cluster, dev_release, "api")
        print(f"api scaled out to {autoscaler['status']['desiredReplicas']} in {scaled_out:.0f} s "
              f"at {cpu_utilization(autoscaler)} % of the CPU request")  # fmt: skip
        assert cpu_utilization(autoscaler) > 70
        assert autoscaler["status"]["desiredReplicas"] == API_MAX_REPLICAS
    finally:
        load.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
        summary = load.communicate(timeout=10)[0]
    rate = re.search(r"Requests/sec:\s+([\d.]+)", summary)
    print(f"through the ingress: {rate.group(1) if rate else '?'} requests/s on the public list")
    assert "Non-2xx" not in summary, summary

    load_ended = time.monotonic()
    window = autoscaler["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
    wait_until(
        lambda: hpa(cluster, dev_release, "api")["status"]["desiredReplicas"] == API_MIN_REPLICAS,
        timeout=window + 180, interval=5, message="the api HPA to scale back in",
    )  # fmt: skip
    wait_until(
        lambda: len(pods_of(cluster, dev_release, "api")) == API_MIN_REPLICAS,
        timeout=120, interval=2, message="the extra api pod to be gone",
    )  # fmt: skip
    scaled_in = time.monotonic() - load_ended
    print(f"api scaled back in {scaled_in:.0f} s after the load ended (window {window} s)")
    assert scaled_in >= window
