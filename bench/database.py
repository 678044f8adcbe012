"""The database's ceiling: the query GET /api/v1/posts runs, in a plain psycopg2 loop on one
connection (as api_user, on api_db, each statement its own transaction) for BENCH_SECONDS:
queries/s and PostgreSQL's CPU-ms per query. The list route's PostgreSQL CPU-ms per request is
printed as a ratio to it (bench/ratios.py): what the service's session handling adds around the
one query (transaction begin and end, connection checks).

The loop runs in this process, on the load generator's CPU; PostgreSQL on the servers'.
"""

from __future__ import annotations

import time

from bench.context import Bench
from bench.measure import CpuMeter

# The statement SQLAlchemy sends for the first page of everyone's posts (api.posts.page_query:
# a page of 20 and one row more to tell whether another page exists).
LIST_QUERY = (
    "SELECT id, user_id, username, title, content, created_at FROM posts "
    "ORDER BY created_at DESC, id DESC LIMIT 21"
)


def run(bench: Bench) -> list[str]:
    postgres = bench.stack.postgres
    connection = postgres.connect(database="api_db", user="api_user", password=postgres.passwords["api"])
    connection.autocommit = True
    postgres_group = next(group for group in bench.groups() if group.name == "postgres")
    meter = CpuMeter([postgres_group])
    queries = 0
    try:
        with connection.cursor() as cursor:
            meter.start()
            started = time.perf_counter()
            deadline = started + bench.seconds
            while time.perf_counter() < deadline:
                cursor.execute(LIST_QUERY)
                cursor.fetchall()
                queries += 1
            elapsed = time.perf_counter() - started
            cpu = meter.stop()
    finally:
        connection.close()
    figures = {
        "queries": queries,
        "seconds": round(elapsed, 3),
        "queries_per_second": round(queries / elapsed, 1),
        "cpu_ms_per_query": {"postgres": round(cpu["postgres"] * 1000 / max(queries, 1), 4)},
    }
    bench.record("database", figures)
    return [
        f"psycopg2 loop, one connection, the list route's SELECT (LIMIT 21): "
        f"{figures['queries_per_second']:.0f} queries/s, "
        f"postgres {figures['cpu_ms_per_query']['postgres']:.3f} CPU-ms/query"
    ]
