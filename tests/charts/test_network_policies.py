"""The rendered NetworkPolicies, evaluated as Kubernetes does, allow exactly the design's flows.

Every workload the chart renders (with its real pod labels and namespace) plus the actors around
it (ingress controller, Prometheus, cluster DNS, an unrelated pod, the external database and
object store) tries every port every other one listens on; the allowed set must equal the
expected one, in both namespace modes and for every values file.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json

import pytest
import yaml

from tests.charts.conftest import CHART, NAMESPACE, RELEASE, VALUES_DIR
from tests.charts.test_workloads import pod_specs


@dataclasses.dataclass(frozen=True)
class Actor:
    name: str
    namespace: str | None  # None: outside the cluster, reached by IP
    labels: tuple = ()
    ports: tuple = ()
    ip: str | None = None

    @property
    def label_dict(self):
        return dict(self.labels)


def merged_values(render) -> dict:
    """The values a render was made with: values.yaml, its values file, and its --set overrides."""

    def merge(base, override):
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if render.values_name != "default":
        merge(values, yaml.safe_load((VALUES_DIR / f"{render.values_name}.yaml").read_text()))
    values["global"]["namespaces"]["mode"] = render.mode
    for path, value in getattr(render, "overrides", {}).items():
        *parents, key = path.split(".")
        target = values
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = value
    return values


def workload_actors(render) -> list[Actor]:
    actors = []
    for owner, spec in pod_specs(render.objects):
        # The monitoring stack's own pods live in its namespace, under its own policies.
        if owner["metadata"].get("namespace") == merged_values(render)["global"]["namespaces"]["monitoring"]:
            continue
        if owner["kind"] == "Pod":
            template = owner
        elif owner["kind"] == "CronJob":
            template = owner["spec"]["jobTemplate"]["spec"]["template"]
        else:
            template = owner["spec"]["template"]
        labels = template["metadata"].get("labels", {})
        name = labels.get("app.kubernetes.io/name") or labels.get("app.kubernetes.io/component")
        if labels.get("app.kubernetes.io/component") == "provisioning":
            name = "minio-provisioning"
        ports = tuple(sorted({p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}))
        actors.append(
            Actor(name, owner["metadata"].get("namespace", "platform"), tuple(sorted(labels.items())), ports)
        )
    return actors


def outside_actors(values) -> list[Actor]:
    np = values["networkPolicy"]
    controller = np["ingressController"]
    return [
        Actor(
            "ingress-controller",
            controller["namespace"],
            tuple(sorted((controller["podSelector"] or {"app": "controller"}).items())),
        ),
        Actor(
            "prometheus",
            values["global"]["namespaces"]["monitoring"],
            tuple(sorted(np["monitoringPodSelector"].items())),
        ),
        dns_actor(np["dns"]),
        Actor("stranger", "default", (("app", "stranger"),)),
        Actor(
            "external-database", None, ports=(values["global"]["externalDatabase"]["port"],), ip="10.20.0.10"
        ),
        Actor("external-object-storage", None, ports=(443,), ip="52.219.170.1"),
    ]


def dns_actor(dns: dict) -> Actor:
    """The cluster DNS as networkPolicy.dns describes it: pods, or an address (NodeLocal DNSCache)."""
    peer = dns["to"][0]
    ports = tuple(sorted({port["port"] for port in dns["ports"]}))
    if "ipBlock" in peer:
        address = next(ipaddress.ip_network(peer["ipBlock"]["cidr"]).hosts(), None)
        return Actor("dns", None, ports=ports, ip=str(address or peer["ipBlock"]["cidr"].split("/")[0]))
    namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    return Actor("dns", namespace, tuple(sorted(peer["podSelector"]["matchLabels"].items())), ports)


def selects(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return True
    assert not selector.get("matchExpressions"), "the evaluator only knows matchLabels"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def peer_matches(peer: dict, actor: Actor, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if actor.ip is None:
            return False
        address = ipaddress.ip_address(actor.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if actor.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": actor.namespace}):
            return False
    elif actor.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), actor.label_dict)


def port_matches(rule_ports, port: int) -> bool:
    return not rule_ports or any(p.get("port") in (None, port) for p in rule_ports)


def allowed(policies, actor: Actor, other: Actor, port: int, direction: str) -> bool:
    """Does `actor`'s side allow traffic to (egress) or from (ingress) `other` on `port`?"""
    if actor.namespace is None:
        return True
    key, peers_key, kind = (
        ("egress", "to", "Egress") if direction == "egress" else ("ingress", "from", "Ingress")
    )
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == actor.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], actor.label_dict)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (
                peers is None
                or any(peer_matches(peer, other, policy["metadata"]["namespace"]) for peer in peers)
            ) and port_matches(rule.get("ports"), port):
                return True
    return False


