"""Every values file renders, passes helm lint --strict and validates against the Kubernetes and
CRD schemas (strict: an unknown field is an error)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.charts.conftest import CHART, NAMESPACE, RENDER_IDS, SCHEMAS, helm, render_args

CRD_DIR_RELATIVE = Path("kube-prometheus-stack") / "charts" / "crds" / "crds"
KUBERNETES_VERSION = kubernetes_validate.latest_version()


class CrdLoader(yaml.SafeLoader):
    """PyYAML reads a bare `=` as YAML 1.1's value tag; in the CRDs it is just the string."""


CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def crd_schemas(crd_dir: Path) -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in crd_dir.glob("*.yaml"):
        crd = yaml.load(path.read_text(), Loader=CrdLoader)  # noqa: S506 - a SafeLoader subclass
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def strict(schema: dict) -> dict:
    """Like the API server's field validation: unknown fields are errors, except where the
    CRD says x-kubernetes-preserve-unknown-fields."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@pytest.fixture(scope="session")
def custom_resource_schemas(chart_ready) -> dict[tuple[str, str], dict]:
    schemas = crd_schemas(chart_ready / "charts" / CRD_DIR_RELATIVE)
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        schemas[(schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])] = schema
    return {key: strict(schema) for key, schema in schemas.items()}


@pytest.mark.parametrize("render_id", RENDER_IDS)
def test_helm_lint_strict_passes(chart_ready, render_id):
    _, _, args = render_args(render_id)
    result = helm("lint", "--strict", str(chart_ready), "--namespace", NAMESPACE, *args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_every_values_file_renders_in_both_namespace_modes(all_renders):
    assert [render.id for render in all_renders] == RENDER_IDS
    for render in all_renders:
        assert render.ours(), f"{render.id} rendered none of the platform's objects"


def test_every_object_is_valid_kubernetes_with_strict_field_checking(render, custom_resource_schemas):
    problems = []
    for obj in render.objects:
        key = (obj["apiVersion"], obj["kind"])
        name = f"{obj['kind']}/{obj['metadata'].get('name')}"
        if key in custom_resource_schemas:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no schema for {key} (neither Kubernetes nor a known CRD)")
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name}: {exc.message} at {'/'.join(map(str, exc.path))}")
    assert not problems, "\n".join(problems)


def test_every_custom_resource_matches_its_crd_schema(render, custom_resource_schemas):
    problems = []
    checked = 0
    for obj in render.objects:
        schema = custom_resource_schemas.get((obj["apiVersion"], obj["kind"]))
        if schema is None:
            continue
        checked += 1
        for error in jsonschema.Draft7Validator(schema).iter_errors(obj):
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not problems, "\n".join(problems)
    kinds = {obj["kind"] for obj in render.objects}
    for kind in ("ServiceMonitor", "PrometheusRule", "Certificate", "HTTPRoute"):
        if kind in kinds:
            assert checked, f"{kind} rendered but not checked"


def test_the_environments_render_the_custom_resources_they_promise(get_render):
    assert get_render("staging-multi").of_kind("ServiceMonitor")
    prod = get_render("prod-multi")
    assert prod.of_kind("HTTPRoute") and prod.of_kind("Certificate")
    assert not get_render("dev-single").of_kind("ServiceMonitor")


def test_the_chart_readme_covers_install_upgrade_rollback_and_uninstall_per_environment():
    readme = (CHART / "README.md").read_text()
    for words in (
        "helm upgrade --install",
        "helm rollback",
        "helm uninstall",
        "helm test",
        "bitnamilegacy",
        "allowInsecureImages",
        "externalObjectStorage",
        "externalDatabase",
    ):
        assert words in readme, words
    for environment in ("values/dev.yaml", "values/staging.yaml", "values/prod.yaml"):
        assert environment in readme, environment


def test_the_crd_schemas_catch_a_wrong_field_or_value(get_render, custom_resource_schemas):
    render = get_render("prod-multi")
    wrong = []
    monitor = copy.deepcopy(render.of_kind("ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    wrong.append(monitor)
    route = copy.deepcopy(render.of_kind("HTTPRoute")[0])
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"
    wrong.append(route)
    certificate = copy.deepcopy(render.of_kind("Certificate")[0])
    del certificate["spec"]["secretName"]
    wrong.append(certificate)
    for obj in wrong:
        schema = custom_resource_schemas[(obj["apiVersion"], obj["kind"])]
        assert list(jsonschema.Draft7Validator(schema).iter_errors(obj)), f"{obj['kind']} accepted"


@pytest.mark.parametrize("values_name", ["default", "staging", "prod"])
def test_the_notes_say_how_to_reach_the_api_and_run_the_tests(chart_ready, values_name):
    _, _, args = render_args(f"{values_name}-{'single' if values_name == 'default' else 'multi'}")
    result = helm(
        "install", "platform", str(chart_ready), "--namespace", NAMESPACE, "--dry-run=client", *args
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "port-forward svc/platform-api 3002:3002" in notes
    assert "helm test platform" in notes
    host = {
        "default": "http://api.platform.local",
        "staging": "https://api.staging.platform.example.com",
        "prod": "https://api.platform.example.com",
    }[values_name]
    assert f"{host}/api/v1/posts" in notes


RESOURCE_TEMPLATES = {
    "serviceaccount.yaml": "platform-lib.serviceaccount",
    "configmap.yaml": "platform-lib.configmap",
    "deployment.yaml": "platform-lib.deployment",
    "service.yaml": "platform-lib.service",
    "hpa.yaml": "platform-lib.hpa",
    "pdb.yaml": "platform-lib.pdb",
}


def test_the_three_services_share_their_templates_through_the_library_chart():
    library = yaml.safe_load((CHART / "charts" / "platform-lib" / "Chart.yaml").read_text())
    assert library["type"] == "library"
    for service in ("auth", "api", "images"):
        templates = CHART / "charts" / service / "templates"
        # One resource per file, each a one-line include of its library partial.
        for name, partial in RESOURCE_TEMPLATES.items():
            body = (templates / name).read_text()
            assert len(body.strip().splitlines()) == 1, (service, name)
            assert f'{{{{ include "{partial}" . }}}}' in body, (service, name)
        assert not (templates / "resources.yaml").exists()
        dependencies = yaml.safe_load((CHART / "charts" / service / "Chart.yaml").read_text())["dependencies"]
        assert [d["name"] for d in dependencies] == ["platform-lib"]


@pytest.mark.parametrize("service", ["auth", "api", "images"])
def test_a_disabled_service_renders_without_its_objects(template, service):
    result = template(
        "-f", str(CHART.parents[1] / "values" / "staging.yaml"), "--set", f"{service}.enabled=false"
    )
    assert result.returncode == 0, result.stderr
    names = {obj["metadata"]["name"] for obj in yaml.safe_load_all(result.stdout) if obj}
    assert f"platform-{service}" not in names
    assert {f"platform-{other}" for other in ("auth", "api", "images") if other != service} <= names
