"""bench/__main__.py: which steps a run takes, in which order."""

from __future__ import annotations

from bench.__main__ import main, plan


def _titles(selected: list[str]) -> list[str]:
    return [title for title, _ in plan(selected)]


def test_a_whole_run_brackets_the_service_benchmarks_with_the_ceiling_and_ends_with_backup():
    assert _titles([]) == [
        "ceiling (before)",
        "api_throughput",
        "database",
        "login",
        "mixed",
        "ceiling (after)",
        "ratios to the ceilings of this run",
        "uploads",
        "backup",
    ]


def test_a_benchmark_whose_ratios_need_the_ceiling_brings_it_along():
    assert _titles(["api_throughput"]) == [
        "ceiling (before)",
        "api_throughput",
        "ceiling (after)",
        "ratios to the ceilings of this run",
    ]


def test_one_benchmark_that_needs_no_ceiling_runs_alone():
    assert _titles(["uploads"]) == ["uploads"]
    assert _titles(["backup"]) == ["backup"]


def test_an_unknown_name_is_refused_before_anything_starts(capsys):
    assert main(["api"]) == 2
    assert "unknown benchmark api" in capsys.readouterr().err
