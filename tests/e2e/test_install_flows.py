"""The READMEs' install flows, with the READMEs' exact commands, for dev and staging: install,
upgrade with unchanged values, upgrade of one service's setting, rollback, uninstall, reinstall.

The pods of these installs run on simulated nodes (kwok): Bitnami's and the monitoring stack's
images cannot be pulled here. The real node is cordoned, so nothing lands there; what is real is
the API server, which validates and admits every object (Pod Security included), the controllers,
the scheduler, the volumes' binding and Helm itself. Our own pods running for real is
test_dev_install's matter. `helm dependency build` is not run: no chart repository is reachable,
and the tests place the same charts from ../shared/chart-deps (tests/charts/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import secrets as secrets_module
import subprocess

import pytest
import yaml

from devstack.wait import wait_until
from servicekit.tokens import generate_private_key_pem
from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import apply_gateway_api_crds
from tests.readme import readme_block, readme_command, readme_has

MULTI_NAMESPACES = ["platform", "auth", "api", "image-storage", "infrastructure", "monitoring"]
ENVIRONMENTS = {
    "dev": ("platform-dev", ["platform-dev"]),
    "staging": ("platform", MULTI_NAMESPACES),
    # A managed database and S3 bucket instead of the bundled ones: the infrastructure namespace
    # holds only the backup CronJobs and their Secrets.
    "prod": ("platform", ["platform", "auth", "api", "image-storage", "infrastructure", "monitoring"]),
}
FAKE_NODES = [("kwok-node-a", "zone-a"), ("kwok-node-b", "zone-b"), ("kwok-node-c", "zone-c")]


# A default StorageClass whose claims bind to the volumes below (no provisioner runs here).
DEFAULT_STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "kubernetes.io/no-provisioner",
    "volumeBindingMode": "Immediate",
}


def simulated_volume(index: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"simulated-{index}"},
        "spec": {
            "capacity": {"storage": "200Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/nonexistent/simulated-{index}"},
        },
    }


def fake_node(name: str, zone: str) -> dict:
    """A Node kwok keeps Ready and whose pods it reports running."""
    resources = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone,
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


@pytest.fixture(scope="module")
def simulated_nodes(cluster, chart_dependencies):
    """kwok nodes in three zones, the real node cordoned, volumes for the bundled servers."""
    if cluster.helm("status", "platform", "-n", "platform-dev", check=False).returncode == 0:
        cluster.helm("uninstall", "platform", "-n", "platform-dev", "--wait", timeout=300)
    cluster.kubectl("delete", "namespace", "platform-dev", "outsider", "--ignore-not-found", "--timeout=300s",
                    timeout=330)  # fmt: skip
    cluster.kubectl("cordon", "node-1")
    cluster.apply(DEFAULT_STORAGE_CLASS, *[simulated_volume(index) for index in range(12)])
    log = open(os.path.join(cluster.env["CLUSTER_STATE"], "logs", "kwok.log"), "wb")  # noqa: SIM115 (closed when kwok stops)
    kwok = subprocess.Popen(
        [
            "kwok", "--kubeconfig", cluster.env["KUBECONFIG"], "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40", "--cidr=10.0.0.1/24", "--node-ip=10.0.0.1",
        ],
        env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        cluster.apply(*[fake_node(name, zone) for name, zone in FAKE_NODES])
        for name, _ in FAKE_NODES:
            cluster.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s")
        yield
    finally:
        kwok.terminate()
        kwok.wait(timeout=30)
        log.close()


def install_command(environment: str) -> str:
    namespace, _ = ENVIRONMENTS[environment]
    return readme_command(
        f"helm upgrade --install platform charts/platform -n {namespace} --create-namespace "
        f"-f values/{environment}.yaml"
    )


# Helm's own, not the values': while it decides which subcharts are enabled, Helm coalesces each
# subchart's defaults into the parent's values (helm/helm#11251), so the umbrella's `auth`
# (the auth service's values, with a `database` table) and `ingress` (with a `tls` table) meet
# the Bitnami charts' string `auth.database` and boolean `ingress.tls`. The values each chart
# renders with are right (tests/charts). Documented in the chart README.
HELM_DEPENDENCY_NOISE = (
    'msg="warning: destination for postgresql.auth.database is a table. Ignoring non-table value ()"',
    'msg="warning: destination for minio.ingress.tls is a table. Ignoring non-table value (false)"',
)


# Also Helm's own: client-go's informational log line when `--wait` ends its watch while an event
# is on its way ("watch ended with error ... context canceled"), seen once on a busy node.
HELM_WATCH_TEARDOWN = re.compile(
    r'^I\d{4} .*reflector\.go:\d+\] "Warning: watch ended with error".*context canceled'
)


def install(cluster, command: str):
    """Run an install command; its output must carry no warning (Pod Security, validation)."""
    result = cluster.shell(command)
    warnings = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "warning" in line.lower()
        and not line.endswith(HELM_DEPENDENCY_NOISE)
        and not HELM_WATCH_TEARDOWN.match(line)
    ]
    assert not warnings, "\n".join(warnings)
    return result


def workloads(cluster, namespaces) -> dict[str, int]:
    """The generation of every Deployment and StatefulSet: a changed pod template raises it."""
    found = {}
    for namespace in namespaces:
        for kind in ("deployments", "statefulsets"):
            for obj in cluster.objects(kind, namespace):
                found[f"{kind}/{namespace}/{obj['metadata']['name']}"] = obj["metadata"]["generation"]
    return found


def secrets(cluster, namespaces) -> dict[str, dict]:
    found = {}
    for namespace in namespaces:
        for obj in cluster.objects("secrets", namespace):
            if obj["type"] != "helm.sh/release.v1":
                found[f"{namespace}/{obj['metadata']['name']}"] = obj.get("data", {})
    return found


def claims(cluster, namespaces) -> dict[str, str]:
    return {
        f"{namespace}/{obj['metadata']['name']}": obj["metadata"]["uid"]
        for namespace in namespaces
        for obj in cluster.objects("pvc", namespace)
    }


def kept_secret_names(cluster, release_namespace: str) -> set[str]:
    """The Secrets the release manifest marks helm.sh/resource-policy: keep."""
    manifest = cluster.helm("get", "manifest", "platform", "-n", release_namespace).stdout
    return {
        f"{doc['metadata'].get('namespace', release_namespace)}/{doc['metadata']['name']}"
        for doc in yaml.safe_load_all(manifest)
        if doc
        and doc["kind"] == "Secret"
        and doc["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"
    }


def all_pods_ready(cluster, namespaces) -> bool:
    pods = [p for namespace in namespaces for p in cluster.objects("pods", namespace)]
    return all(p["status"].get("phase") in ("Running", "Succeeded") for p in pods)


def production_prerequisites(cluster, tmp_path) -> None:
    """What production runs beside the chart, then the README's block of namespaces and Secrets."""
    apply_gateway_api_crds(cluster)
    # The Gateway's namespace belongs to the Gateway API implementation, not to the chart.
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gateway-system"}})
    ca_file = tmp_path / "database-ca.crt"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n")
    signing_key_file = tmp_path / "jwt-signing-key.pem"
    signing_key_file.write_text(generate_private_key_pem())
    values = {
        "PLATFORM_JWT_SIGNING_KEY_FILE": str(signing_key_file),
        "PLATFORM_DATABASE_CA_FILE": str(ca_file),
        **{f"PLATFORM_{name}": secrets_module.token_urlsafe(18) for name in (
            "AUTH_DB_PASSWORD", "API_DB_PASSWORD", "IMAGES_DB_PASSWORD", "S3_ACCESS_KEY_ID",
            "S3_SECRET_ACCESS_KEY", "HELM_TEST_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "SMTP_PASSWORD",
            "BACKUP_DB_PASSWORD", "BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY",
            "IMAGES_READONLY_ACCESS_KEY_ID", "IMAGES_READONLY_SECRET_ACCESS_KEY",
            "REPLICA_S3_ACCESS_KEY_ID", "REPLICA_S3_SECRET_ACCESS_KEY")},
        "PLATFORM_RESTORE_ADMIN_URL": "postgresql://platform_admin:stand-in@platform-db.prod.internal:5432/postgres",
        "PLATFORM_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/stand-in",
    }  # fmt: skip
    cluster.shell(readme_block("Production prerequisites"), extra_env=values)


