"""values/dev.yaml in a real cluster: our three images in real pods on a real node, `helm test`,
and NetworkPolicies enforced by a real implementation (kube-network-policies).
"""

from __future__ import annotations

import json

import pytest

from devstack.wait import wait_until
from tests.e2e.conftest import pods_of, ready_pods
from tests.readme import readme_has

SERVICES = {"auth": 3001, "api": 3002, "images": 3003}
# /metrics is served by the gunicorn master on a port of its own (METRICS_PORT), for Prometheus only.
METRICS_PORTS = {"auth": 9101, "api": 9102, "images": 9103}
CONTAINER_UID = 10001


def running_pod(cluster, namespace: str, service: str) -> str:
    pods = [p for p in pods_of(cluster, namespace, service) if p["status"].get("phase") == "Running"]
    assert pods, f"no running {service} pod"
    return pods[0]["metadata"]["name"]


def exec_python(cluster, namespace: str, pod: str, code: str, check: bool = False):
    return cluster.kubectl("exec", "-n", namespace, pod, "--", "python3", "-c", code, check=check, timeout=60)


def http_status_from(cluster, namespace: str, pod: str, url: str):
    """The status of GET url from inside the pod, or the name of the error that stopped it
    (TimeoutError where a policy dropped the packets; a DNS failure would be a gaierror)."""
    code = (
        "import urllib.request, urllib.error\n"
        "try:\n"
        f"    print(urllib.request.urlopen({url!r}, timeout=3).status)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code)\n"
        "except OSError as error:\n"
        "    reason = getattr(error, 'reason', error)\n"
        "    print(type(reason).__name__, reason)\n"
    )
    return exec_python(cluster, namespace, pod, code).stdout.strip()


def service_url(namespace: str, service: str, path: str = "/live") -> str:
    return f"http://platform-{service}.{namespace}.svc.cluster.local:{SERVICES[service]}{path}"


def test_the_dev_install_runs_our_three_images_in_real_pods_on_the_node(cluster, dev_release):
    for service in SERVICES:
        pods = pods_of(cluster, dev_release, service)
        assert len(pods) == 2, f"{service}: {[p['metadata']['name'] for p in pods]}"
        for pod in pods:
            assert pod["spec"]["nodeName"] == "node-1"
            assert all(c["ready"] for c in pod["status"]["containerStatuses"]), pod["metadata"]["name"]
            (container,) = pod["status"]["containerStatuses"]
            assert container["image"] == f"ghcr.io/platform-sre/{service}:0.1.0"


def test_the_containers_run_as_10001_on_a_read_only_root_with_only_tmp_writable(cluster, dev_release):
    code = (
        "import os\n"
        "print(os.getuid(), os.getgid())\n"
        "for path in ('/opt/venv/probe', '/probe', '/tmp/probe'):\n"
        "    try:\n"
        "        open(path, 'w').close(); print(path, 'writable')\n"
        "    except OSError as error:\n"
        "        print(path, 'refused', error.errno)\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
    )
    for service in SERVICES:
        pod = running_pod(cluster, dev_release, service)
        lines = exec_python(cluster, dev_release, pod, code, check=True).stdout.split("\n")
        assert lines[0] == f"{CONTAINER_UID} {CONTAINER_UID}", service
        assert lines[1] == "/opt/venv/probe refused 30", service  # EROFS
        assert lines[2] == "/probe refused 30", service
        assert lines[3] == "/tmp/probe writable", service  # noqa: S108 (the container's /tmp)
        assert lines[4] == "0000000000000000", f"{service} holds capabilities"


def test_each_image_holds_only_what_its_service_imports(cluster, dev_release):
    """auth carries no boto3 or Pillow, the api no bcrypt, boto3 or Pillow, images no bcrypt."""
    absent = {"auth": ["boto3", "PIL"], "api": ["bcrypt", "boto3", "PIL"], "images": ["bcrypt"]}
    code = (
        "import importlib.util, sys\n"
        "print(' '.join(name for name in sys.argv[1:] if importlib.util.find_spec(name)))\n"
    )
    for service, modules in absent.items():
        pod = running_pod(cluster, dev_release, service)
        found = cluster.kubectl(
            "exec", "-n", dev_release, pod, "--", "python3", "-c", code, *modules, service, "servicekit"
        ).stdout.split()
        assert found == [service, "servicekit"], f"{service} image holds {found}"


