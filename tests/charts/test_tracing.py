"""Traces in the chart: OTEL_* in the services' ConfigMaps, egress to the collector, Grafana's Jaeger."""

from __future__ import annotations

import pytest
import yaml

from tests.charts.conftest import AS_IF_INSTALLED, CHART, VALUES_DIR, helm, prepare_dependencies

pytestmark = pytest.mark.charts

ENDPOINT = "http://otel-collector.monitoring:4318"
NAMESPACE_LABEL = "kubernetes\\.io/metadata\\.name"
COLLECTOR_PEERS = [
    "--set", f"networkPolicy.otelCollector.to[0].namespaceSelector.matchLabels.{NAMESPACE_LABEL}=monitoring",
]  # fmt: skip


@pytest.fixture(scope="module")
def chart():
    prepare_dependencies()
    return CHART


def render(chart, *args: str) -> list[dict]:
    result = helm("template", "platform", str(chart), "--namespace", "platform", *AS_IF_INSTALLED, *args)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def service_settings(objects: list[dict]) -> dict[str, dict]:
    return {
        obj["data"]["SERVICE_NAME"]: obj["data"]
        for obj in objects
        if obj["kind"] == "ConfigMap" and "SERVICE_NAME" in obj.get("data", {})
    }


def tracing_of(data: dict) -> dict:
    return {key: value for key, value in data.items() if key.startswith("OTEL_")}


@pytest.mark.parametrize(
    ("values", "environment", "ratio"), [("staging", "staging", "0.5"), ("prod", "production", "0.05")]
)
def test_staging_and_production_keep_a_share_of_new_traces_and_follow_the_callers_decision(
    chart, values, environment, ratio
):
    objects = render(
        chart, "-f", str(VALUES_DIR / f"{values}.yaml"), "--set", f"global.tracing.otlpEndpoint={ENDPOINT}",
        *COLLECTOR_PEERS,
    )  # fmt: skip
    settings = service_settings(objects)
    assert set(settings) == {"auth", "api", "images"}
    for data in settings.values():
        assert tracing_of(data) == {
            "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": ratio,
            "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment.name={environment}",
        }


def test_without_an_endpoint_no_otel_variable_is_set_whatever_the_sampler(chart):
    for data in service_settings(render(chart, "-f", str(VALUES_DIR / "prod.yaml"))).values():
        assert tracing_of(data) == {}


def test_by_default_every_trace_is_recorded_unless_the_caller_said_otherwise(chart):
    objects = render(chart, "--set", f"global.tracing.otlpEndpoint={ENDPOINT}", *COLLECTOR_PEERS)
    for data in service_settings(objects).values():
        assert data["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
        assert "OTEL_TRACES_SAMPLER_ARG" not in data


def test_an_endpoint_behind_network_policies_needs_the_collectors_peers(chart):
    endpoint = ["--set", f"global.tracing.otlpEndpoint={ENDPOINT}"]
    result = helm("template", "platform", str(chart), *AS_IF_INSTALLED, *endpoint, check=False)
    assert result.returncode != 0
    assert "networkPolicy.otelCollector.to is required" in result.stderr
    # Without network policies nothing stands between the services and the collector.
    render(chart, *endpoint, "--set", "networkPolicy.enabled=false")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("global.tracing.sampler=ratio", "/global/tracing/sampler"),
        ("global.tracing.samplerArg=2", "/global/tracing/samplerArg"),
        ("global.tracing.otlpEndpoint=otel-collector:4318", "/global/tracing/otlpEndpoint"),
        ("global.tracing.queryUrl=jaeger:16686", "/global/tracing/queryUrl"),
        ("global.tracing.endpoint=http://x:4318", "endpoint"),
    ],
)
def test_the_schema_refuses_bad_tracing_values(chart, setting, message):
    result = helm("template", "platform", str(chart), *AS_IF_INSTALLED, "--set", setting, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def grafana_data_sources(objects: list[dict]) -> list[dict]:
    (config,) = [obj for obj in objects if obj["metadata"]["name"].endswith("-grafana-datasource")]
    return yaml.safe_load(config["data"]["datasource.yaml"])["datasources"]


def test_grafana_gets_a_jaeger_data_source_only_when_a_query_url_is_set(chart):
    staging = ["-f", str(VALUES_DIR / "staging.yaml")]
    assert [source["type"] for source in grafana_data_sources(render(chart, *staging))] == [
        "prometheus",
        "alertmanager",
    ]

    query = "http://jaeger-query.monitoring:16686"
    sources = grafana_data_sources(render(chart, *staging, "--set", f"global.tracing.queryUrl={query}"))
    (jaeger,) = [source for source in sources if source["type"] == "jaeger"]
    assert jaeger == {"name": "Jaeger", "type": "jaeger", "uid": "jaeger", "access": "proxy", "url": query}
