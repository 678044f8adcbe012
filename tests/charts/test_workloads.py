"""The three services' workloads: security, scaling, probes, settings and secrets handling."""

from __future__ import annotations

import base64
import json
import re
import subprocess

import pytest
import yaml

from tests.charts.conftest import CHART, ROOT, VALUES_DIR

SERVICES = {"auth": 3001, "api": 3002, "images": 3003}
# The design's replica ranges; dev may lower the maximum only.
DESIGN_REPLICAS = {"auth": (2, 10), "api": (2, 15), "images": (2, 20)}


def pod_specs(objects):
    """(owner, pod spec) of every pod the objects create."""
    for obj in objects:
        kind = obj["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj, obj["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield obj, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield obj, obj["spec"]


ALLOWED_VOLUMES = {
    "name",
    "configMap",
    "secret",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
    "csi",
    "ephemeral",
}


def restricted_violations(spec: dict) -> list[str]:
    """The Pod Security Standard 'restricted' (v1.30+) rules, plus a read-only root filesystem."""
    problems = [f"{field} is set" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    for volume in spec.get("volumes") or []:
        if set(volume) - ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} has a forbidden type {set(volume) - ALLOWED_VOLUMES}")
    pod = spec.get("securityContext", {})
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        problems += [
            f"container {container['name']} {problem}" for problem in container_violations(container, pod)
        ]
    return problems


def container_violations(container: dict, pod: dict) -> list[str]:
    context = container.get("securityContext", {})
    capabilities = context.get("capabilities", {})
    seccomp = context.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
    rules = {
        "is privileged": context.get("privileged"),
        "does not set allowPrivilegeEscalation: false": context.get("allowPrivilegeEscalation") is not False,
        "does not drop ALL capabilities": capabilities.get("drop") != ["ALL"],
        "adds capabilities": set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"},
        "may run as root": not (context.get("runAsNonRoot") or pod.get("runAsNonRoot")),
        "runs as uid 0": context.get("runAsUser", pod.get("runAsUser")) == 0,
        "has no RuntimeDefault seccomp profile": seccomp not in ("RuntimeDefault", "Localhost"),
        "has a writable root filesystem": not context.get("readOnlyRootFilesystem"),
        "uses a hostPort": any(port.get("hostPort") for port in container.get("ports", [])),
    }
    return [problem for problem, broken in rules.items() if broken]


def our_pods(render):
    return [(owner, spec) for owner, spec in pod_specs(render.ours())]


def service_objects(render, kind):
    found = {
        obj["metadata"]["labels"]["app.kubernetes.io/name"]: obj
        for obj in render.of_kind(kind)
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "platform"
    }
    return {name: obj for name, obj in found.items() if name in SERVICES}


def deployment_container(render, service):
    deployment = service_objects(render, "Deployment")[service]
    spec = deployment["spec"]["template"]["spec"]
    return deployment, spec, next(c for c in spec["containers"] if c["name"] == service)


def test_every_container_of_ours_runs_under_the_restricted_profile_with_a_read_only_root(render):
    pods = our_pods(render)
    assert len(pods) >= 5  # three services, the images reconcile CronJob and the helm test pod
    assert ("CronJob", "platform-images-reconcile") in {
        (owner["kind"], owner["metadata"]["name"]) for owner, _ in pods
    }
    problems = [
        f"{owner['kind']}/{owner['metadata']['name']}: {problem}"
        for owner, spec in pods
        for problem in restricted_violations(spec)
    ]
    assert not problems, "\n".join(problems)


def test_the_third_party_pods_also_pass_the_restricted_profile(render):
    """PostgreSQL, MinIO and the monitoring stack share the namespaces labelled 'restricted'."""
    third_party = [
        (owner, spec)
        for owner, spec in pod_specs(render.objects)
        if owner["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "platform"
    ]
    problems = [
        f"{owner['kind']}/{owner['metadata']['name']}: {problem}"
        for owner, spec in third_party
        for problem in restricted_violations(spec)
    ]
    assert not problems, "\n".join(problems)
    for prometheus in [*render.of_kind("Prometheus"), *render.of_kind("Alertmanager")]:
        context = prometheus["spec"]["securityContext"]
        assert context["runAsNonRoot"] and context["seccompProfile"]["type"] == "RuntimeDefault"


def test_the_prometheus_operator_mounts_no_secret_that_only_the_disabled_webhooks_would_create(get_render):
    for render_id in ("staging-multi", "prod-multi"):
        (operator,) = [d for d in get_render(render_id).of_kind("Deployment")
                       if d["metadata"]["name"].endswith("-operator")]  # fmt: skip
        volumes = operator["spec"]["template"]["spec"].get("volumes") or []
        mounted = [volume["secret"]["secretName"] for volume in volumes if "secret" in volume]
        assert mounted == [], f"{render_id}: {mounted}"
        (container,) = operator["spec"]["template"]["spec"]["containers"]
        assert not any(arg.startswith("--web.cert-file") for arg in container["args"])


def test_each_service_has_an_hpa_on_cpu_and_memory_and_a_pdb_keeping_one_pod(render):
    hpas = service_objects(render, "HorizontalPodAutoscaler")
    pdbs = service_objects(render, "PodDisruptionBudget")
    assert set(hpas) == set(SERVICES) and set(pdbs) == set(SERVICES)
    for service, (low, high) in DESIGN_REPLICAS.items():
        spec = hpas[service]["spec"]
        assert hpas[service]["apiVersion"] == "autoscaling/v2"
        assert spec["minReplicas"] == low
        if render.values_name == "dev":
            assert low <= spec["maxReplicas"] <= high
        else:
            assert spec["maxReplicas"] == high, service
        assert {m["resource"]["name"] for m in spec["metrics"]} == {"cpu", "memory"}
        assert pdbs[service]["apiVersion"] == "policy/v1"
        assert pdbs[service]["spec"]["minAvailable"] == 1
        deployment = service_objects(render, "Deployment")[service]
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_each_hpa_scales_in_one_pod_a_minute_after_the_configured_window(template):
    result = template("--set", "api.autoscaling.scaleDownStabilizationSeconds=45")
    assert result.returncode == 0, result.stderr
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    hpas = {
        doc["metadata"]["name"]: doc["spec"]["behavior"]["scaleDown"]
        for doc in documents
        if doc["kind"] == "HorizontalPodAutoscaler"
    }
    assert hpas["platform-api"]["stabilizationWindowSeconds"] == 45
    assert hpas["platform-auth"]["stabilizationWindowSeconds"] == 300
    assert hpas["platform-images"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    refused = template("--set", "images.autoscaling.scaleDownStabilizationSeconds=7200")
    assert refused.returncode != 0 and "scaleDownStabilizationSeconds" in refused.stderr, refused.stderr


def test_probes_resources_shutdown_and_spreading_follow_the_design(render):
    for service, port in SERVICES.items():
        deployment, spec, container = deployment_container(render, service)
        assert container["ports"] == [
            {"name": "http", "containerPort": port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": port - 3000 + 9100, "protocol": "TCP"},
        ]
        assert container["startupProbe"]["httpGet"]["path"] == "/live"
        assert container["livenessProbe"]["httpGet"]["path"] == "/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        resources = container["resources"]
        # Within the design's 128-512 Mi and 100-400m; the sizing test below says more.
        assert _mebibytes(resources["requests"]["memory"]) <= _mebibytes(resources["limits"]["memory"]) == 512
        assert resources["requests"]["cpu"] in ("100m", "400m") and resources["limits"]["cpu"] == "400m"
        config = config_map(render, service)
        graceful = int(config["GUNICORN_GRACEFUL_TIMEOUT"])
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] > graceful + pause
        assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
        assert spec["automountServiceAccountToken"] is False
        assert {v["name"]: v for v in spec["volumes"]}["tmp"]["emptyDir"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])
    accounts = service_objects(render, "ServiceAccount")
    assert all(account["automountServiceAccountToken"] is False for account in accounts.values())


def config_map(render, service):
    name = f"platform-{service}"
    return next(obj["data"] for obj in render.of_kind("ConfigMap") if obj["metadata"]["name"] == name)


def test_services_get_the_environment_contract_with_secrets_only_by_reference(render):
    for service, port in SERVICES.items():
        _, spec, container = deployment_container(render, service)
        env = {item["name"]: item for item in container["env"]}
        config = config_map(render, service)
        assert config["SERVICE_NAME"] == service and config["PORT"] == str(port)
        for name in (
            "WEB_CONCURRENCY",
            "GUNICORN_THREADS",
            "GUNICORN_GRACEFUL_TIMEOUT",
            "LOG_LEVEL",
        ):
            assert name in config, (service, name)
        # The api checks no token itself: no token setting.
        token_settings = {"JWT_ISSUER", "JWT_AUDIENCE"}
        assert token_settings <= set(config) if service != "api" else not token_settings & set(config)
        assert "secretKeyRef" in env["DB_PASSWORD"]["valueFrom"], service
        assert env["DATABASE_URL"]["value"].startswith("postgresql+psycopg2://$(DB_USER):$(DB_PASSWORD)@")
        names = [item["name"] for item in container["env"]]
        assert names.index("DB_USER") < names.index("DATABASE_URL")
        assert names.index("DB_PASSWORD") < names.index("DATABASE_URL")
        migrate = spec["initContainers"][0]
        assert migrate["command"] == ["platform-migrate", service]
        # The same, but for the signing key: migrations sign nothing.
        signing = [item for item in container["env"] if item["name"].startswith("JWT_")]
        assert migrate["env"] == [item for item in container["env"] if item not in signing]
    api = config_map(render, "api")
    assert api["AUTH_SERVICE_URL"].endswith(":3001") and api["IMAGES_SERVICE_URL"].endswith(":3003")
    images = config_map(render, "images")
    assert images["S3_CREATE_BUCKET"] == "false" and images["S3_BUCKET"]
    assert re.fullmatch(
        r"http://platform-auth\.[a-z-]+\.svc\.[a-z.]+:3001/\.well-known/jwks\.json", images["AUTH_JWKS_URL"]
    )
    assert images["JWKS_CACHE_SECONDS"] == config_map(render, "auth")["JWKS_MAX_AGE_SECONDS"]
    _, _, container = deployment_container(render, "images")
    env = {item["name"]: item for item in container["env"]}
    assert "secretKeyRef" in env["S3_SECRET_ACCESS_KEY"]["valueFrom"]


@pytest.mark.parametrize("render_id", ["default-multi", "staging-multi", "prod-multi"])
def test_multi_namespace_mode_uses_the_design_namespaces_labelled_restricted(get_render, render_id):
    render = get_render(render_id)
    namespaces = {obj["metadata"]["name"]: obj["metadata"]["labels"] for obj in render.of_kind("Namespace")}
    if render_id == "prod-multi":
        # Production's namespaces exist before the release, holding its Secrets: the chart
        # README's prerequisites create and label them (run by tests/e2e).
        assert not namespaces
    else:
        assert {"auth", "api", "image-storage"} <= set(namespaces)
    for labels in namespaces.values():
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for service, namespace in (("auth", "auth"), ("api", "api"), ("images", "image-storage")):
        assert service_objects(render, "Deployment")[service]["metadata"]["namespace"] == namespace
    for obj in render.objects:
        if obj["kind"] in ("StatefulSet",) and "postgresql" in obj["metadata"]["name"]:
            assert obj["metadata"]["namespace"] == "infrastructure"


def test_single_namespace_mode_keeps_everything_in_the_release_namespace(get_render):
    render = get_render("default-single")
    assert not render.of_kind("Namespace")
    assert {obj["metadata"].get("namespace") for obj in render.objects} == {"platform"}


def rendered_ingress(template, *args: str) -> dict:
    result = template("--set", "ingress.enabled=true", *args)
    assert result.returncode == 0, result.stderr
    (ingress,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "Ingress"]
    return ingress


def test_a_tls_secret_the_user_supplies_gets_no_issuer_annotation_for_cert_manager_to_take_it_over(
    template,
):
    ingress = rendered_ingress(
        template, "--set", "ingress.tls.enabled=true", "--set", "ingress.tls.secretName=my-own-certificate"
    )
    assert ingress["spec"]["tls"][0]["secretName"] == "my-own-certificate"
    assert not any(key.startswith("cert-manager.io/") for key in ingress["metadata"].get("annotations") or {})


def test_a_configured_cluster_issuer_is_annotated_for_cert_manager_only_with_tls_on(template):
    issued = rendered_ingress(
        template, "--set", "ingress.tls.enabled=true", "--set", "ingress.tls.clusterIssuer=letsencrypt-prod"
    )
    assert issued["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    plain = rendered_ingress(template, "--set", "ingress.tls.clusterIssuer=letsencrypt-prod")
    assert "tls" not in plain["spec"]
    assert "cert-manager.io/cluster-issuer" not in (plain["metadata"].get("annotations") or {})


def test_the_schema_refuses_a_cluster_issuer_that_is_no_kubernetes_name(template):
    result = template("--set", "ingress.tls.clusterIssuer=Lets Encrypt")
    assert result.returncode != 0 and "/ingress/tls/clusterIssuer" in result.stderr, result.stderr


def test_only_the_api_is_exposed_with_tls_and_a_body_size_for_uploads(get_render):
    staging = get_render("staging-multi")
    (ingress,) = staging.of_kind("Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-staging"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "25m"
    assert ingress["spec"]["tls"][0]["secretName"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "platform-api"
    prod = get_render("prod-multi")
    (route,) = prod.of_kind("HTTPRoute")
    assert route["spec"]["rules"][0]["backendRefs"][0] == {
        "group": "",
        "kind": "Service",
        "name": "platform-api",
        "port": 3002,
        "weight": 1,
    }
    (certificate,) = prod.of_kind("Certificate")
    assert certificate["spec"]["issuerRef"]["name"] == "letsencrypt-prod"
    assert not prod.of_kind("Ingress")


def test_service_monitors_scrape_each_service_every_15s_with_the_release_label(get_render):
    render = get_render("staging-multi")
    monitors = service_objects(render, "ServiceMonitor")
    assert set(monitors) == set(SERVICES)
    for monitor in monitors.values():
        assert monitor["metadata"]["labels"]["release"] == "platform"
        assert monitor["spec"]["endpoints"] == [
            {
                "port": "metrics",
                "path": "/metrics",
                "interval": "15s",
                "scrapeTimeout": "10s",
            }
        ]
    bitnami = [
        obj
        for obj in render.of_kind("ServiceMonitor")
        if obj["metadata"]["labels"].get("helm.sh/chart", "").startswith(("postgresql", "minio"))
    ]
    assert len(bitnami) == 2 and all(obj["metadata"]["labels"]["release"] == "platform" for obj in bitnami)


def test_service_monitors_keep_the_target_labels_of_prometheus_over_those_a_pod_exports(render):
    for name, monitor in service_objects(render, "ServiceMonitor").items():
        for endpoint in monitor["spec"]["endpoints"]:
            assert not endpoint.get("honorLabels", False), f"{name}: honorLabels lets a pod set its own job"


def test_the_helm_test_pod_runs_the_journey_from_the_chart_against_the_api_service(get_render, chart_ready):
    render = get_render("staging-multi")
    (pod,) = [obj for obj in render.of_kind("Pod") if obj["metadata"]["name"] == "platform-tests"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["image"].startswith("ghcr.io/platform-sre/api:")
    assert {e["name"]: e.get("value") for e in container["env"]}["API_URL"] == (
        "http://platform-api.api.svc.cluster.local:3002"
    )
    env = {e["name"]: e for e in container["env"]}
    # One account per release, its password from a Secret generated once and kept.
    assert env["JOURNEY_USERNAME"]["value"] == "helm-test"
    assert env["JOURNEY_PASSWORD_FILE"]["value"] == "/journey-account/password"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["account"] == {"name": "account", "mountPath": "/journey-account", "readOnly": True}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["account"]["secret"] == {
        "secretName": "platform-helm-test",
        "items": [{"key": "password", "path": "password"}],
    }
    (secret,) = [obj for obj in render.of_kind("Secret") if obj["metadata"]["name"] == "platform-helm-test"]
    assert secret["metadata"]["namespace"] == pod["metadata"]["namespace"] == "api"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "helm.sh/hook" not in secret["metadata"]["annotations"], "a hook's Secret would not be kept"
    assert len(base64.b64decode(secret["data"]["password"])) == 32
    prod = get_render("prod-multi")
    (prod_pod,) = [obj for obj in prod.of_kind("Pod") if obj["metadata"]["name"] == "platform-tests"]
    (prod_volume,) = [v for v in prod_pod["spec"]["volumes"] if v["name"] == "account"]
    assert prod_volume["secret"]["secretName"] == "platform-helm-test"  # tests.existingSecret
    assert not [obj for obj in prod.of_kind("Secret") if obj["metadata"]["name"] == "platform-helm-test"]
    (script,) = [obj for obj in render.of_kind("ConfigMap") if obj["metadata"]["name"] == "platform-tests"]
    assert script["metadata"]["annotations"]["helm.sh/hook-weight"] == "-5"
    assert script["data"]["journey.py"] == (chart_ready / "files" / "helm-test" / "journey.py").read_text()


def pod_annotations(result_text):
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["metadata"]["annotations"]
        for obj in yaml.safe_load_all(result_text)
        if obj
        and obj["kind"] == "Deployment"
        and obj["metadata"]["name"] in ("platform-auth", "platform-api")
    }


def test_a_changed_setting_or_secret_rolls_the_pods_that_use_it(template):
    base = pod_annotations(template().stdout)
    setting = pod_annotations(template("--set", "auth.settings.BCRYPT_ROUNDS=13").stdout)
    assert setting["platform-auth"]["checksum/config"] != base["platform-auth"]["checksum/config"]
    assert setting["platform-api"] == base["platform-api"], "an auth setting must not roll the api"
    secret = pod_annotations(template("--set", "global.jwt.existingSecret=platform-jwt-rotated").stdout)
    assert secret["platform-auth"]["checksum/secret"] != base["platform-auth"]["checksum/secret"]
    assert secret["platform-auth"]["checksum/config"] == base["platform-auth"]["checksum/config"]
    assert secret["platform-api"] == base["platform-api"], "the api holds no token key"


def test_only_auths_main_container_references_the_signing_key(all_renders):
    for render in all_renders:
        secret = "platform-jwt-signing-key"  # generated, and the name values/prod.yaml gives
        holders = set()
        for owner, spec in pod_specs(render.objects):
            where = f"{owner['kind']}/{owner['metadata']['name']}"
            # Never as a volume: a mounted Secret is readable by every container of the pod.
            assert secret not in json.dumps(spec.get("volumes") or []), (render.id, where)
            for kind in ("initContainers", "containers"):
                for container in spec.get(kind) or []:
                    text = json.dumps(container)
                    if secret in text or "JWT_SIGNING_KEY" in text or "JWT_ADDITIONAL_KEYS" in text:
                        holders.add(f"{where}/{kind}/{container['name']}")
        assert holders == {"Deployment/platform-auth/containers/auth"}, render.id


def test_nothing_references_a_shared_jwt_secret(all_renders):
    for render in all_renders:
        assert "JWT_SECRET" not in render.text, render.id
        assert "jwt-secret" not in render.text, render.id


SETTINGS_CLASSES = {
    "auth": "auth.config:AuthSettings",
    "api": "api.config:ApiSettings",
    "images": "images.config:ImagesSettings",
}


def container_environment(render, service) -> dict[str, str]:
    """The environment the service container gets, secrets replaced by stand-ins, $(VAR) expanded."""
    _, _, container = deployment_container(render, service)
    return environment_of(container, config_map(render, service))


def environment_of(container, config: dict[str, str]) -> dict[str, str]:
    environ = dict(config)
    for item in container["env"]:
        if "valueFrom" in item:
            environ[item["name"]] = "stand-in-secret-value-of-32-bytes-or-more"
        else:
            environ[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: environ[m.group(1)], item["value"])
    return environ


def test_each_service_accepts_the_settings_the_chart_gives_it(render):
    import importlib

    from servicekit.config import load

    for service, target in SETTINGS_CLASSES.items():
        module, name = target.split(":")
        settings = load(
            getattr(importlib.import_module(module), name), container_environment(render, service)
        )
        assert settings.database_url.startswith("postgresql+psycopg2://")
        assert f"/{service if service != 'images' else 'image'}_db" in settings.database_url


def reconcile_cronjob(render):
    (cronjob,) = [
        obj for obj in render.of_kind("CronJob") if obj["metadata"]["name"] == "platform-images-reconcile"
    ]
    return cronjob


def test_the_images_reconcile_cronjob_fixes_orphans_every_30_minutes_one_run_at_a_time(render):
    cronjob = reconcile_cronjob(render)
    spec = cronjob["spec"]
    assert spec["schedule"] == "*/30 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] <= 30 * 60
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 1
    # A run never outlives the interval, so Forbid never has to skip one that is merely slow.
    assert 0 < job["activeDeadlineSeconds"] < 30 * 60
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:4] == ["python", "-m", "images.reconcile", "--fix"]
    assert command[command.index("--grace-seconds") + 1] == "900"
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_images_reconcile_cronjob_runs_like_the_images_deployment(render):
    cronjob = reconcile_cronjob(render)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    deployment, deployment_spec, service_container = deployment_container(render, "images")
    assert cronjob["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    for field in ("image", "imagePullPolicy", "envFrom", "env", "securityContext"):
        assert container[field] == service_container[field], field
    for field in ("serviceAccountName", "securityContext", "enableServiceLinks"):
        assert spec[field] == deployment_spec[field], field
    assert spec["automountServiceAccountToken"] is False
    assert service_objects(render, "ServiceAccount")["images"]["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == service_container["volumeMounts"]  # the /tmp emptyDir
    assert {v["name"]: v for v in spec["volumes"]}["tmp"]["emptyDir"]
    # Its pods share the network policy of the images pods (component label), not their
    # Service, PDB or HPA (which select by name).
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "images"
    selector = service_objects(render, "Service")["images"]["spec"]["selector"]
    assert not all(labels.get(key) == value for key, value in selector.items())
    pdb_selector = service_objects(render, "PodDisruptionBudget")["images"]["spec"]["selector"]["matchLabels"]
    assert not all(labels.get(key) == value for key, value in pdb_selector.items())


def test_the_images_reconcile_cronjob_gets_settings_the_images_service_accepts(render):
    from images.config import ImagesSettings
    from servicekit.config import load

    (container,) = reconcile_cronjob(render)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    settings = load(ImagesSettings, environment_of(container, config_map(render, "images")))
    assert settings.database_url.endswith("/image_db") or "/image_db?" in settings.database_url


def test_the_images_reconcile_cronjob_can_be_switched_off_or_rescheduled(template):
    off = template("--set", "images.reconcile.enabled=false")
    assert off.returncode == 0, off.stderr
    assert not [obj for obj in yaml.safe_load_all(off.stdout) if obj and obj["kind"] == "CronJob"]
    hourly = template(
        "--set", "images.reconcile.schedule=@hourly", "--set", "images.reconcile.graceSeconds=3600"
    )
    assert hourly.returncode == 0, hourly.stderr
    (cronjob,) = [obj for obj in yaml.safe_load_all(hourly.stdout) if obj and obj["kind"] == "CronJob"]
    assert cronjob["spec"]["schedule"] == "@hourly"
    assert (
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "3600"
    )


def test_the_api_lets_through_exactly_the_uploads_images_accepts(render):
    api, images = config_map(render, "api"), config_map(render, "images")
    assert api["MAX_UPLOAD_BYTES"] == images["MAX_UPLOAD_BYTES"]


def test_the_timeouts_and_pools_of_every_outbound_call_are_set_by_the_chart(render):
    api, images = config_map(render, "api"), config_map(render, "images")
    for name in (
        "UPSTREAM_CONNECT_TIMEOUT_SECONDS",
        "UPSTREAM_READ_TIMEOUT_SECONDS",
        "IMAGES_READ_TIMEOUT_SECONDS",
        "UPSTREAM_POOL_SIZE",
        "UPSTREAM_MAX_IDLE_SECONDS",
        "TOKEN_CACHE_SECONDS",
        "TOKEN_CACHE_SIZE",
    ):
        assert name in api, name
    for name in ("S3_CONNECT_TIMEOUT_SECONDS", "S3_READ_TIMEOUT_SECONDS", "S3_MAX_ATTEMPTS"):
        assert name in images, name
    # A stalled object store gets images its 503 before the api stops waiting for images.
    attempts = int(images["S3_MAX_ATTEMPTS"])
    per_attempt = float(images["S3_CONNECT_TIMEOUT_SECONDS"]) + float(images["S3_READ_TIMEOUT_SECONDS"])
    assert attempts * per_attempt < float(api["IMAGES_READ_TIMEOUT_SECONDS"])


MONITORING_CHARTS = ("kube-prometheus-stack-", "grafana-", "kube-state-metrics-", "prometheus-node-exporter-")


@pytest.mark.parametrize("render_id", ["staging-multi", "prod-multi"])
def test_every_object_of_the_monitoring_stack_lands_in_the_monitoring_namespace(get_render, render_id):
    render = get_render(render_id)
    monitoring = yaml.safe_load((CHART / "values.yaml").read_text())["global"]["namespaces"]["monitoring"]
    stack = [
        obj
        for obj in render.objects
        if (obj["metadata"].get("labels") or {}).get("helm.sh/chart", "").startswith(MONITORING_CHARTS)
        or (obj["metadata"].get("labels") or {}).get("chart", "").startswith(MONITORING_CHARTS)
    ]
    # Prometheus, Alertmanager, the operator and Grafana's dashboards and datasource at least.
    assert {"Prometheus", "Alertmanager", "Deployment", "ConfigMap"} <= {obj["kind"] for obj in stack}
    elsewhere = [
        f"{obj['kind']}/{obj['metadata']['name']} in {obj['metadata']['namespace']}"
        for obj in stack
        if "namespace" in obj["metadata"]
        and obj["metadata"]["namespace"] != monitoring
        # The exporters' headless Services select control-plane pods, so they must sit beside them.
        and not (obj["kind"] == "Service" and obj["metadata"]["namespace"] == "kube-system")
    ]
    assert not elsewhere, "\n".join(elsewhere)


def local_monitoring_images() -> dict[str, str]:
    """binary -> image: what ci/images/build.sh builds for the local cluster (ci/cluster/versions.sh)."""
    listing = subprocess.run(
        ["bash", "-c", 'source ci/cluster/versions.sh && printf "%s\\n" "${MONITORING_IMAGES[@]}"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in listing.splitlines())


@pytest.mark.parametrize("render_id", ["staging-multi", "prod-multi"])
def test_the_local_cluster_builds_the_monitoring_images_the_chart_renders(get_render, render_id):
    """The local cluster cannot pull: its images must carry exactly the names the chart asks for."""
    render = get_render(render_id)
    (operator,) = [
        container
        for deployment in render.of_kind("Deployment")
        for container in deployment["spec"]["template"]["spec"]["containers"]
        if "/prometheus-operator:" in container["image"]
    ]
    (reloader,) = [
        arg.split("=", 1)[1] for arg in operator["args"] if arg.startswith("--prometheus-config-reloader=")
    ]
    (prometheus,) = render.of_kind("Prometheus")
    (alertmanager,) = render.of_kind("Alertmanager")
    assert local_monitoring_images() == {
        "prometheus-operator": operator["image"],
        "prometheus-config-reloader": reloader,
        "prometheus": prometheus["spec"]["image"],
        "alertmanager": alertmanager["spec"]["image"],
    }


def test_multi_mode_refuses_monitoring_subcharts_outside_the_monitoring_namespace(template):
    result = template(
        "-f",
        str(VALUES_DIR / "prod.yaml"),
        "--set-string",
        "kube-prometheus-stack.grafana.namespaceOverride=",
    )
    assert result.returncode != 0
    assert 'kube-prometheus-stack.grafana.namespaceOverride must be "monitoring"' in result.stderr


def service_monitor_endpoints(template, *args):
    result = template("-f", str(VALUES_DIR / "staging.yaml"), *args)
    assert result.returncode == 0, result.stderr
    return [
        obj["spec"]["endpoints"][0]
        for obj in yaml.safe_load_all(result.stdout)
        if obj
        and obj["kind"] == "ServiceMonitor"
        and obj["metadata"]["name"] in ("platform-auth", "platform-api")
    ]


def test_the_scrape_timeout_is_a_value_up_to_the_interval(template):
    slow = service_monitor_endpoints(
        template,
        "--set",
        "monitoring.serviceMonitor.interval=1m",
        "--set",
        "monitoring.serviceMonitor.scrapeTimeout=45s",
    )
    assert [(e["interval"], e["scrapeTimeout"]) for e in slow] == [("1m", "45s")] * 2
    fast = service_monitor_endpoints(
        template,
        "--set",
        "monitoring.serviceMonitor.interval=5s",
        "--set",
        "monitoring.serviceMonitor.scrapeTimeout=5s",
    )
    assert [(e["interval"], e["scrapeTimeout"]) for e in fast] == [("5s", "5s")] * 2


@pytest.mark.parametrize(
    ("interval", "timeout"),
    [("5s", None), ("30s", "1m"), ("1m", "61s")],
    ids=["default-10s-over-5s", "1m-over-30s", "61s-over-1m"],
)
def test_a_scrape_timeout_longer_than_the_interval_is_refused(template, interval, timeout):
    args = ["-f", str(VALUES_DIR / "staging.yaml"), "--set", f"monitoring.serviceMonitor.interval={interval}"]
    if timeout:
        args += ["--set", f"monitoring.serviceMonitor.scrapeTimeout={timeout}"]
    result = template(*args)
    assert result.returncode != 0
    assert (
        f"monitoring.serviceMonitor.scrapeTimeout ({timeout or '10s'}) must not be longer than "
        f"monitoring.serviceMonitor.interval ({interval})"
    ) in result.stderr


def test_the_gateway_gets_its_rate_limits_and_trusts_only_the_proxies_its_values_name(render):
    config = config_map(render, "api")
    values_file = VALUES_DIR / f"{render.values_name}.yaml"
    values = yaml.safe_load(values_file.read_text()) if values_file.exists() else {}
    trusted = (values.get("api") or {}).get("trustedProxies", [])

    assert config["RATE_LIMIT_WINDOW_SECONDS"] == "60"
    assert config["RATE_LIMIT_LOGIN"] == "30"
    assert config["RATE_LIMIT_REGISTER"] == "10"
    assert config["TRUSTED_PROXIES"] == ",".join(trusted)
    if render.values_name == "default":
        assert trusted == []  # the chart's own default trusts no proxy
    assert "TRUSTED_PROXIES" not in config_map(render, "auth")


def test_trusted_proxies_reach_the_gateway_as_a_comma_separated_list(template):
    rendered = template(
        "--set",
        "api.trustedProxies={10.0.0.0/8,fd00::/8}",
        "--show-only",
        "charts/api/templates/configmap.yaml",
    )

    assert rendered.returncode == 0, rendered.stderr
    assert 'TRUSTED_PROXIES: "10.0.0.0/8,fd00::/8"' in rendered.stdout


OPENSHIFT = {"runAsUser": None, "runAsGroup": None, "fsGroup": None}


def test_the_user_and_groups_may_be_left_to_openshift(template, tmp_path):
    # restricted-v2 assigns them from the namespace's range and refuses pods that name others.
    values = {
        "securityContext": OPENSHIFT,
        **{service: {"securityContext": OPENSHIFT} for service in SERVICES},
    }
    (tmp_path / "openshift.yaml").write_text(yaml.safe_dump(values))
    result = template("-f", str(VALUES_DIR / "dev.yaml"), "-f", str(tmp_path / "openshift.yaml"))
    assert result.returncode == 0, result.stderr
    objects = [obj for obj in yaml.safe_load_all(result.stdout) if obj]
    ours = [(owner, spec) for owner, spec in pod_specs(objects) if "platform-" in owner["metadata"]["name"]]
    names = {owner["metadata"]["name"] for owner, _ in ours}
    assert {
        "platform-auth",
        "platform-api",
        "platform-images",
        "platform-images-reconcile",
        "platform-tests",
    } <= names
    for owner, spec in ours:
        if owner["metadata"]["labels"].get("app.kubernetes.io/part-of") != "platform":
            continue  # the Bitnami charts have their own values
        name = owner["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(spec["securityContext"]), name
        for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
            assert not {"runAsUser", "runAsGroup"} & set(container["securityContext"]), name


def test_the_user_and_groups_default_to_the_image_user(render):
    for _, spec in pod_specs(render.ours()):
        assert {key: spec["securityContext"][key] for key in OPENSHIFT} == dict.fromkeys(OPENSHIFT, 10001)


ROLE = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/images"}
CLOUD_IDENTITY = [
    "-f", str(VALUES_DIR / "prod.yaml"),
    "--set", "images.objectStorage.useDefaultCredentials=true",
    "--set-string", "global.externalObjectStorage.existingSecret=",
    "--set-json", f"images.serviceAccount.annotations={json.dumps(ROLE)}",
]  # fmt: skip


def test_images_may_use_a_cloud_identity_instead_of_keys(template):
    result = template(*CLOUD_IDENTITY)
    assert result.returncode == 0, result.stderr
    objects = [obj for obj in yaml.safe_load_all(result.stdout) if obj]
    (account,) = [
        o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "platform-images"
    ]
    assert account["metadata"]["annotations"] == ROLE
    images_pods = [
        (owner, spec)
        for owner, spec in pod_specs(objects)
        if owner["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "images"
    ]
    assert len(images_pods) == 2  # the Deployment and the reconcile CronJob (not the replication's)
    for owner, spec in images_pods:
        for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
            names = {env["name"] for env in container.get("env") or []}
            assert not {"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"} & names, owner["metadata"]["name"]
    assert "platform-images-s3" not in result.stdout
    others = [
        o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "platform-auth"
    ]
    assert not others[0]["metadata"].get("annotations")


def test_default_credentials_with_the_bundled_minio_are_refused(template):
    result = template("--set", "images.objectStorage.useDefaultCredentials=true")
    assert result.returncode != 0
    assert "images.objectStorage.useDefaultCredentials is for an external store" in result.stderr


def _mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi"), quantity
    return int(quantity[:-2])


# What `make bench` measured (README "Performance"): the peak resident memory of a pod's gunicorn
# master and workers during 100 concurrent uploads, and a worker's share of it.
MEASURED_PEAK_MIB = {"auth": 181, "api": 223, "images": 257}
MASTER_MIB, API_WORKER_MIB = 35, 95


@pytest.mark.parametrize("values_name", ["staging", "prod"])
def test_staging_and_production_are_sized_from_the_measured_figures(get_render, values_name):
    render = get_render(f"{values_name}-multi")
    for service, measured_peak in MEASURED_PEAK_MIB.items():
        _, _, container = deployment_container(render, service)
        requests_, limits = container["resources"]["requests"], container["resources"]["limits"]
        # The CPU request is the limit: the HPA's 70 % is then a known share of a core, and the
        # replica count is rate x CPU-ms per request / (0.7 x 400m) (chart README, "Sizing").
        assert requests_["cpu"] == limits["cpu"] == "400m"
        workers = int(config_map(render, service)["WEB_CONCURRENCY"])
        peak = MASTER_MIB + workers * API_WORKER_MIB if service == "api" else measured_peak
        # The HPA aims at 85 % of the memory request: the measured peak stays below that.
        assert peak < 0.85 * _mebibytes(requests_["memory"]), (service, peak, requests_["memory"])
