"""What the observability tests read: the rule files, the dashboards, and the metric names in PromQL."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHART = PROJECT_ROOT / "charts" / "platform"
RULES_DIR = CHART / "files" / "rules"
DASHBOARDS_DIR = CHART / "files" / "dashboards"
RULE_TESTS_DIR = Path(__file__).resolve().parent / "rules-tests"
RUNBOOKS_DIR = PROJECT_ROOT / "docs" / "runbooks"
RUNBOOK_BASE_URL = "https://github.com/platform-sre/platform/blob/main/docs/runbooks/"
PROMTOOL = PROJECT_ROOT / ".tools" / "bin" / "promtool"
PROMETHEUS = PROJECT_ROOT / ".tools" / "bin" / "prometheus"

SERVICES = ("auth", "api", "images")
# The namespaces the rule unit tests fill in for the chart's placeholders: the multi-namespace
# layout (global.namespaces), as templates/monitoring/_namespaces.tpl renders it.
TEST_NAMESPACES = {"auth": "auth", "api": "api", "images": "image-storage"}
PLACEHOLDER = re.compile(r"__[A-Z]+(?:_[A-Z]+)*__")
# Grafana's own variables and the dashboards' `namespace` variable, replaced by a value of the
# right kind before a query is parsed or run (the namespace of the local Prometheus test's targets).
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$namespace": "platform",
}
# Series that Prometheus makes itself rather than scrapes.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Labels that Prometheus and the Operator's ServiceMonitors attach to every scraped series
# (target labels; `endpoint` is the port name), not the exporter.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "service", "endpoint"}

# Metrics from exporters that run beside the services in the cluster and not here, with the
# exporter each comes from. Every dashboard or alert query names either one of these or a
# metric the services export (checked against a live scrape). The MinIO ones are also
# checked against a live MinIO server.
EXPORTER_METRICS = {
    "container_cpu_usage_seconds_total": "cAdvisor (kubelet /metrics/cadvisor)",
    "container_cpu_cfs_throttled_seconds_total": "cAdvisor (kubelet /metrics/cadvisor)",
    "container_memory_working_set_bytes": "cAdvisor (kubelet /metrics/cadvisor)",
    "kube_pod_container_resource_limits": "kube-state-metrics",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kube_pod_container_status_ready": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_current_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_desired_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_max_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_min_replicas": "kube-state-metrics",
    "kube_cronjob_created": "kube-state-metrics",
    "kube_cronjob_next_schedule_time": "kube-state-metrics",
    "kube_cronjob_status_last_schedule_time": "kube-state-metrics",
    "kube_cronjob_status_last_successful_time": "kube-state-metrics",
    "kube_job_failed": "kube-state-metrics",
    "kube_job_owner": "kube-state-metrics",
    "kube_job_status_start_time": "kube-state-metrics",
    "kube_job_status_completion_time": "kube-state-metrics",
    "pg_up": "postgres_exporter",
    "pg_stat_activity_count": "postgres_exporter",
    "pg_settings_max_connections": "postgres_exporter",
    "pg_stat_database_deadlocks": "postgres_exporter",
    "pg_stat_database_xact_commit": "postgres_exporter",
    "pg_stat_database_xact_rollback": "postgres_exporter",
    "pg_stat_database_tup_fetched": "postgres_exporter",
    "pg_database_size_bytes": "postgres_exporter",
    "minio_cluster_nodes_online_total": "MinIO /minio/v2/metrics/cluster",
    "minio_cluster_nodes_offline_total": "MinIO /minio/v2/metrics/cluster",
    "minio_cluster_drive_online_total": "MinIO /minio/v2/metrics/cluster",
    "minio_cluster_drive_offline_total": "MinIO /minio/v2/metrics/cluster",
    "minio_cluster_capacity_usable_free_bytes": "MinIO /minio/v2/metrics/cluster",
    "minio_cluster_capacity_usable_total_bytes": "MinIO /minio/v2/metrics/cluster",
    "minio_s3_requests_total": "MinIO /minio/v2/metrics/cluster",
    "minio_s3_requests_errors_total": "MinIO /minio/v2/metrics/cluster",
    "minio_s3_requests_4xx_errors_total": "MinIO /minio/v2/metrics/cluster",
}

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(\s*\()?")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from."""

    source: str
    expr: str


