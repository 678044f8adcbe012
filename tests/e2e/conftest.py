"""The chart in a real Kubernetes: fixtures for tests that run under ci/cluster/run.sh.

ci/cluster/run.sh starts the cluster in a network namespace and runs pytest inside it, so helm,
kubectl and the servers started here see the cluster and nothing else. PostgreSQL (TLS, one role
and database per service) and MinIO (bucket and user made by the chart's own provisioning
script) run on the node's bridge address as the external services of the dev install.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from devstack.minio import MinioServer
from devstack.postgres import SERVICE_DATABASES, PostgresServer
from tests.certificates import issue_test_certificates
from tests.conftest import PROJECT_ROOT

CHART = PROJECT_ROOT / "charts" / "platform"
TOOLS_BIN = PROJECT_ROOT / ".tools" / "bin"
DEV_NAMESPACE = "platform-dev"
DEV_EXTERNAL_VALUES = Path(__file__).with_name("dev-external.yaml")
DEV_INGRESS_VALUES = Path(__file__).with_name("dev-ingress.yaml")


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.e2e)


@dataclass
class Cluster:
    """The local cluster: helm and kubectl against it, and shell commands run as a user would."""

    node_ip: str
    env: dict[str, str] = field(repr=False)

    def run(self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None,
            extra_env: dict[str, str] | None = None):  # fmt: skip
        result = subprocess.run(
            args, env={**self.env, **(extra_env or {})}, cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=timeout, check=False, input=input,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"{shlex.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def shell(self, command: str, check: bool = True, timeout: float = 900, extra_env: dict | None = None):
        """A command line exactly as a README shows it, run by bash from the repository root."""
        return self.run("bash", "-euo", "pipefail", "-c", command, check=check, timeout=timeout,
                        extra_env=extra_env)  # fmt: skip

    def kubectl(self, *args: str, **options):
        return self.run("kubectl", *args, **options)

    def helm(self, *args: str, **options):
        return self.run("helm", *args, **options)

    def objects(self, kind: str, namespace: str, *selector: str) -> list[dict]:
        return json.loads(self.kubectl("get", kind, "-n", namespace, *selector, "-o", "json").stdout)["items"]

    def apply(self, *manifests: dict) -> None:
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests))

    def restricted_namespace(self, name: str) -> None:
        """A namespace its owner labelled for Pod Security 'restricted' (chart README)."""
        labels = {"pod-security.kubernetes.io/enforce": "restricted"}
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})

    def secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.apply({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
        })  # fmt: skip


def pods_of(cluster: Cluster, namespace: str, service: str) -> list[dict]:
    return cluster.objects("pods", namespace, "-l", f"app.kubernetes.io/name={service}")


def ready_pods(cluster: Cluster, namespace: str, service: str) -> list[str]:
    """The service's pods that are ready and not on their way out."""
    return [
        pod["metadata"]["name"]
        for pod in pods_of(cluster, namespace, service)
        if pod["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    ]


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    if "CLUSTER_NETNS" not in os.environ:
        pytest.exit("tests/e2e needs the local cluster: run them as `ci/cluster/run.sh pytest tests/e2e`", 2)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([os.environ["CLUSTER_BIN"], str(TOOLS_BIN), os.environ["PATH"]]),
        "HELM_CACHE_HOME": os.path.join(os.environ["CLUSTER_STATE"], "helm", "cache"),
        "HELM_CONFIG_HOME": os.path.join(os.environ["CLUSTER_STATE"], "helm", "config"),
        "HELM_DATA_HOME": os.path.join(os.environ["CLUSTER_STATE"], "helm", "data"),
    }
    return Cluster(node_ip=os.environ["CLUSTER_NODE_IP"], env=env)


@pytest.fixture(scope="session")
def chart_dependencies():
    """The third-party charts in charts/platform/charts/, as the chart tests place them."""
    from tests.charts.conftest import prepare_dependencies

    prepare_dependencies()


@dataclass
class ExternalServices:
    postgres: PostgresServer
    database_ca: Path
    database_passwords: dict[str, str]
    minio: MinioServer
    s3_access_key: str
    s3_secret_key: str


def _provision_bucket(cluster: Cluster, minio: MinioServer, access_key: str, secret_key: str, workdir: Path):
    """The chart's own MinIO provisioning script and policy, run with the MinIO client."""
    rendered = cluster.helm(
        "template", "platform", str(CHART), "--show-only", "templates/minio-provisioning.yaml",
        # Only the script is read, not the Secrets this offline render would generate.
        "--set", "global.secrets.allowGeneratedWithoutCluster=true",
    ).stdout  # fmt: skip
    (config_map,) = [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "ConfigMap"]
    for name, content in config_map["data"].items():
        (workdir / name).write_text(content)
    for who, (user, password) in {
        "root": (minio.access_key, minio.secret_key),
        "service": (access_key, secret_key),
    }.items():
        (workdir / "credentials" / who).mkdir(parents=True)
        (workdir / "credentials" / who / "user").write_text(user)
        (workdir / "credentials" / who / "password").write_text(password)
    job_env = {
        "MINIO_URL": minio.endpoint, "CREDENTIALS_DIR": str(workdir / "credentials"), "BUCKET": "images",
        "POLICY_NAME": "images-bucket-readwrite", "POLICY_FILE": str(workdir / "policy.json"),
        "MC_CONFIG_DIR": str(workdir / ".mc"), "WAIT_SECONDS": "60",
    }  # fmt: skip
    cluster.run("bash", str(workdir / "provision.sh"), timeout=180, extra_env=job_env)


@pytest.fixture(scope="session")
def external_services(cluster, chart_dependencies, tmp_path_factory):
    certificates = issue_test_certificates(tmp_path_factory.mktemp("database-tls"), f"IP:{cluster.node_ip}")
    postgres = PostgresServer(host=cluster.node_ip, port=5432).start()
    minio = MinioServer(host=cluster.node_ip, port=9000).start()
    try:
        postgres.enable_tls(certificates.certificate, certificates.key)
        passwords = {service: secrets.token_urlsafe(18) for service in SERVICE_DATABASES}
        for service, password in passwords.items():
            postgres.provision(service, password)
        access_key, secret_key = "images-service", secrets.token_urlsafe(24)
        workdir = tmp_path_factory.mktemp("minio-provisioning")
        _provision_bucket(cluster, minio, access_key, secret_key, workdir)
        yield ExternalServices(postgres, certificates.ca, passwords, minio, access_key, secret_key)
    finally:
        minio.destroy()
        postgres.destroy()


def external_values(cluster: Cluster) -> list[str]:
    """Where the external services are: the values a user of a managed database and store sets."""
    node = cluster.node_ip
    return [
        "-f", str(DEV_EXTERNAL_VALUES),
        "--set", f"global.externalDatabase.host={node}",
        "--set", f"global.externalObjectStorage.endpoint=http://{node}:9000",
        "--set", f"networkPolicy.externalDatabase[0].ipBlock.cidr={node}/32",
        "--set", f"networkPolicy.externalObjectStorage.to[0].ipBlock.cidr={node}/32",
        "--set", "networkPolicy.externalObjectStorage.ports[0]=9000",
        # CoreDNS runs on the node, not as kube-dns pods (the chart's option for a node-local DNS).
        "--set", f"networkPolicy.dns.to[0].ipBlock.cidr={node}/32",
    ]  # fmt: skip


def apply_gateway_api_crds(cluster: Cluster) -> None:
    """The CRDs production runs beside the chart (Gateway API, cert-manager), as their owners publish them."""
    crds = Path(cluster.env["CLUSTER_CRDS"])
    cluster.kubectl("apply", "--server-side", *[f"-f={crd}" for crd in sorted(crds.glob("*.yaml"))])
    cluster.kubectl("wait", "--for", "condition=Established", "crd", "--all", "--timeout", "60s")


@pytest.fixture(scope="session")
def dev_release(cluster, external_services) -> str:
    """values/dev.yaml installed with the external services, its pods running our images."""
    # Single namespace mode: the namespace is labelled for Pod Security by its owner (chart README).
    cluster.restricted_namespace(DEV_NAMESPACE)
    services = external_services
    for service, password in services.database_passwords.items():
        cluster.secret(DEV_NAMESPACE, f"platform-{service}-database", {"password": password})
    cluster.secret(DEV_NAMESPACE, "platform-database-ca", {"ca.crt": services.database_ca.read_text()})
    s3_keys = {"access-key-id": services.s3_access_key, "secret-access-key": services.s3_secret_key}
    cluster.secret(DEV_NAMESPACE, "platform-images-s3", s3_keys)
    apply_gateway_api_crds(cluster)  # the HTTPRoute's
    cluster.helm(
        "upgrade", "--install", "platform", str(CHART), "-n", DEV_NAMESPACE, "-f", "values/dev.yaml",
        *external_values(cluster), "-f", str(DEV_INGRESS_VALUES),
        # The ingress controller runs on the node (test_ingress.py): its traffic comes from there.
        "--set", f"networkPolicy.ingressController.extraPeers[0].ipBlock.cidr={cluster.node_ip}/32",
        "--wait", "--timeout", "5m", timeout=400,
    )  # fmt: skip
    return DEV_NAMESPACE


@pytest.fixture(scope="session")
def traefik(cluster, dev_release, tmp_path_factory):
    """Traefik serving the dev install's Ingress and HTTPRoute (tests/e2e/traefik.py)."""
    from tests.e2e.traefik import running_traefik

    with running_traefik(cluster, dev_release, tmp_path_factory.mktemp("traefik")) as entrypoint:
        yield entrypoint
