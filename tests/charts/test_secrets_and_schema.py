"""Secrets stay in Secrets (or outside the chart in production) and wrong values fail early."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.charts.conftest import VALUES_DIR
from tests.charts.test_workloads import pod_specs

SECRET_ENV = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY")


def literal_secret_env(render):
    for obj in render.objects:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec") or (spec if obj["kind"] == "Pod" else None)
        if not pod:
            continue
        for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
            for env in container.get("env") or []:
                # *_FILE variables hold the path of a mounted Secret, not a secret.
                if (
                    any(word in env["name"] for word in SECRET_ENV)
                    and env.get("value")
                    and not env["name"].endswith("_FILE")
                ):
                    yield f"{obj['kind']}/{obj['metadata']['name']} {container['name']} {env['name']}"


def test_no_secret_is_ever_a_literal_environment_value(render):
    assert not list(literal_secret_env(render))


def test_a_production_render_contains_no_secret_value(get_render):
    for render_id in ("prod-multi", "prod-single"):
        render = get_render(render_id)
        ours = [obj for obj in render.ours() if obj["kind"] == "Secret"]
        assert not ours, f"{render_id}: the chart generated {[s['metadata']['name'] for s in ours]}"
        for secret in render.of_kind("Secret"):
            # Only kube-prometheus-stack's Alertmanager configuration is a Secret, and it holds
            # routing, no credential (receivers' credentials come from existingSecrets).
            assert secret["metadata"]["name"].startswith("alertmanager-"), secret["metadata"]["name"]
            for value in (secret.get("data") or {}).values():
                text = base64.b64decode(value).decode()
                for word in ("password", "api_url", "auth_token", "secret"):
                    assert f"{word}:" not in text, f"{secret['metadata']['name']} holds a {word}"
        assert "DB_PASSWORD" not in render.text.replace("$(DB_PASSWORD)", "").replace("name: DB_PASSWORD", "")


def test_generated_secrets_share_one_value_across_namespaces_and_are_kept(get_render):
    render = get_render("staging-multi")
    secrets = {}
    for secret in render.ours():
        if secret["kind"] == "Secret":
            secrets.setdefault(secret["metadata"]["name"], []).append(secret)
            assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # auth's signing key: its namespace only, an Ed25519 private key in PKCS#8 PEM.
    (signing,) = secrets["platform-jwt-signing-key"]
    assert signing["metadata"]["namespace"] == "auth"
    key = load_pem_private_key(base64.b64decode(signing["data"]["signing-key.pem"]), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    assert not [name for name in secrets if name.endswith("-jwt")]
    for service, namespace in (("auth", "auth"), ("api", "api"), ("images", "image-storage")):
        copies = secrets[f"platform-{service}-database"]
        assert {s["metadata"]["namespace"] for s in copies} == {namespace, "infrastructure"}
        assert len({s["data"]["password"] for s in copies}) == 1
    storage = secrets["platform-images-object-storage"]
    # The provisioning Job in the infrastructure namespace creates the MinIO user from the copy.
    assert {s["metadata"]["namespace"] for s in storage} == {"image-storage", "infrastructure"}
    assert len({s["data"]["secret-access-key"] for s in storage}) == 1
    assert base64.b64decode(storage[0]["data"]["access-key-id"]) == b"images-service"
    # The backup role and user: beside PostgreSQL, the provisioning Job and the backup pods only,
    # never in the images namespace.
    (backup_database,) = secrets["platform-backup-database"]
    (backup_s3,) = secrets["platform-backup-s3"]
    assert backup_database["metadata"]["namespace"] == backup_s3["metadata"]["namespace"] == "infrastructure"
    assert base64.b64decode(backup_s3["data"]["access-key-id"]) == b"platform-backup"


def test_the_images_service_never_receives_the_backup_credentials(all_renders):
    backup_secrets = ("platform-backup-database", "platform-backup-s3", "platform-images-readonly")
    for render in all_renders:
        images_pods = [
            (owner, spec)
            for owner, spec in pod_specs(render.objects)
            if owner["metadata"]["labels"].get("app.kubernetes.io/component") == "images"
        ]
        assert images_pods, render.id
        for owner, spec in images_pods:
            referenced = [name for name in backup_secrets if name in json.dumps(spec)]
            assert not referenced, f"{render.id}: {owner['metadata']['name']} gets {referenced}"


# Every Secret the chart would generate for values/staging.yaml, with the value that replaces it.
EXISTING_SECRETS = {
    "global.jwt.existingSecret": "platform-jwt-signing-key",
    "auth.database.existingSecret": "platform-auth-database",
    "api.database.existingSecret": "platform-api-database",
    "images.database.existingSecret": "platform-images-database",
    "postgresql.auth.existingSecret": "platform-postgresql-admin",
    "minio.auth.existingSecret": "platform-minio-admin",
    "images.objectStorage.existingSecret": "platform-images-minio-user",
    "kube-prometheus-stack.grafana.admin.existingSecret": "platform-grafana-admin-gitops",
    "tests.existingSecret": "platform-helm-test",
    "backup.database.existingSecret": "platform-backup-database",
    "backup.s3.existingSecret": "platform-backup-s3",
}


def existing_secret_args(leave_out: str | None = None) -> list[str]:
    args = ["-f", str(VALUES_DIR / "staging.yaml")]
    for value, name in EXISTING_SECRETS.items():
        if value != leave_out:
            args += ["--set-string", f"{value}={name}"]
    return args


@pytest.mark.parametrize("value", EXISTING_SECRETS)
def test_a_render_without_the_cluster_refuses_to_generate_a_secret_and_names_the_value(
    template_without_cluster, value
):
    # helm template, --dry-run=client and Argo CD: a generated value would differ on each render.
    result = template_without_cluster(*existing_secret_args(leave_out=value))
    assert result.returncode != 0, f"without {value}, a Secret was generated offline"
    assert f"set {value} to a Secret you create" in result.stderr, result.stderr
    assert "global.secrets.allowGeneratedWithoutCluster" in result.stderr


def test_a_render_without_the_cluster_and_with_every_existing_secret_generates_none(template_without_cluster):
    result = template_without_cluster(*existing_secret_args())
    assert result.returncode == 0, result.stderr
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    secrets = [doc["metadata"]["name"] for doc in documents if doc["kind"] == "Secret"]
    # The Alertmanager configuration is routing, not a credential; it renders the same each time.
    assert [name for name in secrets if not name.startswith("alertmanager-")] == [], secrets


def test_the_default_values_refuse_to_generate_secrets_without_the_cluster(template_without_cluster):
    result = template_without_cluster()
    assert result.returncode != 0
    assert "would be generated without access to the cluster" in result.stderr


def test_development_may_generate_secrets_without_the_cluster(template_without_cluster):
    result = template_without_cluster("-f", str(VALUES_DIR / "dev.yaml"))
    assert result.returncode == 0, result.stderr
    generated = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in generated} >= {
        "platform-jwt-signing-key",
        "platform-auth-database",
    }


def test_no_password_is_in_a_config_map(all_renders):
    for render in all_renders:
        secrets = {
            base64.b64decode(value).decode()
            for obj in render.of_kind("Secret")
            for value in (obj.get("data") or {}).values()
        }
        config_maps = "\n".join(str(obj.get("data")) for obj in render.of_kind("ConfigMap"))
        leaked = [s for s in secrets if len(s) >= 16 and "\n" not in s and s in config_maps]
        assert not leaked, render.id


REJECTIONS = [
    # (what is wrong, --set arguments, words the error must contain)
    (
        "production without existing secrets",
        ["--set", "global.environment=production"],
        ["/global/jwt/existingSecret", "/auth/database/existingSecret", "/postgresql/auth/existingSecret"],
    ),
    (
        "production with a generated helm test password",
        ["-f", str(VALUES_DIR / "prod.yaml"), "--set-string", "tests.existingSecret="],
        ["/tests/existingSecret"],
    ),
    (
        "a helm test account name auth refuses",
        ["--set", "tests.username=helm test"],
        ["/tests/username"],
    ),
    ("an unknown environment", ["--set", "global.environment=qa"], ["/global/environment", "production"]),
    ("an unknown namespace mode", ["--set", "global.namespaces.mode=several"], ["/global/namespaces/mode"]),
    (
        "a namespace name Kubernetes refuses",
        ["--set", "global.namespaces.auth=Auth_NS"],
        ["/global/namespaces/auth"],
    ),
    ("a misspelt value", ["--set", "auth.replicas=3"], ["replicas"]),
    (
        "a malformed memory quantity",
        ["--set", "api.resources.limits.memory=lots"],
        ["/api/resources/limits/memory"],
    ),
    (
        "a database name that is no identifier",
        ["--set", "images.database.name=image-db"],
        ["/images/database/name"],
    ),
    ("an unknown log level", ["--set", "auth.logLevel=verbose"], ["/auth/logLevel"]),
    (
        "a reconcile schedule that is no cron expression",
        ["--set", "images.reconcile.schedule=every half hour"],
        ["/images/reconcile/schedule"],
    ),
    ("a misspelt reconcile value", ["--set", "images.reconcile.gracePeriod=60"], ["gracePeriod"]),
    (
        "a trusted proxy that is no address",
        ["--set", "api.trustedProxies={ingress-nginx}"],
        ["/api/trustedProxies/0"],
    ),
    ("a login limit of nothing", ["--set", "api.rateLimit.login=0"], ["/api/rateLimit/login"]),
    (
        "a grace period shorter than the drain",
        ["--set", "api.terminationGracePeriodSeconds=10"],
        ["terminationGracePeriodSeconds (10) must be longer"],
    ),
    (
        "both the bundled and an external database",
        ["--set", "global.externalDatabase.host=db.example.com"],
        ["choose one"],
    ),
    ("no database at all", ["--set", "postgresql.enabled=false"], ["global.externalDatabase.host"]),
    (
        "an external database without the services' password secrets",
        ["--set", "postgresql.enabled=false", "--set", "global.externalDatabase.host=db.example.com"],
        ["auth.database.existingSecret is required"],
    ),
    (
        "an existing password secret the initdb script does not read",
        ["--set", "auth.database.existingSecret=my-auth-db"],
        ["AUTH_DB_PASSWORD from Secret my-auth-db"],
    ),
    (
        "an external store without credentials",
        [
            "--set",
            "minio.enabled=false",
            "--set",
            "global.externalObjectStorage.endpoint=https://s3.example.com",
        ],
        ["global.externalObjectStorage.existingSecret is required"],
    ),
    # Misspelt keys, wherever they are, are refused with the path and the key.
    (
        "a misspelt global key",
        ["--set", "global.enviroment=production"],
        ["/global", "'enviroment' not allowed"],
    ),
    (
        "a misspelt global security key",
        ["--set", "global.security.allowInsecureImage=true"],
        ["/global/security", "'allowInsecureImage' not allowed"],
    ),
    (
        "a misspelt networkPolicy key",
        ["--set", "networkPolicy.enable=false"],
        ["/networkPolicy", "'enable' not allowed"],
    ),
    (
        "a misspelt network peer",
        ["--set-json", 'networkPolicy.externalDatabase=[{"ipblock": {"cidr": "10.20.0.0/24"}}]'],
        ["/networkPolicy/externalDatabase/0", "'ipblock' not allowed"],
    ),
    (
        "a misspelt ingress controller key",
        ["--set", "networkPolicy.ingressController.podSelecter.app=traefik"],
        ["/networkPolicy/ingressController", "'podSelecter' not allowed"],
    ),
    (
        "a misspelt ingress key",
        ["--set", "ingress.classname=traefik"],
        ["/ingress", "'classname' not allowed"],
    ),
    (
        "a misspelt ingress TLS key",
        ["--set", "ingress.tls.clusterissuer=x"],
        ["/ingress/tls", "'clusterissuer' not allowed"],
    ),
    (
        "a misspelt httpRoute key",
        ["--set", "httpRoute.hostname=api.example.com"],
        ["/httpRoute", "'hostname' not allowed"],
    ),
    ("a misspelt auth key", ["--set", "auth.logLevl=INFO"], ["/auth", "'logLevl' not allowed"]),
    ("a misspelt api key", ["--set", "api.gunicorn.worker=3"], ["/api/gunicorn", "'worker' not allowed"]),
    (
        "a misspelt images key",
        ["--set", "images.database.existingSecrets=x"],
        ["/images/database", "'existingSecrets' not allowed"],
    ),
    (
        "a misspelt toleration key",
        ["--set-json", 'api.tolerations=[{"keys": "spot"}]'],
        ["/api/tolerations/0", "'keys' not allowed"],
    ),
    (
        "a value under the library chart",
        ["--set", "platform-lib.replicas=2"],
        ["/platform-lib", "'replicas' not allowed"],
    ),
    (
        "a pod label that is no string",
        ["--set", "auth.podLabels.team=1"],
        ["/auth/podLabels/team", "want string"],
    ),
    (
        "a CPU quantity given as a bare number",
        ["--set", "api.resources.limits.cpu=1"],
        ["/api/resources/limits/cpu", "got number, want string"],
    ),
    (
        "a negative CPU quantity",
        ["--set-string", "images.reconcile.resources.requests.cpu=-1"],
        ["/images/reconcile/resources/requests/cpu"],
    ),
    (
        "a backup schedule that is no cron expression",
        ["--set", "backup.enabled=true", "--set", "backup.schedule=every night"],
        ["/backup/schedule", "'every night' does not match pattern"],
    ),
    (
        "a backup schedule with a time zone in it",
        ["--set", "backup.schedule=CRON_TZ=Europe/Berlin 0 2 * * *"],
        ["/backup/schedule", "does not match pattern"],
    ),
    (
        "backups kept for zero days",
        ["--set", "backup.retention.dailyDays=0"],
        ["/backup/retention/dailyDays", "minimum: got 0, want 1"],
    ),
    (
        "noncurrent image versions kept for zero days",
        ["--set", "images.objectStorage.versioning.noncurrentDays=0"],
        ["/images/objectStorage/versioning/noncurrentDays", "minimum: got 0, want 1"],
    ),
    (
        "a replication without a replica",
        ["--set", "backup.enabled=true", "--set", "backup.replication.enabled=true"],
        ["/backup/replication/endpoint", "/backup/replication/bucket", "/backup/replication/existingSecret"],
    ),
    (
        "backups of an external database without the backup role's Secret",
        ["-f", str(VALUES_DIR / "prod.yaml"), "--set-string", "backup.database.existingSecret="],
        ["backup.database.existingSecret is required with an external database"],
    ),
    (
        "backups to an external bucket without its keys",
        ["-f", str(VALUES_DIR / "prod.yaml"), "--set-string", "backup.s3.existingSecret="],
        ["backup.s3.existingSecret is required with backup.s3.endpoint"],
    ),
    (
        "backups to an external bucket the network policies do not reach",
        ["-f", str(VALUES_DIR / "prod.yaml"), "--set-json", "networkPolicy.backupObjectStorage.to=[]"],
        ["networkPolicy.backupObjectStorage.to is required"],
    ),
    (
        "a restore of an external database without an admin",
        [
            "-f",
            str(VALUES_DIR / "prod.yaml"),
            "--set",
            "restore.enabled=true",
            "--set-string",
            "restore.adminSecret=",
        ],
        ["restore.adminSecret is required with an external PostgreSQL"],
    ),
    (
        "a restore of image versions from an unversioned bucket",
        [
            "--set",
            "backup.enabled=true",
            "--set",
            "restore.enabled=true",
            "--set",
            "restore.bucket.from=versions",
            "--set",
            "restore.bucket.before=2026-11-29T22:00:00Z",
        ],
        ["images.objectStorage.versioning.enabled=true"],
    ),
    (
        "a restore of image versions without a point in time",
        ["--set", "restore.bucket.from=versions"],
        ["/restore/bucket/before"],
    ),
    (
        "multi mode with PostgreSQL outside the infrastructure namespace",
        ["--set", "global.namespaces.mode=multi"],
        ['postgresql.namespaceOverride must be "infrastructure"'],
    ),
]


@pytest.mark.parametrize(("problem", "args", "words"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_wrong_values_fail_with_a_message_that_names_the_value(template, problem, args, words):
    result = template(*args)
    assert result.returncode != 0, f"{problem} was accepted"
    for word in words:
        assert word in result.stderr, f"{problem}: {word!r} not in:\n{result.stderr}"


def test_production_with_every_secret_from_existing_secrets_is_accepted(template):
    result = template("-f", str(VALUES_DIR / "prod.yaml"))
    assert result.returncode == 0, result.stderr


def test_a_cpu_quantity_string_and_the_third_party_globals_are_accepted(template):
    result = template(
        "--set-string",
        "api.resources.limits.cpu=1",
        "--set",
        "global.defaultStorageClass=fast-ssd",
        "--set",
        "global.imageRegistry=mirror.example.com",
    )
    assert result.returncode == 0, result.stderr


# Objects whose keys are not the chart's to know: the third-party charts' values (their own
# charts check them), globals Helm copies into each subchart, the third-party charts' globals,
# and the monitoring section (closed separately, tested with the monitoring objects).
OPEN_BY_DESIGN = {
    "/postgresql",
    "/minio",
    "/kube-prometheus-stack",
    "/platform-lib/global",
    "#service/global",
    "/global/compatibility",
    "/global/postgresql",
    "/global/rbac",
}


def open_objects(node, path, found):
    if not isinstance(node, dict):
        return found
    if path.startswith("/monitoring"):
        return found
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and "additionalProperties" not in node and "$ref" not in node and path not in OPEN_BY_DESIGN:
        found.append(path)
    for key, value in (node.get("properties") or {}).items():
        open_objects(value, f"{path}/{key}", found)
    for key, value in (node.get("definitions") or {}).items():
        open_objects(value, f"#{key}", found)
    if isinstance(node.get("items"), dict):
        open_objects(node["items"], f"{path}[]", found)
    return found


def test_every_object_of_the_schema_refuses_unknown_keys(chart_ready):
    import json

    schema = json.loads((chart_ready / "values.schema.json").read_text())
    assert open_objects(schema, "", []) == []
