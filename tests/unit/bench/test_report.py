"""bench/report.py: the numbers of a run's JSON document and `python -m bench compare`."""

from __future__ import annotations

import json
import subprocess
import sys

from bench import report
from bench.measure import Pinning
from tests.conftest import PROJECT_ROOT


def _document(requests_per_second: float, cpu_ms: float) -> dict:
    document = report.new_document(Pinning(0, 1), seconds=10)
    document["scenarios"] = {
        "posts": {
            "requests_per_second": requests_per_second,
            "errors": 0,
            "download_intact": True,
            "cpu_ms_per_request": {"api": cpu_ms, "postgres": 0.5},
            "ratios": {"cpu_to_ceiling": cpu_ms / 0.5},
        }
    }
    return document


def test_the_document_says_where_and_when_it_was_measured():
    document = report.new_document(Pinning(0, 1), seconds=3)
    assert document["machine"]["cpu_count"] >= 1
    assert document["machine"]["uname"]["sysname"] == "Linux"
    assert document["machine"]["cpu_model"]
    assert document["pinning"] == {"pinned": True, "servers_cpu": 0, "load_cpu": 1}
    assert document["date"].endswith("+00:00")
    assert document["bench_seconds"] == 3


def test_the_default_path_is_a_utc_timestamp_under_run_bench(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_JSON", raising=False)
    document = {"date": "2026-11-30T06:36:01+00:00"}
    assert report.output_path(document) == PROJECT_ROOT / ".run" / "bench" / "2026-11-30T063601Z.json"
    monkeypatch.setenv("BENCH_JSON", str(tmp_path / "elsewhere.json"))
    assert report.output_path(document) == tmp_path / "elsewhere.json"


def test_numbers_are_every_number_by_its_dotted_path_and_nothing_else():
    found = report.numbers(_document(200, 2.0)["scenarios"])
    assert found == {
        "posts.requests_per_second": 200,
        "posts.errors": 0,
        "posts.cpu_ms_per_request.api": 2.0,
        "posts.cpu_ms_per_request.postgres": 0.5,
        "posts.ratios.cpu_to_ceiling": 4.0,
    }


def test_changes_are_in_percent_of_the_old_figure():
    assert report.change(200, 250) == "+25.0 %"
    assert report.change(2.0, 1.5) == "-25.0 %"
    assert report.change(0, 0) == "+0.0 %"
    assert report.change(0, 3) == "n/a"


def test_compare_prints_each_figure_side_by_side_with_its_change():
    lines = report.compare(_document(200, 2.0), _document(250, 1.0))
    assert lines[0].startswith("old: ")
    assert lines[1].startswith("new: ")
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert rows["posts.requests_per_second"] == ["200", "250", "+25.0", "%"]
    assert rows["posts.cpu_ms_per_request.api"] == ["2", "1", "-50.0", "%"]
    assert rows["posts.errors"] == ["0", "0", "+0.0", "%"]


def test_figures_in_one_run_only_are_shown_as_such():
    old, new = _document(200, 2.0), _document(200, 2.0)
    new["scenarios"]["login"] = {"requests_per_second": 9.5}
    del old["scenarios"]["posts"]["errors"]
    rows = {line.split()[0]: line for line in report.compare(old, new)[3:]}
    assert rows["login.requests_per_second"].endswith("only in new")
    assert rows["posts.errors"].endswith("only in new")


def test_python_m_bench_compare_of_a_file_with_itself_shows_no_change(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_document(200, 2.0)))
    answer = subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(path), str(path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = answer.stdout.splitlines()[3:]
    assert len(rows) == 5
    assert all(row.endswith("+0.0 %") for row in rows)


def test_an_incomplete_run_says_so_in_the_comparison():
    old, new = _document(200, 2.0), _document(200, 2.0)
    new["failed_in"] = "backup"
    lines = report.compare(old, new)
    assert "INCOMPLETE" not in lines[0]
    assert lines[1].endswith("INCOMPLETE: failed in backup")
