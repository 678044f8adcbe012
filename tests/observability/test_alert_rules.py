"""The alert and recording rules: valid for Prometheus, unit-tested, and documented."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.observability.promql import (
    PLACEHOLDER,
    RULE_TESTS_DIR,
    RUNBOOK_BASE_URL,
    RUNBOOKS_DIR,
    alerts,
    fill_namespaces,
    recorded_names,
    rendered_rule_tests,
    rule_files,
)


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_rules_file_passes_promtool_check(promtool, path):
    result = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def rule_test_files():
    return sorted(RULE_TESTS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_rule_unit_tests_pass(promtool, path, tmp_path):
    """On the rule files as the chart renders them, with the namespaces filled in."""
    rendered = rendered_rule_tests(tmp_path)[path.name]
    result = run(promtool, "test", "rules", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_rules_files_name_only_the_namespace_placeholders_the_chart_fills(path):
    assert not PLACEHOLDER.findall(fill_namespaces(path.read_text()))


def test_every_rules_file_has_unit_tests():
    tested = set()
    for path in rule_test_files():
        for rule_file in yaml.safe_load(path.read_text())["rule_files"]:
            tested.add((path.parent / rule_file).resolve())
    assert {path.resolve() for path in rule_files()} <= tested


def _alert_expectations() -> dict[str, dict[str, int]]:
    seen: dict[str, dict[str, int]] = {}
    for path in rule_test_files():
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                counts = seen.setdefault(check["alertname"], {"fires": 0, "quiet": 0})
                counts["fires" if check.get("exp_alerts") else "quiet"] += 1
    return seen


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_every_alert_is_tested_firing_and_staying_quiet(alert):
    expectations = _alert_expectations().get(alert["alert"], {"fires": 0, "quiet": 0})
    assert expectations["fires"] >= 1, f"no unit test shows {alert['alert']} firing"
    assert expectations["quiet"] >= 1, f"no unit test shows {alert['alert']} staying quiet"


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_every_alert_has_severity_summary_description_and_runbook(alert):
    assert alert["labels"]["severity"] in ("critical", "warning")
    annotations = alert["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_BASE_URL), url
    runbook = RUNBOOKS_DIR / url.removeprefix(RUNBOOK_BASE_URL)
    assert runbook.is_file(), f"{alert['alert']} links to {runbook}, which does not exist"
    text = runbook.read_text()
    assert text.startswith(f"# {alert['alert']}\n"), f"{runbook.name} does not name the alert it serves"
    assert f"severity: **{alert['labels']['severity']}**" in text
    assert f"files/rules/{alert['file']}" in text


def test_every_runbook_serves_an_alert():
    linked = {alert["annotations"]["runbook_url"].removeprefix(RUNBOOK_BASE_URL) for alert in alerts()}
    # Restore.md is the procedure after data loss, which the backup alerts' runbooks point to.
    assert {path.name for path in RUNBOOKS_DIR.glob("*.md")} - {"README.md", "Restore.md"} == linked


def test_alert_names_are_unique():
    names = [alert["alert"] for alert in alerts()]
    assert len(names) == len(set(names))


def test_every_recording_rule_used_is_defined():
    from tests.observability.promql import all_queries, metric_names

    used = set()
    for query in all_queries():
        used |= {name for name in metric_names(query.expr) if ":" in name}
    assert used <= recorded_names(), used - recorded_names()


def test_slo_windows_beyond_5m_are_sums_of_the_recorded_5m_rates():
    """Only the 5-minute rates read the raw counters; a 3-day window never does."""
    from tests.observability.promql import rules

    slo = {
        rule["record"]: rule["expr"] for rule in rules() if rule["file"] == "slo.yaml" and "record" in rule
    }
    reading_raw = {name for name, expr in slo.items() if "flask_http_request_duration_seconds_count" in expr}
    assert reading_raw == {"job:slo_requests:rate5m", "job:slo_errors:rate5m"}
    windows = [name.rsplit("ratio_rate", 1)[1] for name in slo if "ratio_rate" in name]
    assert windows == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    for window in windows[1:]:
        expr = " ".join(slo[f"job:slo_errors_per_request:ratio_rate{window}"].split())
        errors, requests = (
            f"sum_over_time(job:slo_{name}:rate5m[{window}])" for name in ("errors", "requests")
        )
        assert expr == f"{errors} / {requests}"
