"""A throwaway PostgreSQL server on a loopback port, with one database and user per service."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg2
from psycopg2 import sql

from devstack.wait import free_port, wait_until

SERVICE_DATABASES = {"auth": "auth_db", "api": "api_db", "images": "image_db"}
SERVICE_USERS = {"auth": "auth_user", "api": "api_user", "images": "image_user"}
BACKUP_USER = "backup_user"
# initdb and pg_ctl refuse to run as root; as root we run them as Debian's `postgres` user.
UNPRIVILEGED_USER = "postgres"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found; run `bash ci/install.sh` first")


class PostgresServer:
    def __init__(self, data_dir: str | None = None, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.base_dir = Path(data_dir or tempfile.mkdtemp(prefix="platform-pg-"))
        self.data_dir = self.base_dir / "data"
        self.host = host
        self.port = port or free_port(host)
        self.superuser_password = secrets.token_urlsafe(16)
        self.bin = _bin_dir()
        self._as_root = os.geteuid() == 0
        self.passwords: dict[str, str] = {}

    # -- process control -------------------------------------------------------------------
    def _run(self, *args: str) -> None:
        user = UNPRIVILEGED_USER if self._as_root else None
        result = subprocess.run(
            [str(self.bin / args[0]), *args[1:]], user=user, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def _initdb(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.base_dir / "superuser-password"
        pwfile.write_text(self.superuser_password)
        if self._as_root:
            account = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.base_dir, account.pw_uid, account.pw_gid)
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        self.base_dir.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        if self.host != "127.0.0.1":
            # initdb's rules admit loopback only; a server on another address serves its subnet.
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet scram-sha-256\n")

    def start(self) -> PostgresServer:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        else:
            self.superuser_password = (self.base_dir / "superuser-password").read_text()
        options = (
            f"-p {self.port} -k {self.base_dir} -c listen_addresses={self.host} "
            "-c max_connections=300 -c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.base_dir / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        wait_until(self._accepts_connections, timeout=30, message="PostgreSQL to accept connections")
        return self

    def enable_tls(self, certificate: Path, key: Path) -> PostgresServer:
        """Serve TLS with this certificate and key (PEM) from now on; plain connections still work."""
        for source, name in ((certificate, "server.crt"), (key, "server.key")):
            target = self.data_dir / name
            shutil.copy(source, target)
            if self._as_root:
                account = pwd.getpwnam(UNPRIVILEGED_USER)
                os.chown(target, account.pw_uid, account.pw_gid)
            target.chmod(0o600)
        connection = self.connect()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("ALTER SYSTEM SET ssl = on")
            cursor.execute("SELECT pg_reload_conf()")
        connection.close()
        wait_until(self._serves_tls, timeout=30, message="PostgreSQL to serve TLS")
        return self

    def _serves_tls(self) -> bool:
        try:
            connection = self.connect(sslmode="require")
        except psycopg2.OperationalError:
            return False
        connection.close()
        return True

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel, never answered."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: int) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():  # not running: nothing to freeze or thaw
            return
        postmaster = int(pid_file.read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True)
        for pid in [postmaster, *map(int, children.stdout.split())]:
            os.kill(pid, sig)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _accepts_connections(self) -> bool:
        with self.connect():
            return True

    # -- databases -------------------------------------------------------------------------
    def connect(
        self, database: str = "postgres", user: str = "postgres", password: str | None = None, **options
    ):
        password = self.superuser_password if password is None else password
        return psycopg2.connect(
            host=self.host, port=self.port, dbname=database, user=user, password=password, connect_timeout=3,
            **options,
        )  # fmt: skip

    def url(self, database: str, user: str, password: str) -> str:
        return f"postgresql+psycopg2://{user}:{password}@{self.host}:{self.port}/{database}"

    def provision(self, service: str, password: str | None = None) -> str:
        """Create the service's user and database (idempotent) and return its URL.

        The user owns only its database; PUBLIC loses CONNECT, so no service user can open
        another service's database.
        """
        database, user = SERVICE_DATABASES[service], SERVICE_USERS[service]
        password = password or self.passwords.get(service) or secrets.token_urlsafe(18)
        self.passwords[service] = password
        connection = self.connect()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            cursor.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)), (password,)
            )
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if not cursor.fetchone():
                cursor.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(database), sql.Identifier(user)
                    )
                )
            cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
        connection.close()
        return self.url(database, user, password)

    def provision_backup_role(self, password: str | None = None) -> str:
        """Create the backup role (idempotent) and return its password.

        pg_read_all_data lets it read every table and sequence, and CONNECT opens the three
        databases to it: it can take a backup and change nothing.
        """
        password = password or self.passwords.get("backup") or secrets.token_urlsafe(18)
        self.passwords["backup"] = password
        connection = self.connect()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (BACKUP_USER,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            role = sql.Identifier(BACKUP_USER)
            cursor.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(role), (password,))
            cursor.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(role))
            for database in SERVICE_DATABASES.values():
                cursor.execute(
                    sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role)
                )
        connection.close()
        return password
