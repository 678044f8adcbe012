"""The ceiling: bench/bare_app.py (bare Flask, a 20-item JSON page shaped like GET /api/v1/posts)
under gunicorn with the services' worker model and no access log, driven with GET /posts over 16
connections. It is what the framework and the server cost on this machine today, so the services'
figures are taken as ratios to it rather than as absolute numbers that move with the machine.

It runs twice on its own, before and after the service scenarios (both printed: a difference
between them means the machine changed under the run), and once more beside each scenario that
has a ratio to it, in alternating one-second runs (beside): the ratios are taken from those.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.context import Bench
from bench.measure import LoadResult, ProcessGroup, wrk
from devstack.wait import WaitAborted, free_port, terminate, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 16
# wrk's shortest run; each side gets BENCH_SECONDS of them in a paired measurement (beside).
ROUND_SECONDS = 1

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


@dataclass(frozen=True)
class CeilingApp:
    url: str
    group: ProcessGroup
    model: dict


@contextlib.contextmanager
def serving(bench: Bench) -> Iterator[CeilingApp]:
    """The ceiling app under gunicorn on the servers' CPU, from the start of the block to its end."""
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

    def answering() -> bool:
        if process.poll() is not None:
            raise WaitAborted(f"the ceiling app exited: {log_path.read_text()[-2000:]}")
        return requests.get(url, timeout=2).ok

    try:
        wait_until(answering, timeout=60, message=f"the ceiling app ({log_path})")
        yield CeilingApp(url, ProcessGroup("ceiling", process.pid), model)
    finally:
        terminate(process, log, grace_seconds=10)


def run(bench: Bench, when: str) -> list[str]:
    """Measure the ceiling; ``when`` is "before" or "after" the service scenarios."""
    with serving(bench) as app:
        result = bench.load(app.url, connections=CONNECTIONS, groups=[app.group])
    model = app.model
    bench.record(f"ceiling_{when}", {**result.as_dict(), "worker_model": model})
    lines = [
        f"bare Flask, gunicorn {model['worker_class']} {model['workers']} workers x {model['threads']} "
        f"threads, no access log; GET /posts, {CONNECTIONS} connections",
        f"{when}: {result.summary(('ceiling',))}",
    ]
    if result.errors:
        lines.append(f"  statuses: {result.statuses}")
    return lines


def beside(bench: Bench, app: CeilingApp, url: str, *, connections: int, script: str = "") -> dict:
    """``url`` (driven with ``script``) and the ceiling app in alternating one-second wrk runs,
    BENCH_SECONDS of each after one uncounted round, the order swapped every round: CPU-ms per
    request and requests/s of each side over the same stretch of time.

    What the machine does meanwhile (someone else's work, the host's) then weighs on both sides
    alike. The ceiling runs before and after the scenarios are minutes apart, and were seen to
    differ by 2x in requests/s on the shared development machine; a ratio to their mean moved
    with them.
    """
    sides = {
        "scenario": (url, script, bench.groups()),
        "ceiling": (app.url, "", [app.group]),
    }
    results: dict[str, list[LoadResult]] = {side: [] for side in sides}
    rounds = max(1, round(bench.seconds))
    # Round -1 is not counted: it warms up whichever side has not run yet (a ceiling app just started).
    for number in range(-1, rounds):
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for side in order:
            target, lua, groups = sides[side]
            result = wrk(
                target,
                seconds=ROUND_SECONDS,
                connections=connections,
                groups=groups,
                script=lua,
                pin_cpu=bench.pinning.load_cpu,
            )
            if number >= 0:
                results[side].append(result)
    return {"rounds": rounds, "round_seconds": ROUND_SECONDS} | {
        side: totals(side_results) for side, side_results in results.items()
    }


def totals(results: list[LoadResult]) -> dict:
    """Requests, errors, requests/s and CPU-ms per request of each group over several wrk runs."""
    requests_answered = sum(result.requests for result in results)
    seconds = sum(result.seconds for result in results)
    cpu_seconds: dict[str, float] = {}
    for result in results:
        for group, used in result.cpu_seconds.items():
            cpu_seconds[group] = cpu_seconds.get(group, 0.0) + used
    return {
        "requests": requests_answered,
        "seconds": round(seconds, 3),
        "requests_per_second": round(requests_answered / seconds, 1) if seconds else 0.0,
        "errors": sum(result.errors for result in results),
        "cpu_ms_per_request": {
            group: round(used * 1000 / max(requests_answered, 1), 3) for group, used in cpu_seconds.items()
        },
    }


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