def substitute_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names an expression selects."""
    stripped = _STRING.sub('""', substitute_grafana_variables(expr))
    stripped = _GROUPING.sub(" ", stripped)
    stripped = _RANGE.sub(" ", stripped)
    stripped = re.sub(r"\{[^}]*\}", " ", stripped)
    names = set()
    for match in _IDENTIFIER.finditer(stripped):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def selector_labels(expr: str) -> dict[str, set[str]]:
    """For each metric selected with label matchers, the label names it matches on."""
    labels: dict[str, set[str]] = {}
    for metric, matchers in _SELECTOR.findall(substitute_grafana_variables(expr)):
        labels.setdefault(metric, set()).update(_MATCHER.findall(_STRING.sub('""', matchers)))
    return labels


def fill_namespaces(
    text: str, namespaces: dict[str, str] = TEST_NAMESPACES, infrastructure: str = "infrastructure"
) -> str:
    """What the chart does to a rule file or dashboard: service -> its namespace, each placeholder
    filled; `infrastructure` is where PostgreSQL, MinIO and the backup CronJobs run."""
    for service, namespace in namespaces.items():
        text = text.replace(f"__{service.upper()}_NAMESPACE__", namespace)
    text = text.replace("__INFRASTRUCTURE_NAMESPACE__", infrastructure)
    return text.replace("__PLATFORM_NAMESPACES__", "|".join(dict.fromkeys(namespaces.values())))


def rendered_rule_tests(directory: Path, namespaces: dict[str, str] = TEST_NAMESPACES) -> dict[str, Path]:
    """Each promtool unit test file, rewritten in ``directory`` to load the filled-in rule files."""
    rendered = {}
    for path in rule_files():
        copy = directory / f"rules-{path.name}"
        copy.write_text(fill_namespaces(path.read_text(), namespaces))
        rendered[path.resolve()] = copy
    tests = {}
    for path in sorted(RULE_TESTS_DIR.glob("*.yaml")):
        content = yaml.safe_load(path.read_text())
        content["rule_files"] = [
            str(rendered[(path.parent / name).resolve()]) for name in content["rule_files"]
        ]
        copy = directory / f"test-{path.name}"
        copy.write_text(yaml.safe_dump(content, sort_keys=False))
        tests[path.name] = copy
    return tests


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yaml"))


def rules() -> list[dict]:
    found = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append({**rule, "file": path.name, "group": group["name"]})
    return found


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries() -> list[Query]:
    queries = []
    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                queries.append(
                    Query(f"{path.name} panel {panel['title']!r} {target['refId']}", target["expr"])
                )
        for annotation in dashboard.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                queries.append(Query(f"{path.name} annotation {annotation['name']!r}", annotation["expr"]))
    return queries


def rule_queries() -> list[Query]:
    return [
        Query(f"{rule['file']} {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in rules()
    ]


def all_queries() -> list[Query]:
    return rule_queries() + dashboard_queries()


def service_metric_names() -> set[str]:
    """Names our queries select that only the services themselves can export."""
    names = set()
    for query in all_queries():
        names |= metric_names(query.expr)
    return {
        name
        for name in names
        if ":" not in name and name not in PROMETHEUS_SERIES and name not in EXPORTER_METRICS
    }


def owner(metric: str) -> tuple[str, ...]:
    """The services that must export ``metric``: its prefix names one, or it is common to all."""
    for service in SERVICES:
        if metric.startswith(f"{service}_"):
            return (service,)
    return SERVICES


def scraped_series(text: str) -> dict[str, set[str]]:
    """Sample name -> label names, from a /metrics body in the Prometheus text format."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series