def allowed_flows(render) -> set[tuple[str, str, int]]:
    values = merged_values(render)
    actors = workload_actors(render) + outside_actors(values)
    policies = render.of_kind("NetworkPolicy")
    flows = set()
    for source in actors:
        for target in actors:
            if source is target or source.namespace is None:
                continue
            for port in target.ports:
                if allowed(policies, source, target, port, "egress") and allowed(
                    policies, target, source, port, "ingress"
                ):
                    flows.add((source.name, target.name, port))
    outside = {"ingress-controller", "prometheus", "dns", "stranger"}
    # Flows between two actors the chart does not manage are none of its business.
    return {
        flow
        for flow in flows
        if not (flow[0] in outside and flow[1] in outside | {"external-database", "external-object-storage"})
    }


def expected_flows(render) -> set[tuple[str, str, int]]:
    values = merged_values(render)
    bundled_db = values["postgresql"]["enabled"]
    bundled_s3 = values["minio"]["enabled"]
    services = {"auth": 3001, "api": 3002, "images": 3003}
    flows = {
        ("ingress-controller", "api", 3002),
        ("platform-tests", "api", 3002),
        ("api", "auth", 3001),
        ("api", "images", 3003),
        # The JWKS: images checks tokens with auth's public keys (not the reconcile pods).
        ("images", "auth", 3001),
    }
    # Prometheus reaches the metrics ports only, never the application ports.
    metrics_ports = {"auth": 9101, "api": 9102, "images": 9103}
    flows |= {("prometheus", name, port) for name, port in metrics_ports.items()}
    database = ("postgresql", 5432) if bundled_db else ("external-database", 5432)
    flows |= {(name, *database) for name in services}
    store = ("minio", 9000) if bundled_s3 else ("external-object-storage", 443)
    flows.add(("images", *store))
    pods = set(services) | {"platform-tests"}
    if values["images"].get("reconcile", {}).get("enabled", True):
        # The reconcile CronJob's pods reach what the images pods reach, and nothing reaches them.
        flows |= {("images-reconcile", *database), ("images-reconcile", *store)}
        pods.add("images-reconcile")
    if bundled_db:
        pods.add("postgresql")
        if values["postgresql"]["metrics"]["enabled"]:
            flows.add(("prometheus", "postgresql", 9187))
    backup = values["backup"]
    if backup["enabled"]:
        # An external backup store or replica is S3 on the internet here, like the images bucket
        # of values/prod.yaml: the same outside actor stands for both.
        backup_store = (
            ("minio", 9000)
            if bundled_s3 and not backup["s3"]["endpoint"]
            else ("external-object-storage", 443)
        )
        replica = ("external-object-storage", 443)
        flows |= {("backup", *database), ("backup", *backup_store)}
        pods.add("backup")
        replication = backup["replication"]["enabled"] and values["images"].get("enabled", True)
        if replication:
            # The two stores only (and DNS, as every pod, to resolve their names).
            flows |= {("images-replication", *store), ("images-replication", *replica)}
            pods.add("images-replication")
        if values["restore"]["enabled"]:
            flows |= {("restore", *database), ("restore", *backup_store), ("restore", *store)}
            if replication:
                flows.add(("restore", *replica))
            pods.add("restore")
    if bundled_s3:
        pods |= {"minio", "minio-provisioning"}
        flows.add(("minio-provisioning", "minio", 9000))
        if values["minio"]["metrics"]["enabled"]:
            flows.add(("prometheus", "minio", 9000))
    flows |= {(pod, "dns", 53) for pod in pods}
    return flows


def test_the_network_policies_allow_exactly_the_design_flows(render):
    allowed_set = allowed_flows(render)
    expected = expected_flows(render)
    assert allowed_set == expected, (
        f"allowed but not designed: {sorted(allowed_set - expected)}\n"
        f"designed but blocked: {sorted(expected - allowed_set)}"
    )


def test_every_namespace_with_platform_pods_denies_by_default(render):
    policies = render.of_kind("NetworkPolicy")
    for pod in workload_actors(render):
        deny = [
            p
            for p in policies
            if p["metadata"]["namespace"] == pod.namespace
            and selects(p["spec"]["podSelector"], pod.label_dict)
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
        ]
        assert deny, f"no default-deny policy selects {pod.name} in {pod.namespace}"


