"""The Grafana dashboards: the promised set, well-formed, and every query valid PromQL."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.observability.promql import (
    DASHBOARDS_DIR,
    PLACEHOLDER,
    dashboard_files,
    dashboard_queries,
    fill_namespaces,
    metric_names,
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


# What selects the platform's own series: its jobs, its containers, its autoscalers, its recording rules.
PLATFORM_SELECTOR = re.compile(r"\b(job|container|horizontalpodautoscaler)\s*=")
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
SCOPE = 'namespace=~"$namespace"'


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_the_namespace_variable_offers_only_the_release_namespaces(path):
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    namespace = variables["namespace"]
    assert namespace["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert 'namespace=~"__PLATFORM_NAMESPACES__"' in namespace["query"]
    assert namespace["multi"] and namespace["includeAll"]
    # "All" is the release's namespaces, never every namespace of the cluster.
    assert namespace["allValue"] == "__PLATFORM_NAMESPACES__"
    assert namespace["current"]["value"] == ["$__all"]
    filled = json.loads(fill_namespaces(path.read_text()))
    assert not PLACEHOLDER.findall(json.dumps(filled))


def test_every_query_of_the_platform_series_is_scoped_to_the_namespace_variable():
    """Another team's `api` job, container or autoscaler never shows up in the platform's panels."""
    unscoped = []
    for query in dashboard_queries():
        selected = {name for name, _ in SELECTOR.findall(query.expr)}
        unscoped += [
            f"{query.source}: {name}"
            for name, matchers in SELECTOR.findall(query.expr)
            if (":" in name or PLATFORM_SELECTOR.search(matchers)) and SCOPE not in matchers
        ]
        unscoped += [
            f"{query.source}: {name}"
            for name in metric_names(query.expr)
            if ":" in name and name not in selected
        ]
    assert not unscoped, "\n".join(unscoped)


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
    broken = {"record": "dashboard:query_0", "expr": "sum(rate(flask_http_request_total[5m])"}
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": [broken]}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0


def test_dashboards_directory_holds_only_dashboards():
    assert all(path.suffix == ".json" for path in DASHBOARDS_DIR.iterdir())
