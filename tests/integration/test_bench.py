"""The README's `make bench` and `make bench-compare`, run for real against a fresh stack with
1-second wrk runs and a small backup data set: every scenario is in the JSON document with its
throughput and its ratios, the single-route scenarios without errors, and comparing the document
with itself shows no change. Figures, not timed tests: no goal is asserted here."""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.readme import readme_has

# The README's commands, run as written (`make bench` installs every tool first, then runs
# `python -m bench`).
BENCH_COMMAND = readme_has("make bench").split()
COMPARE_COMMAND = readme_has("make bench-compare").split()
BENCH_TIMEOUT_SECONDS = 900

# scenario -> where its main figure (its throughput; the backup's duration) is in the document
HEADLINE_FIGURE = {
    "ceiling_before": ("requests_per_second",),
    "ceiling_after": ("requests_per_second",),
    "ceiling": ("requests_per_second",),
    "posts": ("requests_per_second",),
    "posts_my": ("requests_per_second",),
    "verify": ("requests_per_second",),
    "auth_latency": ("requests_per_second",),
    "database": ("queries_per_second",),
    "login": ("requests_per_second",),
    "mixed": ("requests_per_second",),
    "uploads": ("concurrent", "requests_per_second"),
    "backup": ("backup_run_seconds",),
}
RATIOS = {
    "posts": (
        "cpu_to_ceiling",
        "cpu_to_ceiling_before_after",
        "requests_per_second_to_ceiling_percent",
        "requests_per_second_to_ceiling_before_after_percent",
        "postgres_cpu_to_database_ceiling",
    ),
    "posts_my": ("cpu_to_ceiling", "cpu_to_ceiling_before_after"),
    "verify": ("cpu_to_ceiling", "cpu_to_ceiling_before_after"),
    "uploads": ("gateway_to_direct_percent",),
}
SINGLE_ROUTE = ("ceiling_before", "ceiling_after", "posts", "posts_my", "verify", "auth_latency", "login")


def _figure(document: dict, scenario: str, path: tuple[str, ...]):
    value = document["scenarios"][scenario]
    for key in path:
        value = value[key]
    return value


def _positive_number(value) -> bool:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def bench_run() -> tuple[Path, str]:
    """The JSON document of one whole run, and what the run printed."""
    environ = {
        **os.environ,
        "BENCH_SECONDS": "1",
        "BENCH_BACKUP_POSTS": "200",
        "BENCH_BACKUP_IMAGES_MB": "4",
    }
    environ.pop("BENCH_JSON", None)
    answer = subprocess.run(
        BENCH_COMMAND,
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_SECONDS,
    )
    assert answer.returncode == 0, answer.stdout[-5000:] + answer.stderr[-5000:]
    path = Path(re.search(r"^== JSON: (.+)$", answer.stdout, re.M).group(1))
    yield path, answer.stdout
    path.unlink()


def test_the_run_prints_where_its_json_went_and_how_it_pinned(bench_run):
    path, output = bench_run
    assert path.parent == PROJECT_ROOT / ".run" / "bench"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}Z\.json", path.name)
    assert re.search(r"^== pinning: (servers .* on CPU \d+|one CPU: nothing pinned)", output, re.M)


def test_every_scenario_is_in_the_json_with_a_positive_main_figure(bench_run):
    document = json.loads(bench_run[0].read_text())
    assert set(document["scenarios"]) == set(HEADLINE_FIGURE)
    for scenario, path in HEADLINE_FIGURE.items():
        assert _positive_number(_figure(document, scenario, path)), (scenario, path)


def test_every_ratio_is_a_number(bench_run):
    document = json.loads(bench_run[0].read_text())
    for scenario, names in RATIOS.items():
        ratios = document["scenarios"][scenario]["ratios"]
        for name in names:
            assert _positive_number(ratios[name]), (scenario, name, ratios)


def test_the_single_route_scenarios_have_no_errors(bench_run):
    document = json.loads(bench_run[0].read_text())
    for scenario in SINGLE_ROUTE:
        figures = document["scenarios"][scenario]
        assert figures["errors"] == 0, (scenario, figures["statuses"])
    assert document["scenarios"]["uploads"]["concurrent"]["errors"] == 0
    assert document["scenarios"]["uploads"]["download_intact"] is True


def test_each_ratio_scenario_ran_beside_the_ceiling_for_bench_seconds_without_errors(bench_run):
    document = json.loads(bench_run[0].read_text())
    for scenario in ("posts", "posts_my", "verify"):
        paired = document["scenarios"][scenario]["beside_ceiling"]
        assert paired["rounds"] == 1, scenario
        for side in ("scenario", "ceiling"):
            assert paired[side]["errors"] == 0, (scenario, side)
            assert _positive_number(paired[side]["requests_per_second"]), (scenario, side)


def test_every_request_of_the_auth_latency_run_cost_the_gateway_a_call_to_auth(bench_run):
    figures = json.loads(bench_run[0].read_text())["scenarios"]["auth_latency"]
    assert figures["requests"] > 0
    # At least: a request wrk gave up on when the run ended may have made its call too.
    assert figures["auth_calls"] >= figures["requests"], figures


def test_the_large_upload_is_broken_down_into_the_servers_cpu_and_the_image_check(bench_run):
    figures = json.loads(bench_run[0].read_text())["scenarios"]["uploads"]
    assert figures["gateway_cpu_ms_per_upload"]["images"] > 0, figures
    assert figures["direct_cpu_ms_per_upload"]["minio"] > 0, figures
    assert _positive_number(figures["image_check_seconds"])


def test_the_json_says_where_it_was_measured(bench_run):
    document = json.loads(bench_run[0].read_text())
    assert "failed_in" not in document
    assert document["machine"]["cpu_count"] >= 1
    assert document["machine"]["uname"]["sysname"] == "Linux"
    assert document["pinning"]["pinned"] == (len(os.sched_getaffinity(0)) >= 2)
    assert document["bench_seconds"] == 1


def test_compare_of_the_last_two_runs_a_run_and_its_copy_shows_no_change(bench_run):
    path = bench_run[0]
    # A copy named a second later: the newest two runs are then the run and itself.
    stamp = datetime.datetime.strptime(path.stem, "%Y-%m-%dT%H%M%SZ") + datetime.timedelta(seconds=1)
    copy = path.with_name(f"{stamp:%Y-%m-%dT%H%M%SZ}.json")
    shutil.copyfile(path, copy)
    try:
        answer = subprocess.run(COMPARE_COMMAND, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    finally:
        copy.unlink()
    rows = [row for row in answer.stdout.splitlines() if row.endswith(" %")]
    assert len(rows) > 50
    assert all(row.endswith(" +0.0 %") for row in rows), [row for row in rows if not row.endswith("+0.0 %")]