def test_every_policy_selects_only_the_release_pods(render):
    # In single mode the release namespace may be shared: its other workloads keep their traffic.
    for policy in render.of_kind("NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        name = policy["metadata"]["name"]
        assert selector.get("matchLabels"), f"{name} selects every pod of its namespace"
        assert selector["matchLabels"].get("app.kubernetes.io/instance") == RELEASE, name


def test_a_neighbour_in_a_shared_namespace_keeps_its_traffic(get_render):
    render = get_render("default-single")
    policies = render.of_kind("NetworkPolicy")
    neighbour = Actor("neighbour", NAMESPACE, (("app.kubernetes.io/name", "blog"),), (8080,))
    other_release = Actor("other", NAMESPACE, (("app.kubernetes.io/instance", "other"),), (8080,))
    stranger = Actor("stranger", "default", (("app", "stranger"),))
    anywhere = Actor("anywhere", None, ports=(443,), ip="52.219.170.1")
    for pod in (neighbour, other_release):
        assert not [
            p["metadata"]["name"] for p in policies if selects(p["spec"]["podSelector"], pod.label_dict)
        ]
        assert allowed(policies, pod, stranger, 8080, "ingress")
        assert allowed(policies, pod, anywhere, 443, "egress")
    # The platform's own pods in that namespace stay behind the default deny.
    api = next(pod for pod in workload_actors(render) if pod.name == "api")
    assert not allowed(policies, api, neighbour, 3002, "ingress")


EXTERNAL_WITHOUT_PEERS = [
    (
        "an external database",
        "networkPolicy.externalDatabase=[]",
        "networkPolicy.externalDatabase is required with an external database",
    ),
    (
        "an external object store",
        "networkPolicy.externalObjectStorage.to=[]",
        "networkPolicy.externalObjectStorage.to is required with an external object store",
    ),
]


@pytest.mark.parametrize(("server", "setting", "message"), EXTERNAL_WITHOUT_PEERS, ids=lambda v: v)
def test_an_external_server_without_its_egress_peers_is_refused(template, server, setting, message):
    # Without them the default deny lets nothing out to it and the pods crash-loop.
    result = template("-f", str(VALUES_DIR / "prod.yaml"), "--set-json", setting)
    assert result.returncode != 0, f"{server} without egress peers was accepted"
    assert message in result.stderr, result.stderr
    without_policies = template(
        "-f", str(VALUES_DIR / "prod.yaml"), "--set-json", setting, "--set", "networkPolicy.enabled=false"
    )
    assert without_policies.returncode == 0, without_policies.stderr


def test_the_evaluator_notices_a_policy_that_lets_more_through(get_render):
    render = copy.deepcopy(get_render("staging-multi"))
    (auth,) = [p for p in render.of_kind("NetworkPolicy") if p["metadata"]["name"] == "platform-auth"]
    auth["spec"]["ingress"].append({"from": [{"namespaceSelector": {}}]})
    extra = allowed_flows(render) - expected_flows(render)
    assert ("stranger", "auth", 3001) in extra and ("ingress-controller", "auth", 3001) in extra


def test_the_images_reconcile_pods_are_evaluated_and_blocked_from_anything_else(get_render):
    render = get_render("staging-multi")
    assert "images-reconcile" in {actor.name for actor in workload_actors(render)}
    flows = allowed_flows(render)
    assert {target for source, target, _ in flows if source == "images-reconcile"} == {
        "postgresql",
        "minio",
        "dns",
    }
    assert not [flow for flow in flows if flow[1] == "images-reconcile"]


NODE_LOCAL_DNS = [{"ipBlock": {"cidr": "169.254.20.10/32"}}]


def test_dns_may_be_node_local_dns_at_a_link_local_address(template, get_render):
    result = template(
        "-f",
        str(VALUES_DIR / "staging.yaml"),
        "--set-json",
        f"networkPolicy.dns.to={json.dumps(NODE_LOCAL_DNS)}",
    )
    assert result.returncode == 0, result.stderr
    base = get_render("staging-multi")
    render = dataclasses.replace(
        base, text=result.stdout, objects=[obj for obj in yaml.safe_load_all(result.stdout) if obj]
    )
    dns_policies = [
        p for p in render.of_kind("NetworkPolicy") if p["metadata"]["name"] == "platform-allow-dns"
    ]
    assert {p["metadata"]["namespace"] for p in dns_policies} == {
        "auth",
        "api",
        "image-storage",
        "infrastructure",
    }
    for policy in dns_policies:
        assert policy["spec"]["egress"] == [
            {
                "to": NODE_LOCAL_DNS,
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            }
        ]
    node_local = Actor("node-local-dns", None, ports=(53,), ip="169.254.20.10")
    kube_dns = Actor("kube-dns", "kube-system", (("k8s-app", "kube-dns"),), (53,))
    policies = render.of_kind("NetworkPolicy")
    pods = workload_actors(render)
    assert {"auth", "api", "images", "images-reconcile", "postgresql", "minio"} <= {pod.name for pod in pods}
    for pod in pods:
        assert allowed(policies, pod, node_local, 53, "egress"), pod.name
        assert not allowed(policies, pod, node_local, 80, "egress"), pod.name
        assert not allowed(policies, pod, kube_dns, 53, "egress"), pod.name


def test_the_dns_peers_and_ports_are_checked_by_the_schema(template):
    wrong = template("--set-json", 'networkPolicy.dns.to=[{"ipBlok": {"cidr": "169.254.20.10/32"}}]')
    assert wrong.returncode != 0 and "/networkPolicy/dns/to/0" in wrong.stderr, wrong.stderr
    wrong = template("--set-json", 'networkPolicy.dns.ports=[{"port": 53, "protocol": "ICMP"}]')
    assert wrong.returncode != 0 and "/networkPolicy/dns/ports/0/protocol" in wrong.stderr, wrong.stderr


HOST_NETWORK_CONTROLLER = [{"ipBlock": {"cidr": "192.168.10.0/24"}}]


def test_extra_ingress_controller_peers_reach_the_api_and_nothing_else(template, get_render):
    # A controller on the host network or a load balancer outside the cluster has no pod labels.
    result = template(
        "-f",
        str(VALUES_DIR / "staging.yaml"),
        "--set-json",
        f"networkPolicy.ingressController.extraPeers={json.dumps(HOST_NETWORK_CONTROLLER)}",
    )
    assert result.returncode == 0, result.stderr
    render = dataclasses.replace(
        get_render("staging-multi"),
        text=result.stdout,
        objects=[obj for obj in yaml.safe_load_all(result.stdout) if obj],
    )
    policies = render.of_kind("NetworkPolicy")
    controller = Actor("host-network-controller", None, ip="192.168.10.7")
    elsewhere = Actor("elsewhere", None, ip="192.168.11.7")
    pods = {pod.name: pod for pod in workload_actors(render)}
    assert allowed(policies, pods["api"], controller, 3002, "ingress")
    assert not allowed(policies, pods["api"], elsewhere, 3002, "ingress")
    assert not allowed(policies, pods["api"], controller, 3001, "ingress")
    for name in ("auth", "images", "postgresql", "minio"):
        assert not any(
            allowed(policies, pods[name], controller, port, "ingress") for port in pods[name].ports
        ), name
    # The pod selector still holds next to them.
    assert allowed_flows(render) == expected_flows(render)


def test_extra_ingress_controller_peers_are_checked_by_the_schema(template):
    wrong = template(
        "--set-json", 'networkPolicy.ingressController.extraPeers=[{"ipblock": {"cidr": "10.0.0.0/8"}}]'
    )
    assert wrong.returncode != 0 and "/networkPolicy/ingressController/extraPeers/0" in wrong.stderr, (
        wrong.stderr
    )


BACKUPS_EVERYWHERE = {
    "backup.enabled": True,
    "restore.enabled": True,
    "backup.replication.enabled": True,
    "backup.replication.endpoint": "https://s3.eu-west-1.amazonaws.com",
    "backup.replication.bucket": "images-replica",
    "backup.replication.existingSecret": "replica-keys",
    "networkPolicy.backupObjectStorage.to": [{"ipBlock": {"cidr": "52.219.0.0/16"}}],
}


@dataclasses.dataclass
class OverriddenRender:
    """A render with --set-json overrides, which merged_values applies too."""

    values_name: str
    mode: str
    objects: list
    overrides: dict

    def of_kind(self, kind):
        return [obj for obj in self.objects if obj["kind"] == kind]


@pytest.mark.parametrize("values_name", ["staging", "prod"])
def test_the_backup_replication_and_restore_pods_reach_exactly_their_stores(template, values_name):
    args = [
        arg
        for path, value in BACKUPS_EVERYWHERE.items()
        for arg in ("--set-json", f"{path}={json.dumps(value)}")
    ]
    if values_name == "prod":
        args += ["--set-string", "restore.adminSecret=platform-restore-admin"]
    result = template("-f", str(VALUES_DIR / f"{values_name}.yaml"), *args)
    assert result.returncode == 0, result.stderr
    render = OverriddenRender(
        values_name, "multi", [obj for obj in yaml.safe_load_all(result.stdout) if obj], BACKUPS_EVERYWHERE
    )
    assert {"backup", "images-replication", "restore"} <= {actor.name for actor in workload_actors(render)}
    allowed_set, expected = allowed_flows(render), expected_flows(render)
    assert allowed_set == expected, (
        f"allowed but not designed: {sorted(allowed_set - expected)}\n"
        f"designed but blocked: {sorted(expected - allowed_set)}"
    )
    # Nothing may reach them, and the replication never reaches a database.
    assert not [flow for flow in allowed_set if flow[1] in {"backup", "images-replication", "restore"}]
    assert not [
        flow
        for flow in allowed_set
        if flow[0] == "images-replication" and flow[1] in {"postgresql", "external-database"}
    ]