@pytest.mark.parametrize("environment", list(ENVIRONMENTS))
def test_the_readme_install_flow(cluster, simulated_nodes, environment, tmp_path):
    release_namespace, namespaces = ENVIRONMENTS[environment]
    command = install_command(environment)
    if environment == "prod":
        production_prerequisites(cluster, tmp_path)
    before = set(secrets(cluster, namespaces))

    # Install.
    install(cluster, command)
    assert all_pods_ready(cluster, namespaces)
    installed_workloads, installed_secrets = workloads(cluster, namespaces), secrets(cluster, namespaces)
    assert installed_workloads, "the install made no Deployment or StatefulSet"

    # An upgrade with unchanged values changes nothing: no pod template, no Secret.
    install(cluster, command)
    assert workloads(cluster, namespaces) == installed_workloads
    assert secrets(cluster, namespaces) == installed_secrets

    # An upgrade that changes one service's setting rolls that service only.
    install(cluster, f"{command} --set auth.logLevel=WARNING")
    changed = {k for k, v in workloads(cluster, namespaces).items() if v != installed_workloads.get(k)}
    assert changed == {next(k for k in installed_workloads if k.endswith("/platform-auth"))}

    # Rollback to the first revision rolls the same service back, and only it.
    history = json.loads(cluster.helm("history", "platform", "-n", release_namespace, "-o", "json").stdout)
    assert [entry["revision"] for entry in history] == [1, 2, 3]
    # The README gives the dev command and says "same with -n platform" for the others.
    rollback = readme_has("helm rollback platform <revision> -n platform-dev")
    cluster.shell(rollback.replace("<revision>", "1").replace("platform-dev", release_namespace))
    after_rollback = workloads(cluster, namespaces)
    assert {k for k, v in after_rollback.items() if v != installed_workloads[k]} == changed
    assert secrets(cluster, namespaces) == installed_secrets

    # Uninstall keeps the generated Secrets and the data volumes (and, in multi mode, the namespaces).
    kept = kept_secret_names(cluster, release_namespace)
    volumes = claims(cluster, namespaces)
    assert bool(volumes) == (environment != "prod"), "the bundled PostgreSQL and MinIO claim volumes"
    cluster.shell(readme_has(f"helm uninstall platform -n {release_namespace}"))
    wait_until(lambda: not workloads(cluster, namespaces), timeout=120, message="the workloads to go")
    assert set(secrets(cluster, namespaces)) == kept | before
    assert claims(cluster, namespaces) == volumes
    existing = {
        ns["metadata"]["name"]
        for ns in json.loads(cluster.kubectl("get", "ns", "-o", "json").stdout)["items"]
    }
    assert set(namespaces) <= existing

    # A reinstall finds its passwords and its volumes: the data's passwords still match.
    install(cluster, command)
    assert {k: v for k, v in secrets(cluster, namespaces).items() if k in kept} == {
        k: v for k, v in installed_secrets.items() if k in kept
    }
    assert claims(cluster, namespaces) == volumes
    assert all(p["status"]["phase"] == "Bound" for ns in namespaces for p in cluster.objects("pvc", ns))

    # Leave nothing for the next environment: the README's way to remove everything.
    cluster.shell(readme_has(f"helm uninstall platform -n {release_namespace}"))
    for namespace in namespaces:
        cluster.kubectl("delete", "secret,pvc", "-l", "app.kubernetes.io/instance=platform", "-n", namespace)
    cluster.kubectl("delete", "namespace", *namespaces, "--ignore-not-found", "--timeout=300s", timeout=330)


