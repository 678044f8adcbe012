"""servicekit.database.fetch_all, the hot reads' path past the ORM session: what it guarantees
that the session gave them (errors as SQLAlchemy's, dead connections dropped, nothing left
open), against the real PostgreSQL server."""

from __future__ import annotations

import psycopg2
import pytest
from sqlalchemy import create_engine, exc

from servicekit import config
from servicekit.config import ServiceSettings
from servicekit.database import engine_options, fetch_all

STATEMENT_TIMEOUT_MS = 300


@pytest.fixture
def engine(database_urls):
    settings = config.load(
        ServiceSettings,
        {"DATABASE_URL": database_urls["api"], "DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS)},
    )
    engine = create_engine(settings.database_url, **engine_options(settings, "fetch-all-test"))
    yield engine
    engine.dispose()


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


def test_a_connection_the_server_ends_during_a_read_is_dropped_and_the_next_read_gets_a_new_one(engine):
    first = backend_pid(engine)

    with pytest.raises(exc.OperationalError) as raised:
        fetch_all(engine, "SELECT pg_terminate_backend(pg_backend_pid())", {})

    assert raised.value.connection_invalidated
    assert isinstance(raised.value.orig, psycopg2.OperationalError)
    assert backend_pid(engine) != first
    assert engine.pool.checkedout() == 0


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
