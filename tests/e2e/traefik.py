"""Traefik (ci/cluster/build.sh) beside the local cluster, for the end-to-end tests: the Ingress
and Gateway API controller that serves the chart's Ingress with TLS and its HTTPRoute through a
Gateway, on the node's address.

Traefik runs on the node as nobody (kube-network-policies lets every packet a root process sends
through): its requests come from the node's address, which the api's policy admits through
networkPolicy.ingressController.extraPeers (conftest.dev_release). It reads the cluster with a
ServiceAccount token bound to the RBAC Traefik documents for both providers.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from devstack.wait import WaitAborted, wait_until
from tests.certificates import issue_test_certificates
from tests.e2e.conftest import Cluster

INGRESS_HOST = "api.platform.localhost"  # values/dev.yaml ingress.hosts
GATEWAY_HOST = "api.platform.local"  # tests/e2e/dev-ingress.yaml httpRoute.hostnames
GATEWAY_NAMESPACE = "gateway-system"
HTTPS_PORT = 8443  # Traefik's entrypoint and the Gateway's listener: a port a non-root user may bind
UNPRIVILEGED = "65534"  # nobody


def manifest(api_version: str, kind: str, name: str, namespace: str | None = None, **fields) -> dict:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **fields}


def traefik_rbac() -> list[dict]:
    """Traefik's documented ClusterRole for its Ingress and Gateway providers, for its ServiceAccount."""
    read = ["get", "list", "watch"]
    gateway_kinds = ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "tcproutes", "tlsroutes",
                     "referencegrants", "backendtlspolicies"]  # fmt: skip
    rules = [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        # The Ingress provider watches nodes for NodePort load balancing, IngressClasses or not.
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["services", "secrets", "configmaps"], "verbs": read},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": read},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": gateway_kinds, "verbs": read},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": [f"{k}/status" for k in gateway_kinds],
         "verbs": ["update"]},
    ]  # fmt: skip
    rbac = "rbac.authorization.k8s.io"
    return [
        manifest("v1", "Namespace", "ingress"),
        manifest("v1", "ServiceAccount", "traefik", "ingress"),
        manifest(f"{rbac}/v1", "ClusterRole", "traefik", rules=rules),
        manifest(f"{rbac}/v1", "ClusterRoleBinding", "traefik",
                 roleRef={"apiGroup": rbac, "kind": "ClusterRole", "name": "traefik"},
                 subjects=[{"kind": "ServiceAccount", "name": "traefik", "namespace": "ingress"}]),
    ]  # fmt: skip


def tls_secret(namespace: str, certificate: Path, key: Path) -> dict:
    data = {"tls.crt": certificate.read_bytes(), "tls.key": key.read_bytes()}
    encoded = {name: base64.b64encode(value).decode() for name, value in data.items()}
    return manifest("v1", "Secret", "platform-api-tls", namespace, type="kubernetes.io/tls", data=encoded)


def gateway() -> list[dict]:
    """The Gateway the chart's HTTPRoute names (httpRoute.parentRefs), which the cluster owner runs."""
    listener = {
        "name": "https", "protocol": "HTTPS", "port": HTTPS_PORT, "hostname": GATEWAY_HOST,
        "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "platform-api-tls"}]},
        "allowedRoutes": {"namespaces": {"from": "All"}},
    }  # fmt: skip
    api = "gateway.networking.k8s.io/v1"
    return [
        manifest(api, "GatewayClass", "traefik", spec={"controllerName": "traefik.io/gateway-controller"}),
        manifest(api, "Gateway", "platform-gateway", GATEWAY_NAMESPACE,
                 spec={"gatewayClassName": "traefik", "listeners": [listener]}),
    ]  # fmt: skip


@dataclass
class Entrypoint:
    """Traefik's HTTPS entrypoint, reached by host name with the certificate checked against ca."""

    address: str
    ca: Path

    def session(self, host: str) -> requests.Session:
        session = requests.Session()
        # Not REQUESTS_CA_BUNDLE and the like from the environment: they would win over `verify`.
        session.trust_env = False
        session.mount(f"https://{host}", _PinnedAddress(self.address))
        session.verify = str(self.ca)
        return session

    def url(self, host: str, path: str) -> str:
        return f"https://{host}:{HTTPS_PORT}{path}"


