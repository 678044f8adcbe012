"""servicekit.database.fetch_all, the hot reads' path past the ORM session: what it guarantees
that the session gave them (errors as SQLAlchemy's, dead connections dropped, nothing left
open), and a read sent once more when the server ended its connection, against the real
PostgreSQL server."""

from __future__ import annotations

import logging
import os
import signal

import psycopg2
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import make_url

from devstack.wait import free_port
from servicekit import config, database
from servicekit.config import ServiceSettings
from servicekit.database import NoAnswerInTime, database_deadline, engine_options, fetch_all
from tests.integration.conftest import end_backends

STATEMENT_TIMEOUT_MS = 300


@pytest.fixture
def engine(database_urls):
    settings = config.load(
        ServiceSettings,
        {"DATABASE_URL": database_urls["api"], "DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS)},
    )
    engine = create_engine(settings.database_url, **engine_options(settings, "fetch-all-test"))
    # What init_database installs in every service process: the waits with a deadline.
    psycopg2.extensions.set_wait_callback(database._wait_with_deadline)
    yield engine
    engine.dispose()


def reads_retried() -> float:
    return REGISTRY.get_sample_value("db_reads_retried_total") or 0.0


def backend_pid(engine) -> int:
    [(pid,)] = fetch_all(engine, "SELECT pg_backend_pid()", {})
    return pid


def test_rows_are_read_outside_a_transaction_and_the_connection_goes_back_ready_for_one(engine):
    rows = fetch_all(engine, "SELECT %(number)s::int, now() = statement_timestamp()", {"number": 7})

    # now() is the transaction's start, statement_timestamp() the statement's: equal only when
    # the statement is a transaction of its own (no BEGIN before it).
    assert rows == [(7, True)]
    assert engine.pool.checkedout() == 0
    with engine.connect() as connection:
        # The checkin listener turned autocommit off again for whoever takes it next.
        assert connection.connection.dbapi_connection.autocommit is False


def test_a_read_whose_pooled_connection_the_server_just_ended_is_read_again_on_a_new_one(
    engine, postgres, caplog
):
    first = backend_pid(engine)
    ended = []

    @event.listens_for(engine, "checkout")
    def end_it_after_the_checkout_check(dbapi_connection, _record, _proxy):
        # After servicekit's own checkout listener, which found the connection alive: the
        # server ends it while the read is on its way, as in a restart or a failover.
        if not ended:
            ended.append(dbapi_connection.get_backend_pid())
            end_backends(postgres, "pid = %s", (ended[0],))

    retried_before = reads_retried()
    with caplog.at_level(logging.WARNING, logger="servicekit.database"):
        rows = fetch_all(engine, "SELECT %(number)s::int", {"number": 7})

    assert rows == [(7,)]
    assert ended == [first]
    assert backend_pid(engine) != first
    assert engine.pool.checkedout() == 0
    assert "reading again on a new one" in caplog.text
    assert reads_retried() == retried_before + 1


def test_a_read_is_tried_twice_at_most_and_a_second_lost_connection_is_the_error(engine):
    first = backend_pid(engine)

    # Each try ends its own connection.
    with pytest.raises(exc.OperationalError) as raised:
        fetch_all(engine, "SELECT pg_terminate_backend(pg_backend_pid())", {})

    assert raised.value.connection_invalidated
    assert isinstance(raised.value.orig, psycopg2.OperationalError)
    assert backend_pid(engine) != first
    assert engine.pool.checkedout() == 0


def test_a_database_that_cannot_be_reached_is_not_tried_again(database_urls):
    nowhere = make_url(database_urls["api"]).set(port=free_port()).render_as_string(hide_password=False)
    settings = config.load(ServiceSettings, {"DATABASE_URL": nowhere})
    engine = create_engine(settings.database_url, **engine_options(settings, "fetch-all-test"))
    connects = []
    event.listen(engine, "do_connect", lambda *_: connects.append(1))
    try:
        with pytest.raises(exc.OperationalError):
            fetch_all(engine, "SELECT 1", {})
    finally:
        engine.dispose()
    assert connects == [1]


def test_a_statement_past_its_timeout_is_an_operational_error_and_keeps_its_connection(engine):
    first = backend_pid(engine)

    with pytest.raises(exc.OperationalError) as raised:
        fetch_all(engine, "SELECT pg_sleep(%(seconds)s)", {"seconds": STATEMENT_TIMEOUT_MS / 1000 * 5})

    assert isinstance(raised.value.orig, psycopg2.errors.QueryCanceled)
    assert not raised.value.connection_invalidated
    assert backend_pid(engine) == first


def test_a_failed_read_names_its_statement_but_never_its_parameters(engine):
    with pytest.raises(exc.DataError) as raised:
        fetch_all(engine, "SELECT 1 / 0 WHERE %(secret)s IS NOT NULL", {"secret": "hunter2-parameter"})

    assert "division by zero" in str(raised.value)
    assert "hunter2-parameter" not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
    assert engine.pool.checkedout() == 0


def test_a_read_the_database_does_not_answer_in_time_is_not_tried_again(engine):
    stopped = backend_pid(engine)
    os.kill(stopped, signal.SIGSTOP)  # this backend only: a new connection would be answered
    try:
        with database_deadline(0.5), pytest.raises(exc.OperationalError) as raised:
            fetch_all(engine, "SELECT 1", {})
    finally:
        os.kill(stopped, signal.SIGCONT)

    assert isinstance(raised.value.orig, NoAnswerInTime)
    assert raised.value.connection_invalidated
    assert engine.pool.checkedout() == 0
