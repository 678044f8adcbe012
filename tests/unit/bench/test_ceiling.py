"""The ceiling measured beside a scenario (bench.ceiling.beside) and the ratios taken from it
(bench.ratios), with wrk replaced by a stand-in: what runs in which order, and what is added up."""

from __future__ import annotations

import pytest

from bench import ceiling, ratios
from bench.context import Bench
from bench.measure import LoadResult, Pinning, ProcessGroup

SCENARIO_URL = "http://127.0.0.1:1/api/v1/posts"
CEILING = ceiling.CeilingApp("http://127.0.0.1:2/posts", ProcessGroup("ceiling", 2), {})


def _result(requests: int, cpu_seconds: dict[str, float]) -> LoadResult:
    return LoadResult(
        requests=requests,
        seconds=1.0,
        errors=0,
        latency_ms={"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
        cpu_seconds=cpu_seconds,
    )


class Stack:
    """No processes: the groups are named, never read (wrk is a stand-in)."""

    services: dict = {}


class FakeBench(Bench):
    def groups(self) -> list[ProcessGroup]:
        return [ProcessGroup("api", 1)]


def _bench(seconds: float = 3) -> FakeBench:
    return FakeBench(Stack(), Pinning(None, None), seconds, {"scenarios": {}})


@pytest.fixture
def wrk_runs(monkeypatch) -> list[tuple[str, str]]:
    """(url, script) of each wrk run, in order; the scenario answers 500 requests for 0.5 s of
    api CPU a run, the ceiling 1,000 for 0.25 s of its own."""
    runs: list[tuple[str, str]] = []

    def fake_wrk(url, *, seconds, connections, groups, script="", pin_cpu=None):
        assert seconds == ceiling.ROUND_SECONDS
        runs.append((url, script))
        if url == CEILING.url:
            assert [group.name for group in groups] == ["ceiling"]
            return _result(1000, {"ceiling": 0.25})
        return _result(500, {"api": 0.5})

    monkeypatch.setattr(ceiling, "wrk", fake_wrk)
    return runs


def test_beside_alternates_one_second_runs_swapping_the_order_every_round(wrk_runs):
    ceiling.beside(_bench(seconds=3), CEILING, SCENARIO_URL, connections=16, script="-- lua")

    scenario, bare = (SCENARIO_URL, "-- lua"), (CEILING.url, "")
    # An uncounted round first, then BENCH_SECONDS rounds of each.
    assert wrk_runs == [bare, scenario, scenario, bare, bare, scenario, scenario, bare]


def test_beside_adds_up_each_sides_counted_runs_only(wrk_runs):
    paired = ceiling.beside(_bench(seconds=3), CEILING, SCENARIO_URL, connections=16)

    assert paired["rounds"] == 3
    assert paired["scenario"] == {
        "requests": 1500,
        "seconds": 3.0,
        "requests_per_second": 500.0,
        "errors": 0,
        "cpu_ms_per_request": {"api": 1.0},
    }
    assert paired["ceiling"]["requests_per_second"] == 1000.0
    assert paired["ceiling"]["cpu_ms_per_request"] == {"ceiling": 0.25}


def test_the_ratios_with_goals_are_to_the_ceiling_beside_the_scenario():
    bench = _bench()
    for when, cpu_ms, per_second in (("before", 0.4, 2000.0), ("after", 0.6, 1000.0)):
        bench.record(
            f"ceiling_{when}", {"cpu_ms_per_request": {"ceiling": cpu_ms}, "requests_per_second": per_second}
        )
    bench.record(
        "posts",
        {
            "cpu_ms_per_request": {"api": 1.5, "postgres": 0.2},
            "requests_per_second": 600.0,
            "beside_ceiling": {
                "scenario": {
                    "cpu_ms_per_request": {"api": 0.9, "postgres": 0.2},
                    "requests_per_second": 900.0,
                },
                "ceiling": {"cpu_ms_per_request": {"ceiling": 0.45}, "requests_per_second": 2000.0},
            },
        },
    )

    lines = ratios.run(bench)

    assert bench.scenario("posts")["ratios"] == {
        "cpu_to_ceiling": 2.0,
        "cpu_to_ceiling_before_after": 3.0,
        "requests_per_second_to_ceiling_percent": 45.0,
        "requests_per_second_to_ceiling_before_after_percent": 40.0,
    }
    assert (
        "posts: api 0.900 CPU-ms/req = 2.00x the ceiling's 0.450 beside it (goal at most 2x: met)"
        in "\n".join(lines)
    )


def test_a_ceiling_that_answered_nothing_beside_a_scenario_gives_no_ratio_rather_than_an_error():
    bench = _bench()
    for when in ("before", "after"):
        bench.record(
            f"ceiling_{when}", {"cpu_ms_per_request": {"ceiling": 0.5}, "requests_per_second": 1000.0}
        )
    bench.record(
        "verify",
        {
            "cpu_ms_per_request": {"auth": 1.0},
            "requests_per_second": 500.0,
            "beside_ceiling": {
                "scenario": {"cpu_ms_per_request": {"auth": 1.0}, "requests_per_second": 500.0},
                "ceiling": {"cpu_ms_per_request": {"ceiling": 0.0}, "requests_per_second": 0.0},
            },
        },
    )

    lines = ratios.run(bench)

    assert "verify: no ratio: the ceiling answered nothing beside it" in lines
    assert "ratios" not in bench.scenario("verify")
