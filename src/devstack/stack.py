"""Start and stop the whole system: PostgreSQL, MinIO and the services, wired as in the chart."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from devstack.minio import MinioServer
from devstack.postgres import PostgresServer
from devstack.services import METRICS_PORTS, SERVICE_PORTS, ServiceProcess
from servicekit import migrations
from servicekit.tokens import generate_private_key_pem


@dataclass
class Stack:
    """The three services and their dependencies on loopback ports.

    ``state_dir`` keeps data across runs (make run); without it everything is temporary.
    """

    state_dir: Path | None = None
    ports: dict[str, int] = field(default_factory=lambda: dict(SERVICE_PORTS))
    metrics_ports: dict[str, int] = field(default_factory=lambda: dict(METRICS_PORTS))
    jwt_signing_key: str = ""
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(self, only: tuple[str, ...] = ("auth", "images", "api")) -> Stack:
        state = self.state_dir
        self.postgres = PostgresServer(str(state / "postgres") if state else None).start()
        self.minio = MinioServer(str(state / "minio") if state else None).start()
        self.jwt_signing_key = self.jwt_signing_key or self._persistent_signing_key()
        urls = {
            name: self.postgres.provision(name, self._persistent_password(name))
            for name in migrations.SERVICES
        }
        for name in only:
            migrations.upgrade(name, urls[name])
        for name in only:
            env = self.service_env(name, urls[name])
            log_path = state / "logs" / f"{name}.log" if state else None
            self.services[name] = ServiceProcess(
                name, self.ports[name], env, log_path=log_path, metrics_port=self.metrics_ports[name]
            ).start()
        return self

    def service_env(self, name: str, database_url: str) -> dict[str, str]:
        env = {"DATABASE_URL": database_url}
        if name == "auth":
            # The private key goes to auth alone; images fetches the public half from auth.
            env["JWT_SIGNING_KEY"] = self.jwt_signing_key
            env["BCRYPT_ROUNDS"] = "10"
        if name == "api":
            env["AUTH_SERVICE_URL"] = f"http://127.0.0.1:{self.ports['auth']}"
            env["IMAGES_SERVICE_URL"] = f"http://127.0.0.1:{self.ports['images']}"
        if name == "images":
            env.update(
                {
                    "S3_ENDPOINT_URL": self.minio.endpoint,
                    "S3_ACCESS_KEY_ID": self.minio.access_key,
                    "S3_SECRET_ACCESS_KEY": self.minio.secret_key,
                    "S3_BUCKET": "images",
                    "S3_REGION": "us-east-1",
                    "S3_PATH_STYLE": "true",
                    "S3_CREATE_BUCKET": "true",
                    "AUTH_JWKS_URL": f"http://127.0.0.1:{self.ports['auth']}/.well-known/jwks.json",
                }
            )
        return env

    def _persistent_signing_key(self) -> str:
        return self._remembered("jwt-signing-key.pem", generate_private_key_pem)

    def _persistent_password(self, service: str) -> str:
        return self._remembered(f"{service}-db-password", lambda: secrets.token_urlsafe(18))

    def _remembered(self, name: str, make) -> str:
        if self.state_dir is None:
            return make()
        path = self.state_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text()

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        # Kept state (make run) survives a stop; a temporary stack leaves nothing behind.
        for server in (getattr(self, "minio", None), getattr(self, "postgres", None)):
            if server is not None and self.state_dir:
                server.stop()
            elif server is not None:
                server.destroy()
