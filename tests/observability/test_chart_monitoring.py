"""The chart's monitoring objects: rules, dashboards and alert routing, as rendered by helm."""

from __future__ import annotations

import json
import re
import subprocess

import jsonschema
import pytest
import yaml

from tests.charts.conftest import AS_IF_INSTALLED, CHART, helm, mode_args, prepare_dependencies
from tests.charts.test_render import CRD_DIR_RELATIVE, crd_schemas, strict
from tests.observability.promql import (
    PLACEHOLDER,
    PROJECT_ROOT,
    RUNBOOK_BASE_URL,
    SERVICES,
    TEST_NAMESPACES,
    alerts,
    dashboard_files,
    fill_namespaces,
    rule_files,
)

SECRET = "platform-alerting"
MONITORING_ON = [
    "--set", "monitoring.enabled=true",
    "--set", "monitoring.alertmanager.enabled=true",
    "--set", f"monitoring.alertmanager.existingSecret={SECRET}",
]  # fmt: skip


@pytest.fixture(scope="session")
def chart():
    prepare_dependencies()
    return CHART


def render(chart, *args: str) -> list[dict]:
    result = helm("template", "platform", str(chart), "--namespace", "platform", *AS_IF_INSTALLED, *args)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


@pytest.fixture(scope="session")
def multi(chart) -> list[dict]:
    return render(chart, *MONITORING_ON, *mode_args("default", "multi"))


@pytest.fixture(scope="session")
def schemas(chart) -> dict:
    return {key: strict(schema) for key, schema in crd_schemas(chart / "charts" / CRD_DIR_RELATIVE).items()}


def test_nothing_of_monitoring_is_rendered_while_monitoring_is_off(chart):
    objects = render(chart)
    assert not of_kind(objects, "PrometheusRule")
    assert not of_kind(objects, "AlertmanagerConfig")
    assert not [
        obj for obj in of_kind(objects, "ConfigMap") if "grafana_dashboard" in obj["metadata"]["labels"]
    ]


