"""Renders the platform chart once per values file and namespace mode, offline.

The third-party charts (Bitnami PostgreSQL and MinIO, kube-prometheus-stack) are copied from
../shared/chart-deps (beside the repository; CHART_DEPS_DIR overrides) into
charts/platform/charts/, which git ignores. Every render is cached for the session.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.certificates import issue_test_certificates

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "platform"
HELM = ROOT / ".tools" / "bin" / "helm"
VALUES_DIR = ROOT / "values"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RELEASE = "platform"
NAMESPACE = "platform"
THIRD_PARTY = ("postgresql", "minio", "kube-prometheus-stack")

# Default values plus every file in values/.
VALUES_FILES = ["default", *sorted(path.stem for path in VALUES_DIR.glob("*.yaml"))]
MODES = ("single", "multi")
RENDER_IDS = [f"{name}-{mode}" for name in VALUES_FILES for mode in MODES]


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.charts)


def chart_deps_dir() -> Path:
    return Path(os.environ.get("CHART_DEPS_DIR", ROOT.parent / "shared" / "chart-deps"))


def _chart_version(chart_dir: Path) -> str | None:
    chart_yaml = chart_dir / "Chart.yaml"
    if not chart_yaml.is_file():
        return None
    return yaml.safe_load(chart_yaml.read_text())["version"]


def prepare_dependencies() -> None:
    """Copy each third-party chart into charts/platform/charts/ unless that version is there."""
    source = chart_deps_dir()
    if not source.is_dir():
        pytest.fail(f"third-party charts not found in {source} (set CHART_DEPS_DIR)", pytrace=False)
    for name in THIRD_PARTY:
        target = CHART / "charts" / name
        wanted = _chart_version(source / name)
        # `helm dependency build` (online) leaves <name>-<version>.tgz; a second copy would clash.
        if _chart_version(target) == wanted or (CHART / "charts" / f"{name}-{wanted}.tgz").exists():
            continue
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source / name, target)
        # The shared copy is read-only; the working copy must stay removable.
        for path in [target, *target.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, check=False, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


# `helm template` cannot see a cluster, so the chart refuses to generate a Secret in it (see
# test_secrets_and_schema.py). The renders here stand for the `helm install` the values files
# are written for, which sees the cluster and may generate them.
AS_IF_INSTALLED = ["--set", "global.secrets.allowGeneratedWithoutCluster=true"]


def values_args(name: str) -> list[str]:
    return [] if name == "default" else ["-f", str(VALUES_DIR / f"{name}.yaml")]


def mode_args(name: str, mode: str) -> list[str]:
    """Overrides that switch a values file to the other namespace mode, consistently."""
    values = {} if name == "default" else yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text()) or {}
    current = values.get("global", {}).get("namespaces", {}).get("mode", "single")
    if current == mode:
        return []
    args = ["--set", f"global.namespaces.mode={mode}"]
    for chart, namespace in (
        ("postgresql", "infrastructure"),
        ("minio", "infrastructure"),
        ("kube-prometheus-stack", "monitoring"),
    ):
        args += ["--set-string", f"{chart}.namespaceOverride={namespace if mode == 'multi' else ''}"]
    if mode == "single":
        # Small installs use a monitoring stack of their own namespace (see the chart README).
        args += ["--set", "kube-prometheus-stack.enabled=false"]
    return args


@dataclasses.dataclass
class Render:
    id: str
    values_name: str
    mode: str
    args: list[str]
    text: str
    objects: list[dict]

    def of_kind(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def ours(self) -> list[dict]:
        """Objects of the platform's own charts (umbrella, library, three services)."""
        return [
            obj
            for obj in self.objects
            if obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "platform"
        ]


def render_args(render_id: str) -> tuple[str, str, list[str]]:
    name, mode = render_id.rsplit("-", 1)
    return name, mode, [*AS_IF_INSTALLED, *values_args(name), *mode_args(name, mode)]


@pytest.fixture(scope="session")
def chart_ready() -> Path:
    prepare_dependencies()
    return CHART


@pytest.fixture(scope="session")
def render_cache(chart_ready):
    return {}


@pytest.fixture(scope="session")
def template_without_cluster(chart_ready):
    """helm template as Argo CD runs it, with extra arguments: returns the process."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return helm("template", RELEASE, str(chart_ready), "--namespace", NAMESPACE, *args, check=False)

    return run


@pytest.fixture(scope="session")
def template(template_without_cluster):
    """helm template standing for helm install, e.g. to probe the schema: returns the process."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return template_without_cluster(*AS_IF_INSTALLED, *args)

    return run


@pytest.fixture(scope="session")
def get_render(render_cache, template):
    def get(render_id: str) -> Render:
        if render_id not in render_cache:
            name, mode, args = render_args(render_id)
            result = template(*args)
            assert result.returncode == 0, f"helm template {render_id} failed:\n{result.stderr}"
            objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
            render_cache[render_id] = Render(render_id, name, mode, args, result.stdout, objects)
        return render_cache[render_id]

    return get


@pytest.fixture(params=RENDER_IDS)
def render(request, get_render) -> Render:
    return get_render(request.param)


@pytest.fixture(scope="session")
def all_renders(get_render) -> list[Render]:
    return [get_render(render_id) for render_id in RENDER_IDS]


@dataclasses.dataclass
class TlsPostgres:
    server: object
    ca_file: Path


@pytest.fixture(scope="session")
def tls_postgres(tmp_path_factory):
    """A real PostgreSQL serving TLS with a certificate for `localhost` signed by a throwaway CA."""
    from devstack.postgres import PostgresServer

    certs = issue_test_certificates(tmp_path_factory.mktemp("database-tls"), "DNS:localhost")
    server = PostgresServer().start()
    try:
        server.enable_tls(certs.certificate, certs.key)
        yield TlsPostgres(server, certs.ca)
    finally:
        server.destroy()