class _PinnedAddress(HTTPAdapter):
    """Connects to one address whatever the URL's host name says, as a DNS record would make
    it; the host name still goes out as SNI and Host, and the certificate is checked against it."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def send(self, request, **kwargs):
        host = urlsplit(request.url).hostname
        request.headers["Host"] = f"{host}:{HTTPS_PORT}"
        request.url = request.url.replace(f"//{host}:", f"//{self.address}:", 1)
        connection_pool_kwargs = self.poolmanager.connection_pool_kw
        connection_pool_kwargs["server_hostname"] = host
        connection_pool_kwargs["assert_hostname"] = host
        return super().send(request, **kwargs)


@contextlib.contextmanager
def running_traefik(cluster: Cluster, release_namespace: str, workdir: Path) -> Iterator[Entrypoint]:
    """Traefik serving the release's Ingress and HTTPRoute until the block ends."""
    certificates = issue_test_certificates(workdir, f"DNS:{INGRESS_HOST},DNS:{GATEWAY_HOST}")
    cluster.apply(*traefik_rbac())
    cluster.apply(
        manifest(
            "networking.k8s.io/v1",
            "IngressClass",
            "traefik",
            spec={"controller": "traefik.io/ingress-controller"},
        ),
        manifest("v1", "Namespace", GATEWAY_NAMESPACE),
    )
    cluster.apply(tls_secret(release_namespace, certificates.certificate, certificates.key),
                  tls_secret(GATEWAY_NAMESPACE, certificates.certificate, certificates.key))  # fmt: skip
    cluster.apply(*gateway())

    token = cluster.kubectl("create", "token", "traefik", "-n", "ingress", "--duration", "2h").stdout.strip()
    log_path = workdir / "traefik.log"
    # Traefik runs as nobody, who may not read the checkout's folders (a clone under /root).
    with tempfile.TemporaryDirectory(prefix="traefik-") as readable, open(log_path, "wb") as log:
        Path(readable).chmod(0o755)
        cluster_ca = shutil.copy(Path(cluster.env["CLUSTER_STATE"], "pki", "ca.crt"), readable)
        api_server = {
            "endpoint": f"https://{cluster.node_ip}:6443",
            "token": token,
            "certAuthFilePath": cluster_ca,
        }
        provider_flags = [f"--providers.{provider}.{name}={value}"
                          for provider in ("kubernetesingress", "kubernetesgateway")
                          for name, value in api_server.items()]  # fmt: skip
        process = subprocess.Popen(
            ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups",
             os.path.join(cluster.env["CLUSTER_BIN"], "traefik"),
             f"--entryPoints.websecure.address={cluster.node_ip}:{HTTPS_PORT}",
             # TLS on every router of the entrypoint, as k3s configures its websecure: a plain Ingress
             # router of Traefik's does not terminate TLS without it (or its router.tls annotation).
             "--entryPoints.websecure.http.tls=true",
             "--providers.kubernetesingress=true", "--providers.kubernetesgateway=true", *provider_flags,
             "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
             "--log.level=INFO", "--log.format=json", "--accesslog=true"],
            # nobody's own home, which does not exist: Traefik looks for a configuration file there.
            # Without KUBECONFIG it uses the endpoint and token above, not the admin's kubeconfig.
            env={"PATH": cluster.env["PATH"], "HOME": "/nonexistent"}, cwd="/",
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        entrypoint = Entrypoint(cluster.node_ip, certificates.ca)

        def routes(host: str) -> bool:
            if process.poll() is not None:
                raise WaitAborted(f"Traefik exited with {process.returncode} (log: {log_path})")
            session = entrypoint.session(host)
            return session.get(entrypoint.url(host, "/api/v1/posts"), timeout=5).status_code == 200

        try:
            for host in (INGRESS_HOST, GATEWAY_HOST):
                wait_until(lambda host=host: routes(host), timeout=90, interval=1,
                           message=f"Traefik to route {host} (log: {log_path})")  # fmt: skip
            yield entrypoint
        finally:
            process.terminate()
            process.wait(timeout=20)
