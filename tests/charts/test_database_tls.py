"""An external PostgreSQL with sslmode verify-ca/verify-full: libpq needs the CA that signed the
server's certificate. The chart mounts global.externalDatabase.caSecret into every container that
connects and names it in DATABASE_URL (sslrootcert), or, for verify-full without one, tells libpq
to trust the system's CAs (sslrootcert=system, SSL_CERT_FILE = the image's bundle)."""

from __future__ import annotations

import psycopg2
import pytest
import sqlalchemy
import yaml
from sqlalchemy.engine import make_url

from tests.charts.conftest import VALUES_DIR

CA_DIR = "/etc/platform/database-ca"
PROD = ("-f", str(VALUES_DIR / "prod.yaml"))


def connecting_containers(objects):
    """(where, container, pod spec) of every container of ours that opens the database."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            spec = obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        else:
            continue
        for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
            env = {item["name"]: item for item in container.get("env") or []}
            if "DATABASE_URL" in env:
                yield f"{obj['metadata']['name']}/{container['name']}", container, spec


def rendered(template, *args):
    result = template(*args)
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def env_value(container, name):
    return next((item.get("value") for item in container["env"] if item["name"] == name), None)


@pytest.mark.parametrize("render_id", ["prod-multi", "prod-single"])
def test_production_mounts_the_database_ca_read_only_and_names_it_in_the_url(get_render, render_id):
    containers = list(connecting_containers(get_render(render_id).ours()))
    where = {name for name, _, _ in containers}
    # Each service and its migrate init container, and the images reconcile CronJob.
    assert len(where) == 7, where
    assert "platform-images-reconcile/reconcile" in where
    for name, container, spec in containers:
        url = env_value(container, "DATABASE_URL")
        assert url.endswith(f"?sslmode=verify-full&sslrootcert={CA_DIR}/ca.crt"), (name, url)
        mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
        assert mounts["database-ca"] == {"name": "database-ca", "mountPath": CA_DIR, "readOnly": True}, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert volumes["database-ca"]["secret"] == {
            "secretName": "platform-database-ca",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }, name
        assert env_value(container, "SSL_CERT_FILE") is None


def test_verify_full_without_a_ca_secret_trusts_the_system_cas_of_the_image(template):
    objects = rendered(template, *PROD, "--set-string", "global.externalDatabase.caSecret=")
    containers = list(connecting_containers(objects))
    assert len(containers) == 7
    for name, container, spec in containers:
        assert env_value(container, "DATABASE_URL").endswith("?sslmode=verify-full&sslrootcert=system"), name
        assert env_value(container, "SSL_CERT_FILE") == "/etc/ssl/certs/ca-certificates.crt", name
        assert "database-ca" not in {volume["name"] for volume in spec["volumes"]}, name


def test_verify_ca_without_a_ca_secret_is_refused_because_libpq_refuses_it(template):
    result = template(
        *PROD,
        "--set-string",
        "global.externalDatabase.caSecret=",
        "--set",
        "global.externalDatabase.sslMode=verify-ca",
    )
    assert result.returncode != 0
    assert "verify-ca needs global.externalDatabase.caSecret" in result.stderr


@pytest.mark.parametrize("ssl_mode", ["require", ""])
def test_modes_that_check_no_certificate_need_no_ca(template, ssl_mode):
    objects = rendered(
        template,
        *PROD,
        "--set-string",
        f"global.externalDatabase.sslMode={ssl_mode}",
        "--set-string",
        "global.externalDatabase.caSecret=",
    )
    for name, container, spec in connecting_containers(objects):
        url = env_value(container, "DATABASE_URL")
        assert "sslrootcert" not in url and url.endswith(f"?sslmode={ssl_mode}" if ssl_mode else "_db"), name
        assert "database-ca" not in {volume["name"] for volume in spec["volumes"]}, name


def test_the_bundled_database_gets_neither_tls_options_nor_a_ca(get_render):
    for name, container, spec in connecting_containers(get_render("staging-multi").ours()):
        assert env_value(container, "DATABASE_URL").endswith("_db"), name
        assert "database-ca" not in {volume["name"] for volume in spec["volumes"]}, name


def local_url(rendered_url: str, server, ca_file) -> str:
    """The rendered URL pointed at the test server, the mounted CA at the test CA's file."""
    url = make_url(rendered_url.replace(f"{CA_DIR}/ca.crt", str(ca_file)))
    return url.set(
        host="localhost", port=server.port, database="postgres", username="postgres",
        password=server.superuser_password,
    ).render_as_string(hide_password=False)  # fmt: skip


def can_connect(url: str) -> bool:
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            return connection.execute(
                sqlalchemy.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).scalar()
    finally:
        engine.dispose()


def test_the_rendered_urls_connect_to_a_postgresql_with_a_privately_signed_certificate(
    get_render, template, tls_postgres, monkeypatch
):
    server, ca_file = tls_postgres.server, tls_postgres.ca_file
    (_, container, _) = next(connecting_containers(get_render("prod-multi").ours()))
    assert can_connect(local_url(env_value(container, "DATABASE_URL"), server, ca_file)) is True

    system = rendered(template, *PROD, "--set-string", "global.externalDatabase.caSecret=")
    (_, container, _) = next(connecting_containers(system))
    # The test CA stands in for the image's CA bundle.
    assert env_value(container, "SSL_CERT_FILE")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    assert can_connect(local_url(env_value(container, "DATABASE_URL"), server, ca_file)) is True

    # What production rendered before: sslmode=verify-full with no CA anywhere fails every connection.
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(sqlalchemy.exc.OperationalError, match="root certificate file"):
        can_connect(local_url(env_value(container, "DATABASE_URL").split("&")[0], server, ca_file))
    # And sslrootcert=system alone finds nothing: psycopg2-binary's OpenSSL looks in its build directory.
    with pytest.raises(sqlalchemy.exc.OperationalError, match="certificate verify failed"):
        can_connect(local_url(env_value(container, "DATABASE_URL"), server, ca_file))
    assert psycopg2.__libpq_version__ >= 160000, "sslrootcert=system needs libpq 16 or later"