def test_helm_test_passes_in_the_cluster(cluster, dev_release):
    result = cluster.shell(readme_has(f"helm test platform -n {dev_release} --logs"), timeout=400)
    assert "Phase:          Succeeded" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("client", "server"),
    # images fetches auth's public keys (the JWKS) to check tokens itself.
    [("api", "auth"), ("api", "images"), ("images", "auth")],
)
def test_the_flows_the_design_needs_are_allowed(cluster, dev_release, client, server):
    pod = running_pod(cluster, dev_release, client)
    assert http_status_from(cluster, dev_release, pod, service_url(dev_release, server)) == "200"


@pytest.mark.parametrize(
    ("client", "server"),
    [("auth", "images"), ("auth", "api"), ("images", "api")],
)
def test_flows_the_design_does_not_need_are_refused(cluster, dev_release, client, server):
    pod = running_pod(cluster, dev_release, client)
    outcome = http_status_from(cluster, dev_release, pod, service_url(dev_release, server))
    assert outcome.startswith("TimeoutError"), outcome


@pytest.fixture(scope="module")
def outsider(cluster, dev_release):
    """A pod of another namespace that no policy of the chart admits (its own egress is free)."""
    namespace = "outsider"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for name in ("outsider", "neighbour"):
        cluster.apply({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "containers": [{
                    "name": "main", "image": "ghcr.io/platform-sre/api:0.1.0", "imagePullPolicy": "Never",
                    "command": ["python3", "-m", "http.server", "8080"],
                }],
                "automountServiceAccountToken": False,
            },
        })  # fmt: skip
    # Another workload of the release's own namespace (single mode shares it): no policy of the
    # chart may select it. The namespace enforces the restricted Pod Security profile.
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bystander", "namespace": dev_release, "labels": {"app": "bystander"}},
        "spec": {
            "containers": [{
                "name": "main", "image": "ghcr.io/platform-sre/api:0.1.0", "imagePullPolicy": "Never",
                "command": ["python3", "-m", "http.server", "8080"],
                "securityContext": {
                    "runAsNonRoot": True, "runAsUser": CONTAINER_UID, "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
                },
            }],
            "automountServiceAccountToken": False,
        },
    })  # fmt: skip
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/outsider", "pod/neighbour",
                    "--timeout=120s")  # fmt: skip
    cluster.kubectl("wait", "-n", dev_release, "--for=condition=Ready", "pod/bystander", "--timeout=120s")
    yield namespace
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    cluster.kubectl("delete", "pod", "bystander", "-n", dev_release, "--wait=false")


def test_another_workload_of_the_release_namespace_keeps_its_traffic(cluster, dev_release, outsider):
    bystander = cluster.objects("pods", dev_release, "-l", "app=bystander")[0]["status"]["podIP"]
    assert http_status_from(cluster, outsider, "outsider", f"http://{bystander}:8080/") == "200"


def test_only_the_auth_container_holds_the_token_signing_key(cluster, dev_release):
    keys = ("JWT_SIGNING_KEY", "JWT_ADDITIONAL_KEYS")
    code = f"import os; print(' '.join(name for name in {keys!r} if name in os.environ))"
    for service in SERVICES:
        pod = running_pod(cluster, dev_release, service)
        held = set(exec_python(cluster, dev_release, pod, code, check=True).stdout.split())
        # JWT_ADDITIONAL_KEYS is set only while a rotation publishes a second key.
        assert held == ({"JWT_SIGNING_KEY"} if service == "auth" else set()), f"{service} holds {held}"


def test_a_pod_outside_the_allowed_flows_reaches_no_service_of_the_platform(cluster, dev_release, outsider):
    neighbour = cluster.objects("pods", outsider, "-l", "app=neighbour")[0]["status"]["podIP"]
    # The outsider's own network works: it reaches a pod no policy selects.
    assert http_status_from(cluster, outsider, "outsider", f"http://{neighbour}:8080/") == "200"
    for service, port in SERVICES.items():
        outcome = http_status_from(cluster, outsider, "outsider", service_url(dev_release, service))
        assert outcome.startswith("TimeoutError"), f"{service}: {outcome}"
        pod_ip = pods_of(cluster, dev_release, service)[0]["status"]["podIP"]
        outcome = http_status_from(cluster, outsider, "outsider", f"http://{pod_ip}:{port}/live")
        assert outcome.startswith("TimeoutError"), f"{service} by pod IP: {outcome}"
        metrics = f"http://{pod_ip}:{METRICS_PORTS[service]}/metrics"
        outcome = http_status_from(cluster, outsider, "outsider", metrics)
        assert outcome.startswith("TimeoutError"), f"{service} metrics port: {outcome}"


