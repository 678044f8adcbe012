"""The service's PostgreSQL connection: pooled, bounded in time, and self-healing.

Every wait on the database has a client-side deadline. statement_timeout is enforced by the
server, so it cannot help when the server itself stops answering (frozen, or a network path
that drops packets); psycopg2's wait callback lets us wait with select() and give up.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import select
import time
from collections.abc import Callable, Iterator, Mapping

import psycopg2
import psycopg2.extensions
from flask import Flask, g, has_request_context
from flask_sqlalchemy import SQLAlchemy
from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, event, exc, text
from sqlalchemy.dialects.postgresql import psycopg2 as psycopg2_dialect
from sqlalchemy.sql import Executable

from servicekit.config import ServiceSettings
from servicekit.errors import problem_response
from servicekit.health import add_check

log = logging.getLogger(__name__)

DB_POOL_CONNECTIONS = Gauge(
    "db_pool_connections",
    "Database connections held by the pools of this service's workers, by state.",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_LIMIT = Gauge(
    "db_pool_max_connections",
    "Most connections the pools of this service's workers may open (size + overflow).",
    multiprocess_mode="livesum",
)

DB_READS_RETRIED = Counter(
    "db_reads_retried_total",
    "Reads sent once more on a new connection because the database ended theirs (fetch_all).",
)


def _instrument_pool(engine, settings: ServiceSettings) -> None:
    in_use, idle = DB_POOL_CONNECTIONS.labels("in_use"), DB_POOL_CONNECTIONS.labels("idle")
    DB_POOL_LIMIT.set(settings.db_pool_size + settings.db_max_overflow)
    event.listen(engine, "connect", lambda *_: idle.inc())
    event.listen(engine, "checkout", lambda *_: (idle.dec(), in_use.inc()))
    event.listen(engine, "checkin", lambda *_: (in_use.dec(), idle.inc()))
    event.listen(engine, "close", lambda *_: idle.dec())
    event.listen(engine, "close_detached", lambda *_: idle.dec())


# Slack on top of statement_timeout, so the server's own limit answers first when it can.
_CLIENT_DEADLINE_SLACK_SECONDS = 2.0
# Set once at start-up from statement_timeout; a block may shorten it (database_deadline).
# The override is a context variable because each request runs in a thread of its own.
_default_deadline_seconds = 10.0
_deadline_override = contextvars.ContextVar("database_deadline", default=None)


def _connect_timeout_seconds(connection) -> float | None:
    """The connection's own connect_timeout (DB_CONNECT_TIMEOUT_SECONDS, via engine_options)."""
    try:
        value = float(psycopg2.extensions.parse_dsn(connection.dsn).get("connect_timeout", 0))
    except (psycopg2.ProgrammingError, ValueError):
        return None
    return value if value > 0 else None


class NoAnswerInTime(psycopg2.OperationalError):
    """The wait callback gave up on the database: never worth another try (it would wait again)."""


def _wait_with_deadline(connection) -> None:
    """psycopg2 wait callback: like psycopg2.extras.wait_select, but gives up at a deadline."""
    seconds = _deadline_override.get() or _default_deadline_seconds
    connecting = connection.status == psycopg2.extensions.STATUS_SETUP
    if connecting:
        # With a wait callback set, psycopg2 connects through libpq's asynchronous API, which
        # ignores connect_timeout: a server that accepts the TCP connection and never answers
        # (or never accepts it) would hold the request for the statement deadline instead. So the
        # callback enforces connect_timeout itself, from the start of the attempt.
        connect_timeout = _connect_timeout_seconds(connection)
        if connect_timeout is not None:
            seconds = min(seconds, connect_timeout)
    deadline = time.monotonic() + seconds
    while True:
        state = connection.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if connecting:
                raise psycopg2.OperationalError(
                    f"could not connect to server: no answer within {seconds:g} s while connecting"
                )
            # Worded as libpq words a lost connection, which SQLAlchemy recognises as a
            # disconnect: the connection is dropped from the pool, not handed out again
            # mid-conversation. (Closing it here would deadlock on psycopg2's connection lock.)
            raise NoAnswerInTime("could not receive data from server: the database did not answer in time")
        if state == psycopg2.extensions.POLL_READ:
            select.select([connection.fileno()], [], [], remaining)
        elif state == psycopg2.extensions.POLL_WRITE:
            select.select([], [connection.fileno()], [], remaining)
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")


