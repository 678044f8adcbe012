"""The dump file's own checks, before any database is touched."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from backups.config import BucketSettings
from backups.dump import FORMAT_VERSION, DumpRefused, read_info


def write_dump(path, tables: list[str], with_data: list[str]) -> None:
    meta = {
        "format": FORMAT_VERSION,
        "database": "api_db",
        "service": "api",
        "revision": "0001",
        "server_version": "17.2",
        "tables": [{"name": name, "columns": ["id"]} for name in tables],
        "sequences": {},
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, content in [*((f"tables/{t}.copy", b"x" * 5000) for t in with_data), ("meta.json", None)]:
            data = json.dumps(meta).encode() if content is None else content
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))


def test_a_complete_dump_is_described_by_its_meta(tmp_path):
    path = tmp_path / "api_db.tar.gz"
    write_dump(path, ["posts"], ["posts"])
    info = read_info(path)
    assert (info.database, info.revision, [t["name"] for t in info.tables]) == ("api_db", "0001", ["posts"])


def test_a_truncated_dump_is_refused(tmp_path):
    path = tmp_path / "api_db.tar.gz"
    write_dump(path, ["posts"], ["posts"])
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DumpRefused, match="unreadable or incomplete"):
        read_info(path)


def test_a_dump_lacking_a_tables_data_is_refused(tmp_path):
    path = tmp_path / "api_db.tar.gz"
    write_dump(path, ["posts", "client_rate_limits"], ["posts"])
    with pytest.raises(DumpRefused, match="lacks the data of tables client_rate_limits"):
        read_info(path)


def test_only_the_three_services_databases_can_be_named():
    assert BucketSettings(databases=" auth_db, image_db ").database_names() == ["auth_db", "image_db"]
    with pytest.raises(ValueError, match="unknown databases: postgres"):
        BucketSettings(databases="auth_db,postgres").database_names()