GITOPS_HEADING = "Secrets with GitOps (Argo CD, Flux's helm template, `helm template | kubectl apply`)"


def readme_application() -> dict:
    """The chart README's Argo CD Application (its one YAML block of that kind)."""
    readme = (PROJECT_ROOT / "charts" / "platform" / "README.md").read_text()
    (application,) = [
        doc
        for block in re.findall(r"```yaml\n(.*?)```", readme, re.S)
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and doc.get("kind") == "Application"
    ]
    return application


def test_the_gitops_path_renders_offline_with_the_readme_secrets_and_runs(cluster, simulated_nodes, tmp_path):
    """What Argo CD does: the README's Secrets created first, then `helm template` (no cluster
    access, so no lookup) with the README's Application values, applied server-side."""
    _, namespaces = ENVIRONMENTS["staging"]
    # The earlier flows' claims released the first volumes (Retain): fresh ones for this sync.
    cluster.apply(*[simulated_volume(index) for index in range(12, 24)])
    for namespace in namespaces:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    cluster.shell(readme_block(GITOPS_HEADING))
    created = secrets(cluster, namespaces)

    helm = readme_application()["spec"]["source"]["helm"]
    values_object = tmp_path / "application-values.yaml"
    values_object.write_text(yaml.safe_dump(helm["valuesObject"]))
    value_files = [f"charts/platform/{path}" for path in helm["valueFiles"]]
    render = [
        "helm", "template", helm["releaseName"], "charts/platform", "-n", "platform", "--include-crds",
        *[arg for path in value_files for arg in ("-f", path)], "-f", str(values_object),
    ]  # fmt: skip
    # Twice, as every sync renders again: the same manifests, since nothing is random any more.
    first, second = (cluster.run(*render).stdout for _ in range(2))
    assert first == second
    # The CRDs hold YAML that PyYAML's safe loader refuses (`- =`); only the Secrets matter here.
    documents = [yaml.safe_load(text) for text in first.split("\n---\n") if "\nkind: Secret\n" in text]
    rendered_secrets = {doc["metadata"]["name"] for doc in documents if doc and doc["kind"] == "Secret"}
    # The one Secret left is kube-prometheus-stack's Alertmanager configuration, which holds no
    # generated value.
    assert rendered_secrets == {"alertmanager-platform-kube-prometheus-s-alertmanager"}

    cluster.kubectl("apply", "--server-side", "-f", "-", input=first, timeout=300)
    wait_until(lambda: all_pods_ready(cluster, namespaces), timeout=180, message="the synced pods")
    assert workloads(cluster, namespaces)
    assert {k: v for k, v in secrets(cluster, namespaces).items() if k in created} == created

    cluster.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=first, timeout=300)
    cluster.kubectl("delete", "namespace", *namespaces, "--ignore-not-found", "--timeout=300s", timeout=330)
