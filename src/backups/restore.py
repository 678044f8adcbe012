"""`platform-restore`: bring back the databases from a backup, or the images bucket.

    platform-restore list
    platform-restore databases [--backup ID|latest] [--database NAME]
    platform-restore bucket --from versions --before TIMESTAMP [--user ID] [--fix]
    platform-restore bucket --from replica [--user ID] [--fix]

``databases`` checks every dump first (size, sha256, a complete read of the archive): a
corrupted or truncated dump is refused before anything is written. Then, per database, it
makes the service's role and database exist as provisioning does (as the admin: RESTORE_ADMIN_URL
or libpq's PG* variables), migrates the schema to the dump's revision, replaces all rows in one
transaction (as the service's role, with the password the service has: AUTH_DB_PASSWORD,
API_DB_PASSWORD, IMAGES_DB_PASSWORD), and migrates to the code's head.

``bucket`` then puts the objects back and runs the images reconcile (python -m images.reconcile)
so rows and objects are compared; with --fix it removes what no longer matches.

Exit status: 0 done (and, after ``bucket``, nothing left to reconcile), 1 refused or failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from psycopg2 import sql
from sqlalchemy import URL

from backups import buckets, dump
from backups.backup import sha256_of
from backups.config import (
    DATABASE_SERVICES,
    PASSWORD_VARIABLES,
    SERVICE_USERS,
    BucketSettings,
    ImagesBucketSettings,
    ReplicaBucketSettings,
    RestoreSettings,
)
from servicekit import config, migrations

BACKUP_ROLE = "backup_user"


class RestoreRefused(Exception):
    """The restore will not start, for the reason given; nothing was written."""


def _backups_client(settings: BucketSettings):
    return buckets.client(
        settings.s3_endpoint_url, settings.s3_access_key_id, settings.s3_secret_access_key, settings.s3_region
    )


# -- list ----------------------------------------------------------------------------------
def list_command(settings: BucketSettings) -> int:
    backups = buckets.list_backups(_backups_client(settings), settings.s3_bucket)
    if not backups:
        print(f"no complete backup in bucket {settings.s3_bucket}")
    for backup in backups:
        manifest = backup.manifest
        parts = [f"{e['database']} {e['size']} B rev {e['revision']}" for e in manifest["databases"]]
        schedules = ",".join(manifest["schedules"])
        print(f"{backup.id}  {schedules:12} {manifest['timestamp']}  {'; '.join(parts)}")
    return 0


# -- databases -----------------------------------------------------------------------------
def fetch_and_verify(s3, bucket: str, backup: buckets.Backup, names: list[str], scratch: Path) -> list:
    """Download the wanted dumps and check each; returns [(manifest entry, path, DumpInfo)]."""
    entries = {entry["database"]: entry for entry in backup.manifest["databases"]}
    missing = [name for name in names if name not in entries]
    if missing:
        raise RestoreRefused(f"backup {backup.id} has no dump of {', '.join(missing)}")
    checked = []
    for name in names:
        entry = entries[name]
        path = scratch / entry["file"]
        s3.download_file(bucket, backup.prefix + entry["file"], str(path))
        size, digest = path.stat().st_size, sha256_of(path)
        if size != entry["size"]:
            raise RestoreRefused(
                f"dump of {name} in backup {backup.id} is truncated or altered: {size} bytes,"
                f" the manifest says {entry['size']}; nothing was restored"
            )
        if digest != entry["sha256"]:
            raise RestoreRefused(
                f"dump of {name} in backup {backup.id} is corrupted: sha256 {digest},"
                f" the manifest says {entry['sha256']}; nothing was restored"
            )
        try:
            info = dump.read_info(path)
        except dump.DumpRefused as exc:
            what = f"dump of {name} in backup {backup.id}"
            raise RestoreRefused(f"{what}: {exc}; nothing was restored") from exc
        _check_revision_known(info)
        checked.append((entry, path, info))
    return checked


def _script(service: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(migrations.alembic_config(service, "postgresql://unused"))


def _check_revision_known(info: dump.DumpInfo) -> None:
    if info.revision is None:
        return
    try:
        _script(info.service).get_revision(info.revision)
    except CommandError as exc:
        raise RestoreRefused(
            f"dump of {info.database} is at migration revision {info.revision}, which this code does not"
            f" know ({info.service} knows up to {_script(info.service).get_current_head()}): restore with"
            " the release that took the backup, or a newer one; nothing was restored"
        ) from exc


def admin_connection(settings: RestoreSettings):
    url = settings.admin_url
    connection = psycopg2.connect(url) if url else psycopg2.connect(dbname="postgres")
    connection.autocommit = True
    return connection


def provision(admin, database: str, service: str, password: str) -> None:
    """The role and database as provisioning makes them (devstack.postgres, the chart's initdb)."""
    user = SERVICE_USERS[service]
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
        verb = "ALTER" if cursor.fetchone() else "CREATE"
        cursor.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)), (password,))
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if not cursor.fetchone():
            cursor.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user))
            )
        cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (BACKUP_ROLE,))
        if cursor.fetchone():
            cursor.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.Identifier(BACKUP_ROLE)
                )
            )


def _migrate_to(service: str, url: str, revision: str | None) -> None:
    """Bring the schema to exactly ``revision`` (None: no tables yet), up or down."""
    connection = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    with connection, connection.cursor() as cursor:
        info = dump.revision_of(cursor, service)
    connection.close()
    if revision is None or info == revision:
        return
    below_target = {r.revision for r in _script(service).iterate_revisions(revision, "base")}
    if info is None or info in below_target:
        migrations.upgrade(service, url, revision)
    else:
        command.downgrade(migrations.alembic_config(service, url), revision)