@pytest.mark.parametrize("service", list(SERVICES))
def test_metrics_are_served_on_the_metrics_port_and_not_on_the_service_port(cluster, dev_release, service):
    pod = running_pod(cluster, dev_release, service)
    metrics = f"http://127.0.0.1:{METRICS_PORTS[service]}/metrics"
    assert http_status_from(cluster, dev_release, pod, metrics) == "200"
    assert (
        http_status_from(cluster, dev_release, pod, f"http://127.0.0.1:{SERVICES[service]}/metrics") == "404"
    )


def test_the_api_gateway_reaches_no_metrics_port_of_its_upstreams(cluster, dev_release):
    pod = running_pod(cluster, dev_release, "api")
    for upstream in ("auth", "images"):
        pod_ip = pods_of(cluster, dev_release, upstream)[0]["status"]["podIP"]
        outcome = http_status_from(
            cluster, dev_release, pod, f"http://{pod_ip}:{METRICS_PORTS[upstream]}/metrics"
        )
        assert outcome.startswith("TimeoutError"), f"{upstream}: {outcome}"


def test_a_large_upload_through_the_api_is_spooled_to_tmp_and_read_back(cluster, dev_release):
    """The images pods write uploads over a megabyte to /tmp first: the read-only root holds."""
    import secrets

    pod = running_pod(cluster, dev_release, "api")
    username = f"e2e-{secrets.token_hex(4)}"
    code = f"""
import io, json, os, zlib, struct, urllib.request
base = "http://127.0.0.1:3002/api/v1"
def call(method, path, body=None, headers=None):
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {{}})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()
credentials = json.dumps({{"username": {username!r}, "password": "correct horse battery"}}).encode()
call("POST", "/auth/register", credentials, {{"content-type": "application/json"}})
_, body = call("POST", "/auth/login", credentials, {{"content-type": "application/json"}})
token = json.loads(body)["access_token"]
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
width = height = 1024
raw = b"".join(b"\\0" + os.urandom(width * 3) for _ in range(height))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))
boundary = "e2e-boundary"
form = (f"--{{boundary}}\\r\\nContent-Disposition: form-data; name=\\"file\\"; filename=\\"big.png\\"\\r\\n"
        f"Content-Type: image/png\\r\\n\\r\\n").encode() + png + f"\\r\\n--{{boundary}}--\\r\\n".encode()
status, body = call("POST", "/images/upload", form, {{"authorization": "Bearer " + token,
                    "content-type": "multipart/form-data; boundary=" + boundary}})
name = json.loads(body)["filename"]
_, downloaded = call("GET", "/images/" + name, headers={{"authorization": "Bearer " + token}})
print(status, len(png), downloaded == png)
call("DELETE", "/images/" + name, headers={{"authorization": "Bearer " + token}})
"""
    result = exec_python(cluster, dev_release, pod, code, check=True)
    status, size, identical = result.stdout.split()
    assert status == "201"
    assert int(size) > 1024 * 1024
    assert identical == "True"


def evict(cluster, namespace: str, pod: str):
    """Ask the eviction API, as `kubectl drain` does, to remove a pod."""
    metadata = {"name": pod, "namespace": namespace}
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": metadata}
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction"
    return cluster.kubectl("create", "--raw", path, "-f", "-", input=json.dumps(eviction), check=False)


def test_each_disruption_budget_lets_one_pod_go_and_keeps_the_last(cluster, dev_release):
    # With node-1 cordoned an evicted pod's replacement cannot start, so the budget alone decides.
    cluster.kubectl("cordon", "node-1")
    try:
        for service in SERVICES:
            first, second = ready_pods(cluster, dev_release, service)
            allowed = evict(cluster, dev_release, first)
            assert allowed.returncode == 0, f"{service}: {allowed.stderr}"
            refused = evict(cluster, dev_release, second)
            assert refused.returncode != 0, f"{service}: the last available pod was evicted"
            assert "disruption budget" in refused.stderr, refused.stderr
            assert second in ready_pods(cluster, dev_release, service)
    finally:
        cluster.kubectl("uncordon", "node-1")
        for service in SERVICES:
            wait_until(
                lambda service=service: len(ready_pods(cluster, dev_release, service)) == 2,
                timeout=180,
                message=f"{service} to have two ready pods again",
            )