def _end_autocommit(dbapi_connection, _record) -> None:
    """Pool checkin: every connection goes back with transactions on (see reads_only)."""
    if dbapi_connection is not None and not dbapi_connection.closed:
        dbapi_connection.autocommit = False


def _discard_connections_the_server_closed(dbapi_connection, _record, _proxy) -> None:
    """Pool checkout: hand out no connection the server has ended, without a round trip.

    An idle connection has nothing to read. When the server ends it (a restart, a terminated
    backend, idle_session_timeout) the socket becomes readable: an error message, then end of
    file. DisconnectionError makes the pool replace the connection and try again. A peer that
    vanished without closing is found by the keepalives and, on use, by the wait deadline.
    """
    if dbapi_connection.closed:
        raise exc.DisconnectionError("connection closed")
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    if readable:
        raise exc.DisconnectionError("the server closed the connection")


@contextlib.contextmanager
def database_deadline(seconds: float) -> Iterator[None]:
    """Wait at most ``seconds`` for each database round trip inside the block."""
    token = _deadline_override.set(seconds)
    try:
        yield
    finally:
        _deadline_override.reset(token)


def reads_only(view: Callable) -> Callable:
    """For a view that only reads through the session: its statements run outside a transaction,
    one round trip each (the hottest single-statement reads use fetch_all instead).

    psycopg2 sends BEGIN before the first statement of a transaction and the pool sends ROLLBACK
    when the connection goes back: two round trips that a single SELECT does not need. Each
    statement still reads one consistent snapshot of its own. Put it above decorators that read
    too, so that their statements are covered. The connection is switched when the session first
    takes one (_autocommit_for_reads), not before the view runs: a request its token check
    refuses never takes a connection from the pool.
    """

    @functools.wraps(view)
    def reading(*args, **kwargs):
        g.platform_reads_only = True
        return view(*args, **kwargs)

    return reading


def _autocommit_for_reads(_session, _transaction, connection) -> None:
    """Session after_begin, before its first statement: a reads_only view's connection runs in
    autocommit. psycopg2's own switch: SQLAlchemy's isolation_level option would cost a round trip
    to set the level back when the connection returns (_end_autocommit does it for free)."""
    if has_request_context() and g.get("platform_reads_only"):
        connection.connection.dbapi_connection.autocommit = True


def sql_of(statement: Executable) -> str:
    """A statement built with SQLAlchemy once, as the SQL text psycopg2 takes (see fetch_all)."""
    return str(statement.compile(dialect=psycopg2_dialect.dialect()))


def fetch_all(engine: Engine, sql: str, parameters: Mapping[str, object]) -> list[tuple]:
    """The rows of one SELECT, read on a pooled connection outside a transaction.

    For the hottest reads (the post lists, auth's token user): one round trip, and none of the
    session's and the Core connection's bookkeeping, which cost more CPU than PostgreSQL's
    answer. The pool's checkout listener still runs (_discard_connections_the_server_closed),
    the connection goes back with transactions on, and the wait callback still bounds the wait.
    A driver error is raised as SQLAlchemy raises it (OperationalError and the rest, parameters
    hidden), so the same handlers answer it, and a connection the error shows to be dead is
    dropped from the pool, with every connection the pool made before it.

    A pooled connection the server ends while the read is on its way (a restart, a failover, an
    administrator's pg_terminate_backend) is the one failure the checkout listener cannot see
    coming: the read is sent once more, on a new connection. It changes nothing, so reading twice
    is safe. A connect that fails, a statement's error and a database that does not answer in
    time are not tried again.
    """
    may_retry = True
    while True:
        connection = None
        try:
            connection = engine.raw_connection()
            dbapi_connection = connection.dbapi_connection
            dbapi_connection.autocommit = True
            with dbapi_connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                return cursor.fetchall()
        except psycopg2.Error as error:
            # A connect that failed has no connection; one the error shows to be dead leaves the pool.
            dead = connection is None or engine.dialect.is_disconnect(
                error, connection.dbapi_connection, None
            )
            if dead and connection is not None:
                # As SQLAlchemy's Connection does on a disconnect: this connection is dropped, and
                # every other one the pool made before it is replaced at its next checkout. What
                # ends one connection (a restart, a failover) has usually ended them all, and
                # some may not show it yet; the second try then gets a new connection.
                engine.pool._invalidate(connection, error)
                if may_retry and not isinstance(error, NoAnswerInTime):
                    may_retry = False
                    DB_READS_RETRIED.inc()
                    log.warning(
                        "the database ended a pooled connection during a read; reading again on a new one",
                        extra={"error": str(error).splitlines()[0][:300]},
                    )
                    continue
            raise exc.DBAPIError.instance(
                sql,
                parameters,
                error,
                psycopg2.Error,
                hide_parameters=True,
                connection_invalidated=dead,
                dialect=engine.dialect,
            ) from error
        finally:
            if connection is not None:
                if connection.is_valid:
                    _end_autocommit(connection.dbapi_connection, None)
                # Back to the pool; its reset (a ROLLBACK) costs nothing outside a transaction.
                connection.close()