def restore_database(admin, path: Path, info: dump.DumpInfo, password: str) -> dict[str, int]:
    provision(admin, info.database, info.service, password)
    url = URL.create(
        "postgresql+psycopg2",
        username=SERVICE_USERS[info.service],
        password=password,
        host=admin.info.host,
        port=admin.info.port,
        database=info.database,
    ).render_as_string(hide_password=False)
    _migrate_to(info.service, url, info.revision)
    connection = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        counts = dump.load(connection, path, info)
    finally:
        connection.close()
    migrations.upgrade(info.service, url, "head")
    return counts


def databases_command(settings: RestoreSettings, wanted: str, database: str | None) -> int:
    names = [database] if database else settings.database_names()
    passwords = {}
    for name in names:
        service = dump_service(name)
        passwords[name] = settings.password(service)
        if not passwords[name]:
            variable = PASSWORD_VARIABLES[service]
            raise RestoreRefused(f"{variable} is required: the password {service}'s database role gets")
    s3 = _backups_client(settings)
    backup = buckets.find_backup(s3, settings.s3_bucket, wanted)
    with tempfile.TemporaryDirectory(prefix="platform-restore-") as scratch:
        checked = fetch_and_verify(s3, settings.s3_bucket, backup, names, Path(scratch))
        admin = admin_connection(settings)
        try:
            for entry, path, info in checked:
                counts = restore_database(admin, path, info, passwords[entry["database"]])
                rows = ", ".join(f"{table} {count}" for table, count in counts.items())
                print(f"restored {info.database} from backup {backup.id} (revision {info.revision}): {rows}")
        finally:
            admin.close()
    return 0


def dump_service(database: str) -> str:
    if database not in DATABASE_SERVICES:
        raise RestoreRefused(f"unknown database {database}: one of {', '.join(DATABASE_SERVICES)}")
    return DATABASE_SERVICES[database]


# -- bucket --------------------------------------------------------------------------------
def bucket_command(
    settings: RestoreSettings, source: str, before: str | None, user: str | None, fix: bool
) -> int:
    images = config.load(ImagesBucketSettings)
    target = buckets.location_client(images)
    prefix = f"users/{user}/" if user else "users/"
    if source == "replica":
        replica = config.load(ReplicaBucketSettings)
        buckets.ensure_bucket(target, images.bucket)
        source = buckets.location_client(replica)
        report = buckets.mirror(source, replica.bucket, target, images.bucket, prefix)
        print(f"copied {report.copied} of {report.examined} objects from {replica.bucket} to {images.bucket}")
    else:
        if not before:
            raise RestoreRefused("--from versions needs --before TIMESTAMP (ISO 8601 with a time zone)")
        moment = datetime.datetime.fromisoformat(before)
        if moment.tzinfo is None:
            raise RestoreRefused(f"--before {before} needs a time zone, e.g. {before}Z")
        restored = buckets.restore_versions(target, images.bucket, moment, prefix)
        print(f"restored {len(restored)} objects of {images.bucket} to their versions of {before}")
    return run_reconcile(images, settings.images_database_url or os.environ.get("DATABASE_URL", ""), fix)


def run_reconcile(images: ImagesBucketSettings, database_url: str, fix: bool) -> int:
    if not database_url:
        raise RestoreRefused("IMAGES_DATABASE_URL (or DATABASE_URL) is required: reconcile reads image_db")
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "S3_ENDPOINT_URL": images.endpoint_url,
        "S3_BUCKET": images.bucket,
        "S3_ACCESS_KEY_ID": images.access_key_id,
        "S3_SECRET_ACCESS_KEY": images.secret_access_key,
        "S3_REGION": images.region,
        # The reconcile loads the service's settings, which require it; it never fetches keys.
        "AUTH_JWKS_URL": os.environ.get("AUTH_JWKS_URL", "http://unused.invalid/jwks.json"),
    }
    # Everything is compared, however recent: the services are stopped during a restore, and a
    # restored object is younger than its row.
    arguments = [sys.executable, "-m", "images.reconcile", "--grace-seconds", "0"] + (
        ["--fix"] if fix else []
    )
    result = subprocess.run(arguments, env=environ, capture_output=True, text=True, check=False)
    kinds: dict[str, int] = {}
    done = {}
    for line in result.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "orphan found":
            kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
        elif record.get("message") in ("reconcile done", "reconcile failed"):
            done = record
    if result.returncode == 2 or not done:
        print(f"reconcile failed: {done.get('error') or result.stderr.strip()[-300:]}", file=sys.stderr)
        return 1
    found = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())) or "nothing"
    print(f"reconcile: found {found}; fixed {done['fixed']} of {done['found']}")
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platform-restore", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the complete backups, with their manifests")
    databases = commands.add_parser("databases", help="restore databases from a backup")
    databases.add_argument("--backup", default="latest", help="backup id, or latest (default)")
    databases.add_argument("--database", help="only this database (default: BACKUP_DATABASES)")
    bucket = commands.add_parser("bucket", help="put the images bucket's objects back, then reconcile")
    bucket.add_argument("--from", dest="source", choices=("versions", "replica"), required=True)
    bucket.add_argument("--before", help="with --from versions: the moment to go back to (ISO 8601)")
    bucket.add_argument("--user", help="only this user's images (their id)")
    bucket.add_argument("--fix", action="store_true", help="let the reconcile remove what does not match")
    args = parser.parse_args(argv)
    try:
        settings = config.load(RestoreSettings)
        if args.command == "bucket":
            return bucket_command(settings, args.source, args.before, args.user, args.fix)
        if args.command == "list":
            return list_command(settings)
        return databases_command(settings, args.backup, args.database)
    except (RestoreRefused, LookupError, config.ConfigError, ValueError) as exc:
        print(f"platform-restore {args.command} refused: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
