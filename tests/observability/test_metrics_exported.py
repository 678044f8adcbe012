"""Every metric a dashboard or an alert names is one that really exists.

Names of our services are checked against a live scrape of each service after traffic of
every kind; exporter names against the explicit list in promql.EXPORTER_METRICS (and the
MinIO ones against a live MinIO server).
"""

from __future__ import annotations

import re

import pytest
import requests

from devstack.wait import WaitTimeout, wait_until
from tests.observability.conftest import STARTED_SERVICES
from tests.observability.promql import (
    EXPORTER_METRICS,
    PROMETHEUS_SERIES,
    SERVICES,
    TARGET_LABELS,
    all_queries,
    metric_names,
    owner,
    scraped_series,
    selector_labels,
    service_metric_names,
)


def scrape(url: str) -> dict[str, set[str]]:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return scraped_series(response.text)


def test_metric_names_are_read_from_promql():
    expr = (
        "sum by (job, le) ("
        'rate(flask_http_request_duration_seconds_bucket{job=~"a|b",route!~"/x"}[$__rate_interval]))'
        ' / on (job) group_left job:http_requests:rate5m > bool 0.5 or absent(up{job="auth"})'
    )
    assert metric_names(expr) == {
        "flask_http_request_duration_seconds_bucket",
        "job:http_requests:rate5m",
        "up",
    }
    assert selector_labels(expr) == {
        "flask_http_request_duration_seconds_bucket": {"job", "route"},
        "up": {"job"},
    }


# The metrics servicekit gives every service.
SERVICEKIT_PREFIXES = ("flask_http_", "http_", "db_pool_", "db_reads_", "dependency_up", "gunicorn_")


def test_every_exporter_metric_listed_is_used_and_every_name_used_is_accounted_for():
    used = set()
    for query in all_queries():
        used |= metric_names(query.expr)
    assert set(EXPORTER_METRICS) <= used, f"listed but unused: {set(EXPORTER_METRICS) - used}"
    unknown = {
        name
        for name in used - set(EXPORTER_METRICS) - PROMETHEUS_SERIES
        if ":" not in name
        and not name.startswith(SERVICEKIT_PREFIXES)
        and not name.startswith(tuple(f"{service}_" for service in SERVICES))
    }
    assert not unknown, f"names that belong to no service and no listed exporter: {unknown}"


@pytest.mark.integration
def test_every_service_metric_named_by_a_dashboard_or_alert_is_exported(platform_stack, traffic):
    running = STARTED_SERVICES
    scraped = {name: scrape(platform_stack.services[name].metrics_url) for name in running}
    missing = []
    for metric in sorted(service_metric_names()):
        for service in owner(metric):
            if service in running and metric not in scraped[service]:
                missing.append(f"{metric} (expected from {service})")
    assert not missing, f"named in dashboards or alerts but not exported: {missing}"


# Series the brute-force runbook reads that no dashboard panel shows, with the label values it uses.
BRUTE_FORCE_SERIES = {
    "auth": {
        "auth_logins_total": ("outcome", {"success", "failure", "invalid", "throttled"}),
        "auth_bcrypt_computations_total": ("operation", {"hash", "check"}),
    },
    "api": {"api_rate_limited_total": ("scope", {"login", "register"})},
}


@pytest.mark.integration
def test_the_login_throttling_and_rate_limit_series_are_exported(platform_stack, traffic):
    for service, metrics in BRUTE_FORCE_SERIES.items():
        response = requests.get(f"{platform_stack.services[service].metrics_url}/metrics", timeout=10)
        for metric, (label, values) in metrics.items():
            exported = set(re.findall(rf'^{metric}{{{label}="([^"]+)"}} ', response.text, re.MULTILINE))
            assert values <= exported, (
                f"{service} exports {metric} for {sorted(exported)}, not {sorted(values)}"
            )
    throttled = re.search(
        r'^auth_logins_total{outcome="throttled"} (\S+)$',
        requests.get(f"{platform_stack.services['auth'].metrics_url}/metrics", timeout=10).text,
        re.MULTILINE,
    )
    assert throttled and float(throttled.group(1)) >= 1


@pytest.mark.integration
def test_every_label_a_query_matches_on_is_exported_with_the_metric(platform_stack, traffic):
    running = STARTED_SERVICES
    labels_of: dict[str, set[str]] = {}
    for name in running:
        for metric, labels in scrape(platform_stack.services[name].metrics_url).items():
            labels_of.setdefault(metric, set()).update(labels)
    wrong = []
    for query in all_queries():
        for metric, labels in selector_labels(query.expr).items():
            if metric not in labels_of:
                continue  # exporter metrics and recording rules: checked elsewhere
            unknown = labels - TARGET_LABELS - labels_of[metric]
            if unknown:
                wrong.append(f"{query.source}: {metric} has no label {sorted(unknown)}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.integration
def test_no_service_label_is_one_prometheus_attaches_so_no_scrape_needs_honor_labels(platform_stack, traffic):
    clashing = []
    for name in STARTED_SERVICES:
        for metric, labels in scrape(platform_stack.services[name].metrics_url).items():
            if labels & TARGET_LABELS:
                clashing.append(f"{name}: {metric} {sorted(labels & TARGET_LABELS)}")
    assert not clashing, "\n".join(clashing)


@pytest.mark.integration
def test_minio_exports_the_metrics_the_dashboards_and_alerts_use(platform_stack, traffic):
    wanted = {name for name, source in EXPORTER_METRICS.items() if source.startswith("MinIO")}
    endpoint = platform_stack.minio.endpoint

    missing: set[str] = set()

    def exported() -> bool:
        found = set()
        # The path the chart's ServiceMonitor scrapes. MinIO caches it for a few seconds,
        # so request counters show up a little after the requests.
        response = requests.get(f"{endpoint}/minio/v2/metrics/cluster", timeout=10)
        response.raise_for_status()
        found |= set(scraped_series(response.text))
        missing.clear()
        missing.update(wanted - found)
        return not missing

    try:
        wait_until(exported, timeout=30, interval=1, message="MinIO to export what the dashboards use")
    except WaitTimeout:
        pytest.fail(f"MinIO does not export {sorted(missing)}")
