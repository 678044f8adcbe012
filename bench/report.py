"""The JSON document every run writes, and the comparison of two of them.

One document per run: the machine (os.uname(), CPU model, CPU count), the pinning, the UTC date,
the git commit when there is one, BENCH_SECONDS, and each scenario's figures and ratios. It goes
to $BENCH_JSON, or by default to .run/bench/<UTC timestamp>.json. A run that failed still writes
the figures it had, with "failed_in" naming the step that failed.

`python -m bench compare OLD.json NEW.json` prints every number of the two side by side with the
change in percent.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

from bench.measure import Pinning

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def new_document(pinning: Pinning, seconds: float) -> dict:
    now = datetime.datetime.now(datetime.UTC)
    uname = os.uname()
    return {
        "date": now.isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": {
            "uname": {
                "sysname": uname.sysname,
                "nodename": uname.nodename,
                "release": uname.release,
                "version": uname.version,
                "machine": uname.machine,
            },
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "pinning": {
            "pinned": pinning.pinned,
            "servers_cpu": pinning.servers_cpu,
            "load_cpu": pinning.load_cpu,
        },
        "bench_seconds": seconds,
        "scenarios": {},
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return answer.stdout.strip() if answer.returncode == 0 else None


RUNS_DIR = PROJECT_ROOT / ".run" / "bench"


def output_path(document: dict) -> Path:
    """$BENCH_JSON, or .run/bench/<UTC timestamp>.json."""
    if os.environ.get("BENCH_JSON"):
        return Path(os.environ["BENCH_JSON"])
    stamp = document["date"].replace(":", "").replace("+0000", "Z")
    return RUNS_DIR / f"{stamp}.json"


def last_two_runs() -> list[Path]:
    """The two newest documents in .run/bench, older first (their names are UTC timestamps)."""
    return sorted(RUNS_DIR.glob("*.json"))[-2:]


def write(document: dict) -> Path:
    path = output_path(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def numbers(value, prefix: str = "") -> dict[str, float]:
    """Every number in a document, by its dotted path (scenarios.posts.requests_per_second)."""
    found: dict[str, float] = {}
    if isinstance(value, dict):
        for key, inner in value.items():
            found.update(numbers(inner, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found[prefix] = value
    return found


def change(old: float, new: float) -> str:
    if old == new:
        return "+0.0 %"
    if old == 0:
        return "n/a"
    return f"{(new - old) / abs(old) * 100:+.1f} %"


def compare(old: dict, new: dict) -> list[str]:
    """The lines `python -m bench compare` prints: where each run was made, then every figure of
    the scenarios side by side."""
    lines = []
    for label, document in (("old", old), ("new", new)):
        machine = document.get("machine", {})
        pinning = "pinned" if document.get("pinning", {}).get("pinned") else "not pinned"
        lines.append(
            f"{label}: {document.get('date')}, commit {(document.get('git_commit') or 'unknown')[:12]}, "
            f"{machine.get('cpu_model')} x {machine.get('cpu_count')}, {pinning}, "
            f"BENCH_SECONDS={document.get('bench_seconds')}"
            + (f", INCOMPLETE: failed in {document['failed_in']}" if "failed_in" in document else "")
        )
    before = numbers(old.get("scenarios", {}))
    after = numbers(new.get("scenarios", {}))
    # In the new run's order (the order the scenarios ran), then what only the old one has.
    names = [*after, *(name for name in before if name not in after)]
    width = max((len(name) for name in names), default=10)
    lines.append(f"{'figure':<{width}}  {'old':>12}  {'new':>12}  change")
    for name in names:
        if name not in after:
            lines.append(f"{name:<{width}}  {before[name]:>12g}  {'-':>12}  only in old")
        elif name not in before:
            lines.append(f"{name:<{width}}  {'-':>12}  {after[name]:>12g}  only in new")
        else:
            difference = change(before[name], after[name])
            lines.append(f"{name:<{width}}  {before[name]:>12g}  {after[name]:>12g}  {difference}")
    return lines