def test_service_monitors_scrape_the_metrics_port_which_only_the_monitoring_namespace_reaches(multi):
    ours = [
        o for o in multi if o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "platform"
    ]
    services = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in of_kind(ours, "Service")}
    monitors = of_kind(ours, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"platform-auth", "platform-api", "platform-images"}
    for monitor in monitors:
        namespace, name = monitor["metadata"]["namespace"], monitor["metadata"]["name"]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
        (port,) = [p for p in services[(namespace, name)]["spec"]["ports"] if p["name"] == "metrics"]
        (policy,) = [
            p
            for p in of_kind(ours, "NetworkPolicy")
            if (p["metadata"]["namespace"], p["metadata"]["name"]) == (namespace, name)
        ]
        admitting = [
            rule
            for rule in policy["spec"]["ingress"]
            if any(p["port"] == port["port"] for p in rule["ports"])
        ]
        assert [peer["namespaceSelector"] for rule in admitting for peer in rule["from"]] == [
            {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
        ]


def test_each_rules_file_becomes_a_prometheus_rule_with_exactly_its_groups(multi):
    rules = {obj["metadata"]["name"]: obj for obj in of_kind(multi, "PrometheusRule")}
    assert set(rules) == {f"platform-{path.stem}" for path in rule_files()}
    for path in rule_files():
        rule = rules[f"platform-{path.stem}"]
        assert rule["metadata"]["namespace"] == "monitoring"
        # kube-prometheus-stack's Prometheus selects rules by its release label.
        assert rule["metadata"]["labels"]["release"] == "platform"
        assert rule["spec"] == yaml.safe_load(fill_namespaces(path.read_text(), TEST_NAMESPACES))


@pytest.mark.parametrize(
    ("mode", "namespaces"),
    [("single", dict.fromkeys(SERVICES, "platform")), ("multi", TEST_NAMESPACES)],
)
def test_rules_select_and_expect_the_services_in_the_namespaces_of_the_release(chart, mode, namespaces):
    objects = render(chart, *MONITORING_ON, *mode_args("default", mode))
    for path in rule_files():
        (rule,) = [
            obj
            for obj in of_kind(objects, "PrometheusRule")
            if obj["metadata"]["name"] == f"platform-{path.stem}"
        ]
        infrastructure = "platform" if mode == "single" else "infrastructure"
        assert rule["spec"] == yaml.safe_load(fill_namespaces(path.read_text(), namespaces, infrastructure))
        assert not PLACEHOLDER.findall(yaml.safe_dump(rule))
    exprs = "\n".join(
        rule["expr"]
        for obj in of_kind(objects, "PrometheusRule")
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
    )
    for service in SERVICES:
        assert f'absent(up{{job="{service}",namespace="{namespaces[service]}"}})' in exprs
    assert f'namespace=~"{"|".join(dict.fromkeys(namespaces.values()))}"' in exprs


def test_a_service_turned_off_is_not_reported_down_forever(chart, promtool, tmp_path):
    objects = render(chart, *MONITORING_ON, "--set", "images.enabled=false")
    (services,) = [
        obj for obj in of_kind(objects, "PrometheusRule") if obj["metadata"]["name"] == "platform-services"
    ]
    (service_down,) = [
        rule
        for group in services["spec"]["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "ServiceDown"
    ]
    assert 'job="images"' not in service_down["expr"]
    assert 'namespace=~"platform"' in service_down["expr"]
    rules = tmp_path / "services.yaml"
    rules.write_text(yaml.safe_dump(services["spec"]))
    up = [f'up{{job="{job}",namespace="platform",instance="{job}:80"}}' for job in ("auth", "api")]
    unit = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": "1x10"} for series in up],
                "alert_rule_test": [{"eval_time": "10m", "alertname": "ServiceDown", "exp_alerts": []}],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit))
    for command in (["check", "rules", str(rules)], ["test", "rules", str(tmp_path / "test.yaml")]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_runbook_links_follow_the_configured_base_url(chart):
    objects = render(
        chart, *MONITORING_ON, "--set", "monitoring.rules.runbookBaseUrl=https://wiki.example/rb/"
    )
    urls = [
        rule["annotations"]["runbook_url"]
        for obj in of_kind(objects, "PrometheusRule")
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert len(urls) == len(alerts())
    assert all(url.startswith("https://wiki.example/rb/") and RUNBOOK_BASE_URL not in url for url in urls)


def test_each_dashboard_is_a_configmap_the_grafana_sidecar_loads(multi):
    maps = {
        obj["metadata"]["name"]: obj
        for obj in of_kind(multi, "ConfigMap")
        if obj["metadata"]["labels"].get("grafana_dashboard") == "1"
    }
    assert set(maps) == {f"platform-dashboard-{path.stem}" for path in dashboard_files()}
    for path in dashboard_files():
        configmap = maps[f"platform-dashboard-{path.stem}"]
        assert configmap["metadata"]["annotations"]["grafana_folder"] == "Platform"
        assert json.loads(configmap["data"][path.name]) == json.loads(fill_namespaces(path.read_text()))


@pytest.mark.parametrize(
    ("mode", "namespaces"),
    [("single", dict.fromkeys(SERVICES, "platform")), ("multi", TEST_NAMESPACES)],
)
def test_dashboards_offer_the_namespaces_of_the_release(chart, mode, namespaces):
    objects = render(chart, *MONITORING_ON, *mode_args("default", mode))
    dashboards = [
        json.loads(data)
        for obj in of_kind(objects, "ConfigMap")
        if obj["metadata"]["labels"].get("grafana_dashboard") == "1"
        for data in obj["data"].values()
    ]
    assert len(dashboards) == len(dashboard_files())
    regex = "|".join(dict.fromkeys(namespaces.values()))
    for dashboard in dashboards:
        (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "namespace"]
        assert variable["allValue"] == regex
        assert f'namespace=~"{regex}"' in variable["query"]
        assert not PLACEHOLDER.findall(json.dumps(dashboard))


def test_monitoring_objects_are_valid_against_the_operator_crds(multi, schemas):
    for obj in of_kind(multi, "PrometheusRule") + of_kind(multi, "AlertmanagerConfig"):
        errors = list(jsonschema.Draft7Validator(schemas[(obj["apiVersion"], obj["kind"])]).iter_errors(obj))
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: {[e.message for e in errors]}"


def test_critical_alerts_page_slack_and_email_while_warnings_go_to_another_slack_channel(multi):
    (config,) = of_kind(multi, "AlertmanagerConfig")
    spec = config["spec"]
    (matcher,) = spec["route"]["matchers"]
    assert matcher["name"] == "alertname"
    assert set(matcher["value"].split("|")) == {alert["alert"] for alert in alerts()}
    routes = {route["matchers"][0]["value"]: route for route in spec["route"]["routes"]}
    assert set(routes) == {"critical", "warning"}
    assert routes["critical"]["receiver"] != routes["warning"]["receiver"]
    assert routes["critical"]["repeatInterval"] == "1h"
    receivers = {receiver["name"]: receiver for receiver in spec["receivers"]}
    critical, warning = receivers[routes["critical"]["receiver"]], receivers[routes["warning"]["receiver"]]
    assert critical["slackConfigs"][0]["channel"] == "#platform-alerts"
    assert critical["emailConfigs"][0]["to"] == "oncall@example.com"
    assert warning["slackConfigs"][0]["channel"] == "#platform-warnings"
    assert "emailConfigs" not in warning


def test_the_wait_between_messages_about_one_alert_group_is_a_value(multi, chart):
    (default,) = of_kind(multi, "AlertmanagerConfig")
    assert default["spec"]["route"]["groupInterval"] == "5m"
    shortened = render(chart, *MONITORING_ON, "--set", "monitoring.alertmanager.groupInterval=30s")
    (config,) = of_kind(shortened, "AlertmanagerConfig")
    assert config["spec"]["route"]["groupInterval"] == "30s"
    refused = helm("template", "platform", str(chart), *AS_IF_INSTALLED, *MONITORING_ON,
                   "--set", "monitoring.alertmanager.groupInterval=soon", check=False)  # fmt: skip
    assert refused.returncode != 0 and "groupInterval" in refused.stderr, refused.stderr


def test_slack_messages_keep_one_line_per_part_of_each_alert(multi):
    (config,) = of_kind(multi, "AlertmanagerConfig")
    texts = {slack["text"] for receiver in config["spec"]["receivers"] for slack in receiver["slackConfigs"]}
    assert len(texts) == 1
    lines = texts.pop().splitlines()
    assert lines == [
        "{{ range .Alerts }}{{ .Annotations.summary }}: {{ .Annotations.description }}",
        "Runbook: {{ .Annotations.runbook_url }}",
        "{{ end }}",
    ]


def test_alerting_secrets_come_only_from_the_existing_secret(multi):
    (config,) = of_kind(multi, "AlertmanagerConfig")
    for receiver in config["spec"]["receivers"]:
        for slack in receiver.get("slackConfigs", []):
            assert slack["apiURL"] == {"name": SECRET, "key": "slack-webhook-url"}
        for email in receiver.get("emailConfigs", []):
            assert email["authPassword"] == {"name": SECRET, "key": "smtp-password"}
    assert "hooks.slack.com" not in yaml.safe_dump(config)


def documented_alerting_secrets() -> dict[str, tuple[str, str]]:
    """Mode -> (namespace, name) of the Secret docs/observability.md creates, release in `platform`."""
    text = (PROJECT_ROOT / "docs" / "observability.md").read_text()
    commands = re.findall(
        r"^# (single|multi) mode\b[^\n]*\nkubectl -n (\S+) create secret generic (\S+)", text, re.M
    )
    return {mode: (namespace, name) for mode, namespace, name in commands}


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_the_alerting_secret_is_documented_in_the_namespace_of_the_alertmanager_config(chart, mode):
    """A Secret reference of an AlertmanagerConfig resolves only in its own namespace."""
    namespace, secret = documented_alerting_secrets()[mode]
    objects = render(
        chart, "--set", "monitoring.enabled=true", "--set", "monitoring.alertmanager.enabled=true",
        "--set", f"monitoring.alertmanager.existingSecret={secret}", *mode_args("default", mode),
    )  # fmt: skip
    (config,) = of_kind(objects, "AlertmanagerConfig")
    assert config["metadata"]["namespace"] == namespace
    references = [
        reference["name"]
        for receiver in config["spec"]["receivers"]
        for reference in [slack["apiURL"] for slack in receiver.get("slackConfigs", [])]
        + [email["authPassword"] for email in receiver.get("emailConfigs", []) if "authPassword" in email]
    ]
    assert references and set(references) == {secret}


def test_staging_routes_its_alerts_to_its_own_slack_channels_with_the_documented_secret(chart):
    staging = PROJECT_ROOT / "values" / "staging.yaml"
    ((namespace, secret),) = re.findall(
        r"^#\s+kubectl -n (\S+) create secret generic (\S+)", staging.read_text(), re.M
    )
    (config,) = of_kind(render(chart, "-f", str(staging)), "AlertmanagerConfig")
    assert config["metadata"]["namespace"] == namespace == "monitoring"
    receivers = {receiver["name"]: receiver for receiver in config["spec"]["receivers"]}
    channels = {
        name: [slack["channel"] for slack in receiver["slackConfigs"]] for name, receiver in receivers.items()
    }
    assert channels == {
        "platform-critical": ["#platform-staging-alerts"],
        "platform-warning": ["#platform-staging-warnings"],
    }
    # Never the production on-call's mailbox.
    assert not any("emailConfigs" in receiver for receiver in receivers.values())
    assert {
        slack["apiURL"]["name"] for receiver in receivers.values() for slack in receiver["slackConfigs"]
    } == {secret}


def test_the_values_say_where_the_alerting_secret_lives_in_both_modes(chart):
    text = (chart / "values.yaml").read_text()
    alertmanager = text[text.index("\nmonitoring:\n") :]
    alertmanager = alertmanager[alertmanager.index("\n  alertmanager:\n") :]
    comment = alertmanager[: alertmanager.index("    existingSecret:")].rsplit("    # -- ", 1)[1]
    words = " ".join(comment.replace("#", "").split())
    assert "monitoring namespace" not in words
    assert "the release namespace in single mode" in words
    assert "global.namespaces.monitoring in multi mode" in words


def test_alert_routing_refuses_to_render_without_its_secret(chart):
    result = helm(
        "template", "platform", str(chart), *AS_IF_INSTALLED, "--set", "monitoring.enabled=true",
        "--set", "monitoring.alertmanager.enabled=true", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "monitoring.alertmanager.existingSecret is required" in result.stderr


def test_the_bundled_alertmanager_routes_alerts_from_every_namespace_of_the_platform(chart):
    """In multi mode the alerts carry the services' namespaces, not the AlertmanagerConfig's.

    The operator's default strategy (OnNamespace) would let the AlertmanagerConfig in
    `monitoring` see only alerts with namespace="monitoring".
    """
    values = yaml.safe_load((chart / "values.yaml").read_text())
    spec = values["kube-prometheus-stack"]["alertmanager"]["alertmanagerSpec"]
    assert spec["alertmanagerConfigMatcherStrategy"] == {"type": "None"}


def service_configmaps(objects: list[dict]) -> dict[str, dict]:
    return {
        obj["data"]["SERVICE_NAME"]: obj["data"]
        for obj in of_kind(objects, "ConfigMap")
        if "SERVICE_NAME" in obj.get("data", {})
    }


def test_trace_export_is_off_unless_an_otlp_endpoint_is_set(chart):
    default = service_configmaps(render(chart))
    assert set(default) == {"auth", "api", "images"}
    assert not any("OTEL_EXPORTER_OTLP_ENDPOINT" in data for data in default.values())

    collector = "kubernetes\\.io/metadata\\.name"
    objects = render(
        chart,
        "--set", "global.tracing.otlpEndpoint=http://otel-collector.monitoring:4318",
        "--set", f"networkPolicy.otelCollector.to[0].namespaceSelector.matchLabels.{collector}=monitoring",
    )  # fmt: skip

    for data in service_configmaps(objects).values():
        assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    service_policies = [
        obj
        for obj in of_kind(objects, "NetworkPolicy")
        if obj["metadata"]["name"].endswith(("-auth", "-api", "-images"))
    ]
    assert len(service_policies) == 3
    for policy in service_policies:
        assert any(
            rule["ports"] == [{"port": 4318, "protocol": "TCP"}]
            and rule["to"]
            == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
            for rule in policy["spec"]["egress"]
        ), policy["metadata"]["name"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("monitoring.alertmanager.critical.repeatInterval=often", "repeatInterval"),
        ("monitoring.alertmanager.email.to=nobody", "/monitoring/alertmanager/email/to"),
        ("monitoring.alertmanager.email.smarthost=smtp.example.com", "smarthost"),
        ("monitoring.rules.runbookBaseUrl=docs/runbooks", "runbookBaseUrl"),
        ("monitoring.alertmanager.slack.channel=#x", "channel"),
        # Misspelt keys are refused, not silently ignored.
        ("monitoring.enable=true", "enable"),
        ("monitoring.serviceMonitor.intervall=30s", "intervall"),
        ("monitoring.serviceMonitors.interval=30s", "serviceMonitors"),
    ],
)
def test_the_schema_refuses_bad_monitoring_values(chart, setting, message):
    result = helm("template", "platform", str(chart), "--set", setting, check=False)
    assert result.returncode != 0
    assert message in result.stderr
