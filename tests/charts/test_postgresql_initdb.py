"""The chart's PostgreSQL initdb script, run against a real PostgreSQL server the way the Bitnami
entrypoint runs it (sourced, errexit on, passwords from the environment): each service's role
owns its database, can migrate it, and cannot connect to any other; the backup role reads all
three and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg2
import psycopg2.sql
import pytest
import yaml

from devstack.postgres import PostgresServer
from tests.charts.conftest import VALUES_DIR, Render

DATABASES = {
    "auth": ("auth_db", "auth_user"),
    "api": ("api_db", "api_user"),
    "images": ("image_db", "image_user"),
}
PASSWORDS = {
    "auth": "authPassw0rd1234",
    "api": "apiPassw0rd12345",
    "images": "imagesPassw0rd12",
    "backup": "backupPassw0rd12",
}


@pytest.fixture(scope="module")
def server():
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def initdb_script(get_render) -> str:
    render = get_render("default-single")
    (config_map,) = [
        obj for obj in render.of_kind("ConfigMap") if obj["metadata"]["name"] == "platform-postgresql-initdb"
    ]
    return config_map["data"]["10-platform-databases.sh"]


def run_script(server, script, tmp_path, passwords) -> subprocess.CompletedProcess:
    path = tmp_path / "10-platform-databases.sh"
    path.write_text(script)
    admin_password_file = tmp_path / "postgres-password"
    admin_password_file.write_text(server.superuser_password)
    env = {
        "PATH": f"{server.bin}:{os.environ['PATH']}",
        "POSTGRESQL_PORT_NUMBER": str(server.port),
        # As the Bitnami chart passes it (auth.usePasswordFiles).
        "POSTGRES_PASSWORD_FILE": str(admin_password_file),
        **{f"{service.upper()}_DB_PASSWORD": password for service, password in passwords.items()},
    }
    return subprocess.run(
        ["bash", "-c", f"set -o errexit -o nounset -o pipefail; . {path}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def initialised(server, initdb_script, tmp_path_factory):
    result = run_script(server, initdb_script, tmp_path_factory.mktemp("initdb"), PASSWORDS)
    assert result.returncode == 0, result.stdout + result.stderr
    return server


def connect(server, database, user, password):
    return psycopg2.connect(
        host="127.0.0.1", port=server.port, dbname=database, user=user, password=password, connect_timeout=3
    )


@pytest.mark.parametrize("service", DATABASES)
def test_each_role_owns_its_database_and_can_run_the_service_migrations(initialised, service):
    database, user = DATABASES[service]
    with (
        connect(initialised, database, user, PASSWORDS[service]) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        assert cursor.fetchone()[0] == user
        cursor.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        assert cursor.fetchone() == (False, False, False)
    url = f"postgresql+psycopg2://{user}:{PASSWORDS[service]}@127.0.0.1:{initialised.port}/{database}"
    migrate = subprocess.run(
        [sys.executable, "-m", "servicekit.migrations", service],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr


@pytest.fixture(scope="module")
def migrated(initialised):
    for service, (database, user) in DATABASES.items():
        url = f"postgresql+psycopg2://{user}:{PASSWORDS[service]}@127.0.0.1:{initialised.port}/{database}"
        subprocess.run(
            [sys.executable, "-m", "servicekit.migrations", service],
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            check=True,
            timeout=120,
        )
    return initialised


@pytest.mark.parametrize("service", DATABASES)
def test_the_backup_role_reads_every_table_of_each_database_and_writes_nothing(migrated, service):
    database, _ = DATABASES[service]
    with connect(migrated, database, "backup_user", PASSWORDS["backup"]) as connection:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
            )
            assert cursor.fetchone() == (False, False, False)
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [row[0] for row in cursor.fetchall()]
            version_table = f"alembic_version_{service}"
            assert version_table in tables
            for table in tables:
                cursor.execute(
                    psycopg2.sql.SQL("SELECT count(*) FROM {}").format(
                        psycopg2.sql.Identifier("public", table)
                    )
                )
        with connection.cursor() as cursor, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cursor.execute(
                psycopg2.sql.SQL("DELETE FROM {}").format(psycopg2.sql.Identifier("public", version_table))
            )
    with (
        connect(migrated, database, "backup_user", PASSWORDS["backup"]) as connection,
        connection.cursor() as cursor,
        pytest.raises(psycopg2.errors.InsufficientPrivilege),
    ):
        cursor.execute("CREATE TABLE public.intruder (id int)")


def test_the_backup_role_cannot_connect_to_the_maintenance_database(initialised):
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        connect(initialised, "postgres", "backup_user", PASSWORDS["backup"])


@pytest.mark.parametrize("service", DATABASES)
def test_no_role_can_connect_to_another_service_database_or_the_maintenance_one(initialised, service):
    _, user = DATABASES[service]
    others = [database for other, (database, _) in DATABASES.items() if other != service] + ["postgres"]
    for database in others:
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            connect(initialised, database, user, PASSWORDS[service])


def test_running_the_script_again_changes_nothing_and_keeps_the_data(initialised, initdb_script, tmp_path):
    result = run_script(initialised, initdb_script, tmp_path, PASSWORDS)
    assert result.returncode == 0, result.stderr
    with (
        connect(initialised, "auth_db", "auth_user", PASSWORDS["auth"]) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cursor.fetchone()[0] > 0


def test_a_service_with_an_empty_password_fails_the_first_boot_instead_of_being_skipped(
    server, initdb_script, tmp_path
):
    # The script runs on the first boot only: a skipped role would never be created later.
    result = run_script(server, initdb_script, tmp_path, {**PASSWORDS, "api": ""})
    assert result.returncode != 0
    assert "no password for api_user (empty key in its Secret): cannot create api_db" in result.stderr


def postgresql_password_refs(render):
    (statefulset,) = [obj for obj in render.of_kind("StatefulSet") if "postgresql" in obj["metadata"]["name"]]
    (container,) = [
        c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "postgresql"
    ]
    refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in container["env"]
        if env["name"].endswith("_DB_PASSWORD")
    }
    return statefulset["metadata"]["namespace"], refs


@pytest.mark.parametrize("render_id", ["default-single", "default-multi", "staging-multi", "dev-single"])
def test_postgresql_requires_every_service_password_secret_and_the_chart_creates_each_beside_it(
    get_render, render_id
):
    """A missing Secret keeps PostgreSQL from starting (visibly) rather than letting it
    initialise without that service's role."""
    render = get_render(render_id)
    namespace, refs = postgresql_password_refs(render)
    assert set(refs) == {"AUTH_DB_PASSWORD", "API_DB_PASSWORD", "IMAGES_DB_PASSWORD", "BACKUP_DB_PASSWORD"}
    secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in render.of_kind("Secret")}
    for name, ref in refs.items():
        assert ref["optional"] is False, name
        assert ref["key"] in secrets[(namespace, ref["name"])]["data"], name


def test_a_disabled_service_still_gets_the_password_secret_postgresql_requires(template):
    result = template("-f", str(VALUES_DIR / "staging.yaml"), "--set", "images.enabled=false")
    assert result.returncode == 0, result.stderr
    objects = [obj for obj in yaml.safe_load_all(result.stdout) if obj]
    render = Render("images-off", "staging", "multi", [], result.stdout, objects)
    namespace, refs = postgresql_password_refs(render)
    copies = [
        s for s in render.of_kind("Secret") if s["metadata"]["name"] == refs["IMAGES_DB_PASSWORD"]["name"]
    ]
    # Only beside PostgreSQL: the images namespace is not created while images is disabled.
    assert [s["metadata"]["namespace"] for s in copies] == [namespace] == ["infrastructure"]


def test_an_empty_backup_password_fails_the_first_boot_instead_of_skipping_the_role(
    server, initdb_script, tmp_path
):
    result = run_script(server, initdb_script, tmp_path, {**PASSWORDS, "backup": ""})
    assert result.returncode != 0
    assert "no password for backup_user (empty key in its Secret)" in result.stderr
