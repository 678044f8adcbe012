"""`make bench` runs `python -m bench [NAME ...]`: the benchmarks against a fresh local stack,
with the ceilings they are compared with measured in the same run, and one JSON document of the
figures. `python -m bench compare OLD.json NEW.json` prints two such documents side by side (by
default the two newest in .run/bench).

Each benchmark module bench/<name>.py of BENCHMARKS defines ``run(bench) -> list[str]``: it
measures against the running system, records its figures in the JSON document and returns the
lines to print. With names, only those run (`make bench BENCH=uploads`).

Measuring policy (bench/measure.py says more):
- With 2 or more CPUs, everything under test runs on the first (this process pins itself there
  before it starts the stack, whose processes inherit it; the ceiling app is started under
  taskset), and the load generator on the second (this process moves there once the stack runs;
  wrk runs under taskset). With one CPU nothing is pinned, and the output says so.
- The figure to trust is CPU-ms per request of each process group (api, auth, images, postgres,
  minio, ceiling), read from /proc over the wrk run; requests/s and latency are printed too.
- Ratios are to ceilings measured in the same run: the bare-Flask ceiling runs before and after
  the service benchmarks (both printed), and beside each scenario with a ratio to it, in
  alternating one-second runs that the ratios are taken from (bench/ceiling.py); the database's
  ceiling is a psycopg2 loop of the list route's query.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from bench import ceiling, ratios, report
from bench.context import Bench, BenchStack, bench_seconds
from bench.measure import Pinning

# In the order they run. The ones the ceiling brackets come first; backup comes last, since it
# drops the databases and the images bucket (and restores them).
BENCHMARKS = ("api_throughput", "database", "login", "mixed", "uploads", "backup")
BRACKETED_BY_THE_CEILING = ("api_throughput", "database", "login", "mixed")
# Selecting one of these alone still measures the ceiling: their ratios need it.
RELATIVE_TO_THE_CEILING = ("api_throughput",)
USAGE = "usage: python -m bench [NAME ...] | python -m bench compare [OLD.json NEW.json]\nnames: " + (
    ", ".join(("ceiling", *BENCHMARKS))
)

Step = tuple[str, Callable[[Bench], list[str]]]


def plan(selected: list[str]) -> list[Step]:
    """The steps to run for the names given (every benchmark when none is)."""
    wanted = set(selected) or {"ceiling", *BENCHMARKS}
    with_ceiling = "ceiling" in wanted or any(name in wanted for name in RELATIVE_TO_THE_CEILING)
    steps: list[Step] = []
    if with_ceiling:
        steps.append(("ceiling (before)", lambda bench: ceiling.run(bench, "before")))
    steps += [(name, _benchmark(name)) for name in BRACKETED_BY_THE_CEILING if name in wanted]
    if with_ceiling:
        steps.append(("ceiling (after)", lambda bench: ceiling.run(bench, "after")))
        steps.append(("ratios to the ceilings of this run", ratios.run))
    steps += [
        (name, _benchmark(name))
        for name in BENCHMARKS
        if name in wanted and name not in BRACKETED_BY_THE_CEILING
    ]
    return steps


def _benchmark(name: str) -> Callable[[Bench], list[str]]:
    return importlib.import_module(f"bench.{name}").run


def run(selected: list[str]) -> int:
    unknown = set(selected) - {"ceiling", *BENCHMARKS}
    if unknown:
        print(f"unknown benchmark {', '.join(sorted(unknown))}\n{USAGE}", file=sys.stderr)
        return 2
    steps = plan(selected)
    pinning = Pinning.for_this_machine()
    seconds = bench_seconds()
    document = report.new_document(pinning, seconds)
    print(f"== pinning: {pinning.describe()}; each wrk run {seconds:g} s (BENCH_SECONDS)", flush=True)
    stack = BenchStack()
    document["failed_in"] = "starting the stack"
    try:
        if pinning.pinned:
            # Set before the stack starts, so that every server process inherits it.
            os.sched_setaffinity(0, {pinning.servers_cpu})
        stack.start()
        if pinning.pinned:
            os.sched_setaffinity(0, {pinning.load_cpu})
        bench = Bench(stack, pinning, seconds, document)
        for title, step in steps:
            print(f"== {title}", flush=True)
            # Recorded until the step ends, so that a failed run's document says where it stopped.
            document["failed_in"] = title
            for line in step(bench):
                print(f"   {line}", flush=True)
        del document["failed_in"]
    finally:
        stack.stop()
        # Written even when a step failed: the figures of the steps before it still hold.
        print(f"== JSON: {report.write(document)}", flush=True)
    return 0


def compare(paths: list[str]) -> int:
    if not paths:
        paths = [str(path) for path in report.last_two_runs()]
    if len(paths) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    old, new = (json.loads(Path(path).read_text()) for path in paths)
    for line in report.compare(old, new):
        print(line)
    return 0


def main(arguments: list[str]) -> int:
    if arguments[:1] == ["compare"]:
        return compare(arguments[1:])
    if arguments[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    return run(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
