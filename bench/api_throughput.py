"""Requests per second through the api gateway, and what its calls to auth cost.

- GET /api/v1/posts (public: one indexed query) and GET /api/v1/posts/my (authenticated: the
  token checked through the auth service, then mostly answered from the token cache), each
  driven for a fixed time by load processes separate from the servers, over keep-alive
  connections to 127.0.0.1.
- The api workers' resident memory before each scenario and at its peak (VmHWM, reset first).
- The gateway -> auth POST /verify latency, as the api itself measured it
  (api_upstream_request_duration_seconds{target="auth"}), from requests whose token was not
  yet cached.

On a small machine the load processes compete with the servers for the same cores, so these
figures are a floor for what the service does with the machine to itself.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import requests

LOAD_PROCESSES = 2
CONNECTIONS_PER_PROCESS = 8
SECONDS_PER_SCENARIO = 8.0
POSTS = 50
FRESH_TOKENS = 40
PASSWORD = "bench password 1"  # noqa: S105 - a throwaway account on a throwaway stack


def run(stack) -> list[str]:
    service = stack.services["api"]
    api = service.url
    headers = _user_headers(api, "bench-writer")
    for i in range(POSTS):
        requests.post(
            f"{api}/api/v1/posts", json={"content": f"post number {i}"}, headers=headers, timeout=10
        )

    lines = []
    for label, path, auth in (
        ("GET /api/v1/posts (public)", "/api/v1/posts", None),
        ("GET /api/v1/posts/my (bearer token)", "/api/v1/posts/my", headers["Authorization"]),
    ):
        rss_before = service.rss_kib()
        peaks_reset = service.reset_peaks()
        result = _drive(api, path, auth)
        peaks = service.peak_rss_kib()
        lines.append(
            f"{label}: {result['rps']:.0f} req/s over {result['seconds']:.1f} s "
            f"({LOAD_PROCESSES} load processes x {CONNECTIONS_PER_PROCESS} connections; "
            f"{result['requests']} requests, {result['errors']} not 200; "
            f"latency p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms)"
        )
        lines.append(f"  api workers' memory: {_memory_line(rss_before, peaks, peaks_reset)}")
    lines += _auth_call_latency(api, service.metrics_url)
    return lines


def _memory_line(rss_before: dict[int, int], peaks: dict[int, int], peaks_reset: bool) -> str:
    since = "during the run" if peaks_reset else "since start (the kernel refused a reset)"
    return "; ".join(
        f"worker {pid} RSS {rss_before[pid] / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB {since}"
        if pid in rss_before
        else f"worker {pid} (started during the run) peak {peak / 1024:.0f} MiB"
        for pid, peak in peaks.items()
    )


def _user_headers(api: str, username: str) -> dict[str, str]:
    body = {"username": username, "password": PASSWORD}
    requests.post(f"{api}/api/v1/auth/register", json=body, timeout=10)  # 409 on a second run is fine
    token = requests.post(f"{api}/api/v1/auth/login", json=body, timeout=10).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _drive(api: str, path: str, authorization: str | None) -> dict:
    """Run the load processes at once and add up what they report."""
    command = [sys.executable, __file__, api, path, str(SECONDS_PER_SCENARIO), str(CONNECTIONS_PER_PROCESS)]
    env = {**os.environ, "BENCH_AUTHORIZATION": authorization or ""}
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True) for _ in range(LOAD_PROCESSES)
    ]
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=SECONDS_PER_SCENARIO + 60)
        reports.append(json.loads(out))
    latencies = sorted(ms for report in reports for ms in report["latencies_ms"])
    requests_done = sum(report["requests"] for report in reports)
    seconds = max(report["seconds"] for report in reports)
    return {
        "requests": requests_done,
        "errors": sum(report["errors"] for report in reports),
        "seconds": seconds,
        "rps": requests_done / seconds,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
    }


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))] if values else float("nan")


def _auth_samples(metrics_url: str) -> tuple[float, float, dict[float, float]]:
    # The api's metrics port (METRICS_PORT), not the port the requests go to.
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    total = count = 0.0
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if 'target="auth"' not in line or not line.startswith("api_upstream_request_duration_seconds"):
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("api_upstream_request_duration_seconds_sum"):
            total = value
        elif line.startswith("api_upstream_request_duration_seconds_count"):
            count = value
        elif match := re.search(r'le="([^"]+)"', line):
            buckets[float(match.group(1))] = value
    return total, count, buckets


def _auth_call_latency(api: str, metrics_url: str) -> list[str]:
    """Each request with a token the gateway has not seen costs one POST /verify to auth."""
    tokens = [_user_headers(api, "bench-reader")["Authorization"] for _ in range(FRESH_TOKENS)]
    total_before, count_before, buckets_before = _auth_samples(metrics_url)
    client_ms = []
    for authorization in tokens:
        started = time.perf_counter()
        requests.get(f"{api}/api/v1/posts/my?limit=1", headers={"Authorization": authorization}, timeout=10)
        client_ms.append((time.perf_counter() - started) * 1000)
    total, count, buckets = _auth_samples(metrics_url)
    calls = count - count_before
    if calls <= 0:
        return ["gateway -> auth: no calls recorded"]
    mean_ms = (total - total_before) / calls * 1000
    within = {le: (buckets[le] - buckets_before.get(le, 0)) / calls for le in sorted(buckets)}
    p95_bound = next((le for le, share in within.items() if share >= 0.95), float("inf"))
    return [
        f"gateway -> auth POST /verify: mean {mean_ms:.1f} ms over {calls:.0f} calls, "
        f"95% within {p95_bound * 1000:.0f} ms (the api's own histogram)",
        f"authenticated request with an uncached token, as the client sees it: "
        f"p50 {_percentile(sorted(client_ms), 0.5):.1f} ms",
    ]


# -- the load process ------------------------------------------------------------------------
def _load(api: str, path: str, seconds: float, connections: int) -> dict:
    """Keep-alive GETs from ``connections`` threads until the time is up; report counts."""
    address = urlsplit(api)
    authorization = os.environ.get("BENCH_AUTHORIZATION")
    headers = {"Authorization": authorization} if authorization else {}
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    totals = {"requests": 0, "errors": 0, "latencies_ms": []}

    def worker() -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        done, errors, latencies = 0, 0, []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            done += 1
            errors += not ok
        connection.close()
        with lock:
            totals["requests"] += done
            totals["errors"] += errors
            totals["latencies_ms"] += latencies

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals["seconds"] = time.monotonic() - started
    return totals


if __name__ == "__main__":
    target, route, duration, threads_wanted = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(_load(target, route, duration, threads_wanted)))
