"""The chart's PostgreSQL initdb script, run against a real PostgreSQL server the way the Bitnami
entrypoint runs it (sourced, errexit on, passwords from the environment): each service's role
owns its database, can migrate it, and cannot connect to any other."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg2
import pytest

from devstack.postgres import PostgresServer

DATABASES = {
    "auth": ("auth_db", "auth_user"),
    "api": ("api_db", "api_user"),
    "images": ("image_db", "image_user"),
}
PASSWORDS = {"auth": "authPassw0rd1234", "api": "apiPassw0rd12345", "images": "imagesPassw0rd12"}


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


def test_a_service_without_a_password_is_skipped_not_created(server, initdb_script, tmp_path):
    result = run_script(server, initdb_script, tmp_path, {"auth": PASSWORDS["auth"]})
    assert result.returncode == 0, result.stderr
    assert "no password for api_user, skipping api_db" in result.stdout
