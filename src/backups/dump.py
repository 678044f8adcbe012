"""One database as one file: a gzip'd tar of its tables (COPY, binary), sequences and revision.

pg_dump is not used: the bundled server is PostgreSQL 17 and the images' Debian client is 15,
and pg_dump refuses a server newer than itself. What a restore needs of a service's database is
small and known (the schema is the migrations'), so the dump holds only the data, taken the way
pg_dump takes it: one REPEATABLE READ, READ ONLY transaction, hence one consistent snapshot.

Inside the tar:

- ``meta.json``: database, service, alembic revision, server version, and per table its columns
  (COPY names them, so a restore does not depend on column order) and the sequences' values;
- ``tables/<table>.copy``: the table in COPY's binary format.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions
from psycopg2 import sql

FORMAT_VERSION = 1


class DumpRefused(Exception):
    """A dump that must not be restored: unreadable, incomplete, or from an unknown schema."""


@dataclass(frozen=True)
class DumpInfo:
    database: str
    service: str
    revision: str | None
    server_version: str
    tables: list[dict]
    sequences: dict[str, list]


@contextlib.contextmanager
def _synchronous():
    """COPY refuses to run while a wait callback is set, and a service app built in the same
    process (servicekit.database, in tests or a console script importing a service) sets one
    for the whole process: lift it for the COPY alone."""
    callback = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(None)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(callback)


def _tables(cursor) -> list[dict]:
    # The version table is the migrations' own: a restore migrates to the dump's revision instead.
    cursor.execute(
        """
        SELECT c.relname, array_agg(a.attname ORDER BY a.attnum)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE 'alembic_version%'
        GROUP BY c.relname ORDER BY c.relname
        """
    )
    return [{"name": name, "columns": list(columns)} for name, columns in cursor.fetchall()]


def _sequences(cursor) -> dict[str, list]:
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'S' ORDER BY c.relname"
    )
    values = {}
    for (name,) in cursor.fetchall():
        cursor.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(name)))
        values[name] = list(cursor.fetchone())
    return values


def revision_of(cursor, service: str) -> str | None:
    cursor.execute("SELECT to_regclass(%s)", (f"public.alembic_version_{service}",))
    if cursor.fetchone()[0] is None:
        return None
    cursor.execute(sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(f"alembic_version_{service}")))
    row = cursor.fetchone()
    return row[0] if row else None


def _copy_columns(table: dict) -> sql.Composed:
    return sql.SQL("{} ({})").format(
        sql.Identifier(table["name"]), sql.SQL(", ").join(map(sql.Identifier, table["columns"]))
    )


def dump(connection, database: str, service: str, target: Path) -> DumpInfo:
    """Write ``database`` (an open psycopg2 connection to it) to ``target`` (.tar.gz)."""
    connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
    with connection.cursor() as cursor, tarfile.open(target, "w:gz") as archive:
        tables = _tables(cursor)
        info = DumpInfo(
            database=database,
            service=service,
            revision=revision_of(cursor, service),
            server_version=connection.info.parameter_status("server_version"),
            tables=tables,
            sequences=_sequences(cursor),
        )
        with tempfile.TemporaryDirectory() as scratch:
            for table in tables:
                path = Path(scratch) / f"{table['name']}.copy"
                with open(path, "wb") as out:
                    statement = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(_copy_columns(table))
                    with _synchronous():
                        cursor.copy_expert(statement.as_string(connection), out)
                archive.add(path, arcname=f"tables/{table['name']}.copy")
                path.unlink()
        meta = json.dumps({"format": FORMAT_VERSION, **info.__dict__}, indent=2).encode()
        entry = tarfile.TarInfo("meta.json")
        entry.size = len(meta)
        archive.addfile(entry, io.BytesIO(meta))
    connection.rollback()
    return info


def read_info(path: Path) -> DumpInfo:
    """Read the whole archive (gzip's CRC and tar's sizes catch truncation and corruption)
    and return what it describes; raise DumpRefused if anything is wrong or missing."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {}
            for member in archive:
                data = archive.extractfile(member)
                while data is not None and data.read(1024 * 1024):
                    pass
                members[member.name] = member
            meta_file = archive.extractfile(members["meta.json"])
            meta = json.loads(meta_file.read())
    except (OSError, EOFError, tarfile.TarError, KeyError, ValueError) as exc:
        raise DumpRefused(f"{path.name} is unreadable or incomplete ({type(exc).__name__}: {exc})") from exc
    if meta.pop("format", None) != FORMAT_VERSION:
        raise DumpRefused(f"{path.name} is not a dump of format {FORMAT_VERSION}")
    info = DumpInfo(**meta)
    missing = [t["name"] for t in info.tables if f"tables/{t['name']}.copy" not in members]
    if missing:
        raise DumpRefused(f"{path.name} lacks the data of tables {', '.join(missing)}")
    return info


def load(connection, path: Path, info: DumpInfo) -> dict[str, int]:
    """Replace every table's rows with the dump's, in ONE transaction (all or nothing).

    The connection is the tables' owner's; the schema must already be at ``info.revision``.
    Returns the rows loaded per table.
    """
    names = [t["name"] for t in info.tables]
    counts = {}
    try:
        with connection.cursor() as cursor, tarfile.open(path, "r:gz") as archive:
            if names:
                cursor.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                        sql.SQL(", ").join(map(sql.Identifier, names))
                    )
                )
            # The schemas have no foreign keys between tables; with some, this order would matter.
            for table in info.tables:
                data = archive.extractfile(f"tables/{table['name']}.copy")
                statement = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(_copy_columns(table))
                with _synchronous():
                    cursor.copy_expert(statement.as_string(connection), data)
                counts[table["name"]] = cursor.rowcount
            for name, (last_value, is_called) in info.sequences.items():
                quoted = sql.Identifier(name).as_string(connection)
                cursor.execute("SELECT setval(%s, %s, %s)", (quoted, last_value, is_called))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return counts