# Readiness must answer within the probe's timeout even when the database does not: a dead
# pooled connection and then a fresh attempt each get this long.
READINESS_DEADLINE_SECONDS = 1.0


def open_pool_connections(app: Flask, count: int) -> int:
    """Open up to ``count`` of the pool's connections now, and leave them in the pool; returns how
    many are open. gunicorn calls it as each worker starts (servicekit.gunicorn_conf), before the
    worker takes requests: otherwise its first requests each wait for a connection to be made, and
    under load a new connection once took seconds (a 503 in `make bench`), where a pooled one takes
    a round trip. It stops at the first failure: a database that is down is readiness's to report,
    and a worker must start without it.
    """
    engine = getattr(app, "extensions", {}).get("servicekit.engine")
    if engine is None:
        return 0
    held = []
    try:
        # Each connect is bounded by DB_CONNECT_TIMEOUT_SECONDS (_wait_with_deadline).
        for _ in range(min(count, engine.pool.size())):
            held.append(engine.raw_connection())
    # Whatever went wrong, a failed warm-up must never stop a worker booting.
    except Exception as error:
        app.logger.warning(
            "database connections not opened at start",
            extra={"opened": len(held), "error": str(error).splitlines()[0][:300]},
        )
    finally:
        for connection in held:
            connection.close()
    return len(held)


def engine_options(settings: ServiceSettings, application_name: str) -> dict:
    return {
        # No pool_pre_ping: its SELECT 1 was a round trip on every checkout, as costly as the
        # query it guarded. _discard_connections_the_server_closed checks without one.
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_connect_timeout,
        "pool_recycle": 1800,
        # Statement parameters (a password hash, a user's data) never reach an error message or a log.
        "hide_parameters": True,
        "connect_args": {
            # Read back by _wait_with_deadline, which enforces it (libpq's async connect does not).
            "connect_timeout": settings.db_connect_timeout,
            "application_name": application_name,
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
            # An idle pooled connection whose peer vanished is noticed within about a minute.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    }


def init_database(app: Flask, db: SQLAlchemy, settings: ServiceSettings) -> None:
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.database_url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(settings, app.name)
    db.init_app(app)
    global _default_deadline_seconds
    _default_deadline_seconds = settings.db_statement_timeout_ms / 1000 + _CLIENT_DEADLINE_SLACK_SECONDS
    # Process-wide, like the driver it configures; every service process talks to one database.
    psycopg2.extensions.set_wait_callback(_wait_with_deadline)
    with app.app_context():
        app.extensions["servicekit.engine"] = db.engine
        _instrument_pool(db.engine, settings)
        event.listen(db.engine, "checkout", _discard_connections_the_server_closed)
        event.listen(db.engine, "checkin", _end_autocommit)
    # The extension's one session factory serves every app made in this process: listen once.
    if not event.contains(db.session.session_factory, "after_begin", _autocommit_for_reads):
        event.listen(db.session.session_factory, "after_begin", _autocommit_for_reads)

    def database_check() -> None:
        with database_deadline(READINESS_DEADLINE_SECONDS), db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    add_check(app, "database", database_check)

    def database_unavailable(error: Exception):
        # Lost connections and an exhausted pool are the database being away, not a bug.
        app.logger.warning("database unavailable", extra={"error": str(error).splitlines()[0][:300]})
        return problem_response(
            503,
            "The database is unavailable; try again shortly.",
            type_="dependency-unavailable",
            headers={"Retry-After": "5"},
        )

    app.register_error_handler(exc.OperationalError, database_unavailable)
    app.register_error_handler(exc.InterfaceError, database_unavailable)
    app.register_error_handler(exc.TimeoutError, database_unavailable)
