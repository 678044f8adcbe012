"""The Grafana dashboards: the promised set, well-formed, and every query valid PromQL."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.observability.promql import (
    DASHBOARDS_DIR,
    dashboard_files,
    dashboard_queries,
    panels,
    substitute_grafana_variables,
)

EXPECTED_DASHBOARDS = {"overview.json", "auth.json", "api.json", "images.json", "infrastructure.json"}


def load(path):
    return json.loads(path.read_text())


def test_there_is_an_overview_one_dashboard_per_service_and_an_infrastructure_one():
    assert {path.name for path in dashboard_files()} == EXPECTED_DASHBOARDS


def test_dashboard_uids_and_titles_are_unique():
    dashboards = [load(path) for path in dashboard_files()]
    assert len({d["uid"] for d in dashboards}) == len(dashboards)
    assert len({d["title"] for d in dashboards}) == len(dashboards)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_every_panel_queries_the_selectable_prometheus_data_source(path):
    dashboard = load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    graphs = [panel for panel in panels(dashboard) if panel["type"] != "row"]
    assert graphs, f"{path.name} has no panel"
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_panels_do_not_overlap(path):
    taken = set()
    for panel in panels(load(path)):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_dashboard_query_parses_as_promql(promtool, tmp_path):
    """Each query becomes a recording rule of a throwaway file that promtool must accept."""
    queries = dashboard_queries()
    rules = [
        {"record": f"dashboard:query_{index}", "expr": substitute_grafana_variables(query.expr)}
        for index, query in enumerate(queries)
    ]
    leftover = [q.source for q in queries if re.search(r"\$\w+", substitute_grafana_variables(q.expr))]
    assert not leftover, f"queries with a variable the test cannot replace: {leftover}"
    rules_file = tmp_path / "dashboard-queries.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))

    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60, check=False
    )

    if result.returncode != 0:
        # Name the panel behind each failing rule.
        failing = [
            queries[int(index)].source
            for index in re.findall(r"dashboard:query_(\d+)", result.stdout + result.stderr)
        ]
        pytest.fail(f"queries that do not parse: {failing or '?'}\n{result.stdout}{result.stderr}")
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_a_broken_query_is_caught(promtool, tmp_path):
    """The parse check above really rejects bad PromQL (it is not vacuous)."""
    rules_file = tmp_path / "broken.yaml"
    broken = {"record": "dashboard:query_0", "expr": "sum(rate(http_requests_total[5m])"}
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": [broken]}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0


def test_dashboards_directory_holds_only_dashboards():
    assert all(path.suffix == ".json" for path in DASHBOARDS_DIR.iterdir())
