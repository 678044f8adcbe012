"""The chart's backup side: the nightly backup CronJob, the images replication CronJob and the
one-shot restore Job run the backups package in the images image, under the restricted profile,
with credentials of their own (docs/runbooks/Restore.md)."""

from __future__ import annotations

import pytest
import yaml

from tests.charts.conftest import VALUES_DIR
from tests.charts.test_workloads import pod_specs, restricted_violations

REPLICA = [
    "--set", "backup.replication.enabled=true",
    "--set", "backup.replication.endpoint=https://s3.eu-west-1.amazonaws.com",
    "--set", "backup.replication.bucket=images-replica",
    "--set", "backup.replication.existingSecret=replica-keys",
    "--set-json", 'networkPolicy.backupObjectStorage.to=[{"ipBlock": {"cidr": "52.219.0.0/16"}}]',
]  # fmt: skip


# The read-only root's one writable folder, an emptyDir.
SCRATCH = "/" + "tmp"


def rendered(template, *args) -> list[dict]:
    result = template(*args)
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def named(objects, kind, name) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def images_image(objects) -> str:
    deployment = named(objects, "Deployment", "platform-images")
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def env_of(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_backup_runs_nightly_one_at_a_time_in_the_images_image(get_render):
    objects = get_render("staging-multi").objects
    cronjob = named(objects, "CronJob", "platform-backup")
    assert cronjob["metadata"]["namespace"] == "infrastructure"
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == (
        "17 2 * * *",
        "Etc/UTC",
        "Forbid",
    )
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2 and job["activeDeadlineSeconds"] == 3600
    pod = job["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["platform-backup", "run"]
    assert container["image"] == images_image(objects)
    env = env_of(container)
    assert env["PGHOST"] == "platform-postgresql.infrastructure.svc.cluster.local"
    assert (env["PGUSER"], env["BACKUP_DATABASES"]) == ("backup_user", "auth_db,api_db,image_db")
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "platform-backup-database", "key": "password"}}
    assert env["BACKUP_S3_ENDPOINT"] == "http://platform-minio.infrastructure.svc.cluster.local:9000"
    assert env["BACKUP_S3_BUCKET"] == "backups"
    assert env["BACKUP_S3_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "platform-backup-s3"
    assert (env["BACKUP_WEEKLY_WEEKDAY"], env["BACKUP_KEEP_DAILY_DAYS"], env["BACKUP_KEEP_WEEKLY_DAYS"]) == (
        "6",
        "7",
        "28",
    )
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {SCRATCH}
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert not restricted_violations(pod["spec"])


@pytest.mark.parametrize("render_id", ["default-single", "dev-single"])
def test_no_backup_runs_where_backups_are_off(get_render, render_id):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in get_render(render_id).objects}
    assert ("CronJob", "platform-backup") not in kinds
    assert ("Secret", "platform-backup-s3") not in kinds
    # The role's password exists anyway: PostgreSQL's first boot creates the role for later.
    assert ("Secret", "platform-backup-database") in kinds


