"""The ceiling: bench/bare_app.py (bare Flask, a 20-item JSON page shaped like GET /api/v1/posts)
under gunicorn with the services' worker model and no access log, driven with GET /posts over 16
connections. It is what the framework and the server cost on this machine today, so the services'
figures are taken as ratios to it rather than as absolute numbers that move with the machine.

It runs twice, before and after the service scenarios, and the ratios use the mean of the two
(both are printed): a difference between them means the machine changed under the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from bench.context import Bench
from bench.measure import ProcessGroup
from devstack.wait import WaitAborted, free_port, terminate, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 16

# Read in a child process: importing the config sets PROMETHEUS_MULTIPROC_DIR in the importer's
# environment, which this process's other children must not inherit.
_READ_WORKER_MODEL = (
    "import json; from servicekit import gunicorn_conf as c; "
    "print(json.dumps({'worker_class': c.worker_class, 'workers': c.workers, 'threads': c.threads, "
    "'keepalive': c.keepalive}))"
)


def worker_model(bench: Bench) -> dict:
    """worker_class, workers, threads and keepalive as servicekit.gunicorn_conf gives them to the
    services, whose WEB_CONCURRENCY devstack sets."""
    environ = {**_environ(), "WEB_CONCURRENCY": str(bench.stack.services["api"].workers)}
    answer = subprocess.run(
        [sys.executable, "-c", _READ_WORKER_MODEL], env=environ, capture_output=True, text=True, check=True
    )
    return json.loads(answer.stdout)


def _environ() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT / 'src'}{os.pathsep}{PROJECT_ROOT}"}


def run(bench: Bench, when: str) -> list[str]:
    """Measure the ceiling; ``when`` is "before" or "after" the service scenarios."""
    model = worker_model(bench)
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="platform-bench-ceiling-")) / "gunicorn.log"
    log = log_path.open("ab")
    # Flags rather than servicekit's config file: that one also starts a metrics server, JSON
    # access logs and worker hooks, which are ours to measure, not the framework's.
    command = bench.pinning.taskset(
        bench.pinning.servers_cpu,
        [
            sys.executable, "-m", "gunicorn",
            f"--worker-class={model['worker_class']}", f"--workers={model['workers']}",
            f"--threads={model['threads']}", f"--keep-alive={model['keepalive']}",
            f"--bind=127.0.0.1:{port}", "bench.bare_app:create_app()",
        ],
    )  # fmt: skip
    process = subprocess.Popen(
        command, env=_environ(), cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/posts"

    def serving() -> bool:
        if process.poll() is not None:
            raise WaitAborted(f"the ceiling app exited: {log_path.read_text()[-2000:]}")
        return requests.get(url, timeout=2).ok

    try:
        wait_until(serving, timeout=60, message=f"the ceiling app ({log_path})")
        result = bench.load(url, connections=CONNECTIONS, groups=[ProcessGroup("ceiling", process.pid)])
    finally:
        terminate(process, log, grace_seconds=10)
    bench.record(f"ceiling_{when}", {**result.as_dict(), "worker_model": model})
    lines = [
        f"bare Flask, gunicorn {model['worker_class']} {model['workers']} workers x {model['threads']} "
        f"threads, no access log; GET /posts, {CONNECTIONS} connections",
        f"{when}: {result.summary(('ceiling',))}",
    ]
    if result.errors:
        lines.append(f"  statuses: {result.statuses}")
    return lines


def mean(bench: Bench) -> dict | None:
    """The mean of the two ceiling runs (recorded as scenario "ceiling"), or None before both ran."""
    before, after = bench.scenario("ceiling_before"), bench.scenario("ceiling_after")
    if not (before and after):
        return None
    figures = {
        "cpu_ms_per_request": round(
            (before["cpu_ms_per_request"]["ceiling"] + after["cpu_ms_per_request"]["ceiling"]) / 2, 4
        ),
        "requests_per_second": round((before["requests_per_second"] + after["requests_per_second"]) / 2, 1),
    }
    bench.record("ceiling", figures)
    return figures
