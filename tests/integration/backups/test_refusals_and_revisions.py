"""What `platform-restore databases` refuses, and how it handles a schema at another revision."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import create_engine, text

from servicekit import migrations
from tests.integration.backups.conftest import BACKUPS_BUCKET, drop_databases


def rows(url: str, table: str) -> list[tuple]:
    engine = create_engine(url)
    with engine.connect() as connection:
        query = text(f"SELECT * FROM {table} ORDER BY 1")  # noqa: S608 - the test's own table names
        found = [tuple(row) for row in connection.execute(query)]
    engine.dispose()
    return found


def revision(url: str, service: str) -> str:
    engine = create_engine(url)
    with engine.connect() as connection:
        query = text(f"SELECT version_num FROM alembic_version_{service}")  # noqa: S608 - a service name of the test, not input
        found = connection.execute(query).scalar_one()
    engine.dispose()
    return found


def only_backup(s3) -> str:
    listing = s3.list_objects_v2(Bucket=BACKUPS_BUCKET, Prefix="daily/", Delimiter="/")
    (prefix,) = listing["CommonPrefixes"]
    return prefix["Prefix"]


@pytest.fixture
def posts(api, gateway_account):
    """Two posts in api_db, through the gateway."""
    _, headers = gateway_account("alice")
    for number in range(2):
        assert api.post("/posts", headers, json={"content": f"post {number}"}).status_code == 201
    return api.all_posts()


def damage(s3, key: str, how: str) -> None:
    """Corrupt (one byte flipped, the manifest unchanged) or truncate (half of it, the manifest
    rewritten to match, so only reading the archive shows it) one dump."""
    content = bytearray(s3.get_object(Bucket=BACKUPS_BUCKET, Key=key)["Body"].read())
    if how == "corrupted":
        content[len(content) // 2] ^= 0xFF
    else:
        content = content[: len(content) // 2]
        manifest_key = key.rsplit("/", 1)[0] + "/manifest.json"
        manifest = json.loads(s3.get_object(Bucket=BACKUPS_BUCKET, Key=manifest_key)["Body"].read())
        for entry in manifest["databases"]:
            if key.endswith(entry["file"]):
                entry.update(size=len(content), sha256=hashlib.sha256(content).hexdigest())
        s3.put_object(Bucket=BACKUPS_BUCKET, Key=manifest_key, Body=json.dumps(manifest).encode())
    s3.put_object(Bucket=BACKUPS_BUCKET, Key=key, Body=bytes(content))


# What the refusal says for each kind of damage.
REASONS = {"corrupted": "is corrupted: sha256", "truncated": "is unreadable or incomplete"}


@pytest.mark.parametrize("how", sorted(REASONS))
def test_a_damaged_dump_is_refused_and_nothing_is_restored(how, posts, api, commands, database_urls):
    assert commands.backup("platform-backup run").returncode == 0
    backup = only_backup(commands.s3)
    damage(commands.s3, backup + "api_db.tar.gz", how)
    assert (
        api.post("/posts", api.login("alice"), json={"content": "written after the backup"}).status_code
        == 201
    )
    before = {service: rows(url, table) for service, url, table in (
        ("auth", database_urls["auth"], "users"),
        ("api", database_urls["api"], "posts"),
    )}  # fmt: skip

    refused = commands.restore("platform-restore databases --backup latest")

    assert refused.returncode == 1
    assert f"dump of api_db in backup {backup.split('/')[1]}" in refused.stderr
    assert REASONS[how] in refused.stderr
    assert "nothing was restored" in refused.stderr
    # auth_db's dump was fine, and is not restored either: all or nothing.
    assert rows(database_urls["auth"], "users") == before["auth"]
    assert rows(database_urls["api"], "posts") == before["api"]


def test_a_database_at_an_older_revision_is_migrated_to_the_dumps_and_then_to_head(
    posts, api, commands, postgres, database_urls
):
    assert commands.backup("platform-backup run").returncode == 0
    head = revision(database_urls["api"], "api")
    drop_databases(postgres, ["api_db"], [])
    postgres.provision("api")
    migrations.upgrade("api", database_urls["api"], "0001")
    assert revision(database_urls["api"], "api") != head

    restored = commands.restore("platform-restore databases --database api_db")

    assert restored.returncode == 0, restored.stderr
    assert "restored api_db" in restored.stdout
    assert revision(database_urls["api"], "api") == head
    assert api.all_posts() == posts


def test_a_dump_from_a_revision_this_code_does_not_know_is_refused(posts, commands, postgres, database_urls):
    connection = postgres.connect(database="api_db")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("UPDATE alembic_version_api SET version_num = 'f00dfeed0042'")
    try:
        assert commands.backup("platform-backup run").returncode == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE alembic_version_api SET version_num = %s", (migrations_head("api"),))
        connection.close()

    refused = commands.restore("platform-restore databases --database api_db")

    assert refused.returncode == 1
    assert "at migration revision f00dfeed0042, which this code does not know" in refused.stderr
    assert "nothing was restored" in refused.stderr
    assert rows(database_urls["api"], "posts") != []


def migrations_head(service: str) -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(
        migrations.alembic_config(service, "postgresql://unused")
    ).get_current_head()
