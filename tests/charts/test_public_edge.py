"""The public edge carries the public API only.

The Ingress and the HTTPRoute route /api/ to the api's application port and nothing else:
/live, /health and /ready answer on that port for the kubelet and the cluster, and /metrics is
on a port of its own that only Prometheus in the monitoring namespace reaches. Checked for
every values file in both namespace modes.
"""

from __future__ import annotations

import pytest
import yaml

from tests.charts.conftest import NAMESPACE, RELEASE
from tests.charts.test_network_policies import merged_values
from tests.charts.test_workloads import pod_specs, service_objects

APP_PORTS = {"auth": 3001, "api": 3002, "images": 3003}
METRICS_PORTS = {"auth": 9101, "api": 9102, "images": 9103}
PRIVATE_PATHS = ("/metrics", "/health", "/ready", "/live")
# Both sides of the public edge, with the default values.
BOTH_ROUTES = ("--set", "ingress.enabled=true", "--set", "httpRoute.enabled=true")


def prefix_matches(prefix: str, path: str) -> bool:
    """Ingress Prefix and Gateway API PathPrefix: element by element, a trailing / ignored."""
    prefix = prefix.rstrip("/")
    return prefix in ("", path) or path.startswith(prefix + "/")


def public_routes(objects: list[dict]) -> list[dict]:
    """Every path the platform's Ingresses and HTTPRoutes publish, with the Service port it reaches."""
    routes = []
    for obj in objects:
        if obj["kind"] == "Ingress":
            assert "defaultBackend" not in obj["spec"], "a default backend publishes every path"
            for rule in obj["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    service = path["backend"]["service"]
                    routes.append(
                        {
                            "route": f"Ingress/{obj['metadata']['name']}",
                            "namespace": obj["metadata"]["namespace"],
                            "path": path["path"],
                            "type": path["pathType"],
                            "service": service["name"],
                            "port": service["port"].get("name", service["port"].get("number")),
                        }
                    )
        elif obj["kind"] == "HTTPRoute":
            for rule in obj["spec"]["rules"]:
                # A rule without matches, or a match without a path, matches every path.
                for match in rule.get("matches") or [{}]:
                    path = match.get("path", {"type": "PathPrefix", "value": "/"})
                    for backend in rule["backendRefs"]:
                        routes.append(
                            {
                                "route": f"HTTPRoute/{obj['metadata']['name']}",
                                "namespace": backend.get("namespace", obj["metadata"]["namespace"]),
                                "path": path["value"],
                                "type": path["type"],
                                "service": backend["name"],
                                "port": backend["port"],
                            }
                        )
    return routes


def service_port(objects: list[dict], namespace: str, name: str, port) -> dict:
    (service,) = [
        obj
        for obj in objects
        if obj["kind"] == "Service"
        and (obj["metadata"]["name"], obj["metadata"]["namespace"]) == (name, namespace)
    ]
    (found,) = [p for p in service["spec"]["ports"] if port in (p["name"], p["port"])]
    return found


def check_public_edge(objects: list[dict]) -> list[dict]:
    ours = [
        obj
        for obj in objects
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "platform"
    ]
    routes = public_routes(ours)
    for route in routes:
        assert route["type"] in ("Prefix", "PathPrefix"), route
        assert prefix_matches("/api/", route["path"]) and route["path"].rstrip("/") != "", route
        for private in PRIVATE_PATHS:
            assert not prefix_matches(route["path"], private), f"{route['route']} publishes {private}"
        port = service_port(objects, route["namespace"], route["service"], route["port"])
        assert route["service"] == f"{RELEASE}-api", route
        assert (port["name"], port["port"], port["targetPort"]) == ("http", APP_PORTS["api"], "http"), route
    return routes


def test_every_public_route_is_under_api_and_reaches_the_api_application_port(render):
    check_public_edge(render.objects)


def test_the_ingress_and_the_http_route_publish_api_only_when_both_are_on(template):
    result = template(*BOTH_ROUTES)
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    routes = check_public_edge(objects)
    assert {(route["route"].split("/")[0], route["path"]) for route in routes} == {
        ("Ingress", "/api/"),
        ("HTTPRoute", "/api/"),
    }


@pytest.mark.parametrize(
    ("prefix", "path", "matches"),
    [
        ("/api/", "/api/v1/posts", True),
        ("/api/", "/api", True),
        ("/api/", "/apiary", False),
        ("/api/", "/metrics", False),
        ("/", "/metrics", True),
    ],
)
def test_prefix_matching_is_by_path_element(prefix, path, matches):
    assert prefix_matches(prefix, path) is matches


def test_each_service_and_container_has_a_metrics_port_beside_its_application_port(render):
    services = service_objects(render, "Service")
    for name, service in services.items():
        assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
            ("http", APP_PORTS[name], "http"),
            ("metrics", METRICS_PORTS[name], "metrics"),
        }
    for deployment in service_objects(render, "Deployment").values():
        name = deployment["metadata"]["labels"]["app.kubernetes.io/name"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {(p["name"], p["containerPort"]) for p in container["ports"]} == {
            ("http", APP_PORTS[name]),
            ("metrics", METRICS_PORTS[name]),
        }
        # The probes stay on the application port.
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "http"
    for configmap in service_objects(render, "ConfigMap").values():
        name = configmap["metadata"]["labels"]["app.kubernetes.io/name"]
        assert configmap["data"]["METRICS_PORT"] == str(METRICS_PORTS[name])


def test_the_service_monitors_scrape_the_metrics_port(render):
    for name, monitor in service_objects(render, "ServiceMonitor").items():
        endpoints = [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]]
        assert endpoints == [("metrics", "/metrics")], name


def peer_is_monitoring(peer: dict, monitoring: str) -> bool:
    selector = peer.get("namespaceSelector", {}).get("matchLabels", {})
    return selector == {"kubernetes.io/metadata.name": monitoring} and "ipBlock" not in peer


def test_the_metrics_port_is_reachable_only_from_the_monitoring_namespace(render):
    values = merged_values(render)
    if not values["networkPolicy"]["enabled"]:
        pytest.skip("NetworkPolicies are off in this values file")
    monitoring = values["global"]["namespaces"]["monitoring"]
    deployments = {f"{RELEASE}-{service}" for service in APP_PORTS}
    pods = {
        spec["containers"][0]["name"]: owner
        for owner, spec in pod_specs(render.objects)
        if owner["kind"] == "Deployment" and owner["metadata"]["name"] in deployments
    }
    for name, deployment in pods.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        namespace = deployment["metadata"].get("namespace", NAMESPACE)
        admitting = []
        for policy in render.of_kind("NetworkPolicy"):
            selector = policy["spec"]["podSelector"].get("matchLabels", {})
            if policy["metadata"]["namespace"] != namespace or not selector.items() <= labels.items():
                continue
            for rule in policy["spec"].get("ingress", []):
                ports = rule.get("ports")
                if ports and not any(p.get("port") in (METRICS_PORTS[name], "metrics") for p in ports):
                    continue
                admitting.append(rule)
                assert rule.get("from"), f"{policy['metadata']['name']} opens {name}'s metrics port to all"
                assert all(peer_is_monitoring(peer, monitoring) for peer in rule["from"]), (name, rule)
        assert admitting, f"Prometheus cannot reach the metrics port of {name}"
