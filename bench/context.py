"""What the benchmarks share in one run: the stack, the pinning, BENCH_SECONDS, the JSON document
they record their figures in, and a pool of logged-in users."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import bcrypt
import jwt
import requests

import auth
from auth.config import AuthSettings
from bench.measure import LoadResult, Pinning, ProcessGroup, wrk
from devstack.services import METRICS_PORTS, SERVICE_PORTS
from devstack.stack import Stack
from devstack.wait import free_port
from servicekit import config, tokens

DEFAULT_SECONDS = 10.0
WARMUP_SECONDS = 2.0
# The same for every bench account: the figures do not depend on it.
PASSWORD = "bench password 1"  # noqa: S105 - throwaway accounts on a throwaway stack
USER_POOL_SIZE = 100
# For the requests that prepare a benchmark: on a shared machine a burst of someone else's work
# can hold the servers' CPU for tens of seconds, which makes a setup request slow, not wrong.
SETUP_TIMEOUT_SECONDS = 120
# All of wrk's connections come from 127.0.0.1, where real logins come from many addresses; the
# mixed journey's logins through the gateway would otherwise be refused (429) after 30 a minute.
# The limiter still counts every login (one upsert in api_db), so its cost stays in the figures.
GATEWAY_LOGIN_LIMIT_PER_WINDOW = 1_000_000


class BenchStack(Stack):
    """The local stack on free ports (a `make run` may hold the usual ones), with the gateway's
    per-client login limit raised (see GATEWAY_LOGIN_LIMIT_PER_WINDOW)."""

    def __init__(self) -> None:
        super().__init__(
            ports={name: free_port() for name in SERVICE_PORTS},
            metrics_ports={name: free_port() for name in METRICS_PORTS},
        )

    def service_env(self, name: str, database_url: str) -> dict[str, str]:
        env = super().service_env(name, database_url)
        if name == "api":
            env["RATE_LIMIT_LOGIN"] = str(GATEWAY_LOGIN_LIMIT_PER_WINDOW)
        return env


@dataclass(frozen=True)
class User:
    username: str
    token: str

    @property
    def authorization(self) -> str:
        return f"Bearer {self.token}"


def bench_seconds() -> float:
    """Each wrk run's length: BENCH_SECONDS, 10 by default."""
    return float(os.environ.get("BENCH_SECONDS", DEFAULT_SECONDS))


@dataclass
class Bench:
    stack: Stack
    pinning: Pinning
    seconds: float
    document: dict
    _users: list[User] = field(default_factory=list)

    # -- where the CPU goes ------------------------------------------------------------------
    def groups(self) -> list[ProcessGroup]:
        """The stack's process groups: each service's gunicorn master, the postmaster, MinIO."""
        services = [ProcessGroup(name, service.process.pid) for name, service in self.stack.services.items()]
        postmaster_pid = int((self.stack.postgres.data_dir / "postmaster.pid").read_text().split()[0])
        return [
            *services,
            ProcessGroup("postgres", postmaster_pid),
            ProcessGroup("minio", self.stack.minio.process.pid),
        ]

    def load(
        self,
        url: str,
        *,
        connections: int = 16,
        script: str = "",
        groups: list[ProcessGroup] | None = None,
        warm_up: bool = True,
    ) -> LoadResult:
        """wrk against ``url`` for BENCH_SECONDS on the load generator's CPU, after a warm-up.

        The warm-up (WARMUP_SECONDS, the same load, not counted) keeps first requests out of the
        figures: the workers open one database connection per thread as they start, but caches,
        lazily loaded code and any connection beyond those are made by the first requests, which
        is about cold starts, not about what a request costs. ``warm_up=False`` for a run whose
        figures the warm-up would change.
        """
        options = dict(connections=connections, script=script, pin_cpu=self.pinning.load_cpu)
        if warm_up:
            wrk(url, seconds=min(WARMUP_SECONDS, self.seconds), groups=[], **options)
        return wrk(url, seconds=self.seconds, groups=self.groups() if groups is None else groups, **options)

    # -- the JSON document ---------------------------------------------------------------------
    def record(self, scenario: str, figures: dict) -> None:
        self.document["scenarios"].setdefault(scenario, {}).update(figures)

    def scenario(self, name: str) -> dict | None:
        return self.document["scenarios"].get(name)

    # -- accounts --------------------------------------------------------------------------------
    def url(self, service: str) -> str:
        return self.stack.services[service].url

    def users(self) -> list[User]:
        """USER_POOL_SIZE accounts, each logged in once through auth's own /login (the gateway
        limits logins per client address). Made on first use, then shared."""
        if not self._users:
            self._users = self._make_users(USER_POOL_SIZE)
        return self._users

    def minted_tokens(self, count: int) -> list[str]:
        """``count`` new access tokens for the user pool's accounts in turn, each one distinct (its
        own ``jti``), signed with the stack's auth key and settings exactly as auth's /login signs
        them: /login would spend a bcrypt hash on each. Valid for auth's token lifetime from now."""
        # What the auth processes read: this environment, then their own settings over it.
        settings = config.load(AuthSettings, {**os.environ, **self.stack.services["auth"].env})
        signing = auth.signing_keys(settings)
        accounts = [
            (jwt.decode(user.token, options={"verify_signature": False})["sub"], user.username)
            for user in self.users()
        ]
        return [
            tokens.signed_access_token(
                signing,
                *accounts[number % len(accounts)],
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                lifetime=settings.token_lifetime,
            )
            for number in range(count)
        ]

    def _make_users(self, count: int) -> list[User]:
        # Written straight into auth_db with one hash computed here: /register would spend a
        # bcrypt hash per account on the servers' one CPU (75 ms each at the stack's cost).
        # The hash has the stack's cost, so each login below costs what a real one does.
        rounds = int(self.stack.services["auth"].env["BCRYPT_ROUNDS"])
        password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds)).decode()
        usernames = [f"bench-user-{number:03d}" for number in range(count)]
        connection = self.stack.postgres.connect(database="auth_db")
        with connection, connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO users (username, password_hash) VALUES (%s, %s)",
                [(username, password_hash) for username in usernames],
            )
        connection.close()
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(self.login, usernames))

    def login(self, username: str) -> User:
        answer = requests.post(
            f"{self.url('auth')}/login",
            json={"username": username, "password": PASSWORD},
            timeout=SETUP_TIMEOUT_SECONDS,
        )
        answer.raise_for_status()
        return User(username, answer.json()["access_token"])