def test_production_backs_up_the_external_database_over_tls_to_its_own_bucket(get_render):
    objects = get_render("prod-multi").objects
    pod = named(objects, "CronJob", "platform-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    assert (env["PGHOST"], env["PGSSLMODE"]) == ("platform-db.prod.internal", "verify-full")
    assert env["PGSSLROOTCERT"] == "/etc/platform/database-ca/ca.crt"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {SCRATCH, "/etc/platform/database-ca"}
    assert env["BACKUP_S3_ENDPOINT"] == "https://s3.eu-central-1.amazonaws.com"
    assert env["BACKUP_S3_BUCKET"] == "platform-prod-backups"
    assert env["PGPASSWORD"]["secretKeyRef"]["name"] == "platform-backup-database"
    assert container["image"] == images_image(objects) == "ghcr.io/platform-sre/images:0.1.0"


def test_the_replication_mirrors_the_images_bucket_with_read_only_keys(get_render):
    objects = get_render("prod-multi").objects
    cronjob = named(objects, "CronJob", "platform-images-replication")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "images-replication"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["platform-backup", "mirror"]
    env = env_of(container)
    assert (env["IMAGES_S3_ENDPOINT"], env["IMAGES_S3_BUCKET"]) == (
        "https://s3.eu-central-1.amazonaws.com",
        "platform-prod-images",
    )
    assert env["IMAGES_S3_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "platform-images-readonly"
    assert env["REPLICA_S3_BUCKET"] == "platform-prod-images-replica"
    assert env["REPLICA_S3_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "platform-images-replica"
    # Neither a database nor the images service's own keys.
    assert not [name for name in env if name.startswith("PG") or name.startswith("S3_")]
    assert not restricted_violations(pod["spec"])


def test_no_restore_runs_unless_asked_for(all_renders):
    for render in all_renders:
        assert not [o for o in render.objects if o["metadata"]["name"].startswith("platform-restore")], (
            render.id
        )


def test_a_restore_restores_the_databases_then_the_images_bucket_in_order(template):
    objects = rendered(
        template,
        "-f", str(VALUES_DIR / "staging.yaml"), *REPLICA,
        "--set", "restore.enabled=true",
        "--set", "restore.backup=20261129T021700Z",
        "--set", "restore.bucket.from=replica",
    )  # fmt: skip
    (job,) = [
        o for o in objects if o["kind"] == "Job" and o["metadata"]["name"].startswith("platform-restore-")
    ]
    assert job["metadata"]["namespace"] == "infrastructure" and job["spec"]["backoffLimit"] == 0
    spec = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "restore"
    (databases,) = spec["initContainers"]
    (bucket,) = spec["containers"]
    assert databases["command"] == ["platform-restore", "databases", "--backup", "20261129T021700Z"]
    assert bucket["command"] == ["platform-restore", "bucket", "--from", "replica"]
    env = env_of(databases)
    assert env["PGUSER"] == "postgres"
    assert env["PGPASSWORD"]["secretKeyRef"]["name"] == "platform-postgresql-superuser"
    assert env["AUTH_DB_PASSWORD"]["secretKeyRef"] == {
        "name": "platform-auth-database",
        "key": "password",
        "optional": True,
    }
    assert env["IMAGES_DATABASE_URL"].startswith("postgresql+psycopg2://image_user:$(IMAGES_DB_PASSWORD)@")
    assert env_of(bucket)["REPLICA_S3_BUCKET"] == "images-replica"
    assert not restricted_violations(spec)


def test_another_backup_to_restore_is_a_new_job(template):
    def job_name(backup):
        objects = rendered(template, "-f", str(VALUES_DIR / "staging.yaml"), "--set", "restore.enabled=true",
                           "--set", f"restore.backup={backup}")  # fmt: skip
        (job,) = [
            o for o in objects if o["kind"] == "Job" and o["metadata"]["name"].startswith("platform-restore-")
        ]
        return job["metadata"]["name"]

    assert job_name("latest") == job_name("latest") != job_name("20261129T021700Z")


def test_a_restore_of_an_external_database_connects_as_the_admin_url(template):
    objects = rendered(template, "-f", str(VALUES_DIR / "prod.yaml"), "--set", "restore.enabled=true")
    (job,) = [
        o for o in objects if o["kind"] == "Job" and o["metadata"]["name"].startswith("platform-restore-")
    ]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["RESTORE_ADMIN_URL"] == {"secretKeyRef": {"name": "platform-restore-admin", "key": "url"}}
    assert "PGUSER" not in env and env["PGSSLMODE"] == "verify-full"


def test_a_restore_without_backups_is_refused(template):
    result = template("--set", "restore.enabled=true")
    assert result.returncode != 0
    assert "restore.enabled needs backup.enabled" in result.stderr


def test_every_backup_pod_is_admitted_under_the_restricted_profile(template):
    objects = rendered(
        template, "-f", str(VALUES_DIR / "staging.yaml"), *REPLICA, "--set", "restore.enabled=true"
    )
    pods = [
        (owner, spec)
        for owner, spec in pod_specs(objects)
        if owner["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        in {"backup", "images-replication", "restore"}
    ]
    assert len(pods) == 3
    for owner, spec in pods:
        assert not restricted_violations(spec), owner["metadata"]["name"]
