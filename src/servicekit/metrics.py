"""Prometheus metrics that add up across gunicorn workers.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR is set (servicekit.gunicorn_conf) before
prometheus_client is imported, so every worker writes its samples to files there and
/metrics sums them; counters of workers that exited stay counted. Without it (tests, the
Flask dev server) the process's own registry is served.
"""

from __future__ import annotations

import os
import struct
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from servicekit.errors import problem_response

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests served, by endpoint (route template) and status.",
    ["method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to serve a request, by endpoint (route template) and status.",
    ["method", "endpoint", "status"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "Requests being served right now.",
    multiprocess_mode="livesum",
)
# Incremented by the gunicorn master (servicekit.gunicorn_conf.child_exit): a worker that
# crashed or hung past its timeout is replaced without Kubernetes ever seeing a restart.
GUNICORN_WORKER_EXITS = Counter(
    "gunicorn_worker_exits_total",
    "gunicorn worker processes that exited; the master replaces each while it runs.",
)


# Any other method string a client sends is counted as "other", so it cannot mint series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method() -> str:
    return request.method if request.method in KNOWN_METHODS else "other"


def _endpoint() -> str:
    # The route template, never the raw path, keeps label cardinality bounded.
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def install(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()
        HTTP_IN_FLIGHT.inc()

    @app.teardown_request
    def _leave(_exc: BaseException | None) -> None:
        if getattr(g, "metrics_started", None) is not None:
            HTTP_IN_FLIGHT.dec()

    @app.after_request
    def _record(response: Response) -> Response:
        started = getattr(g, "metrics_started", None)
        if started is not None:
            labels = (_method(), _endpoint(), str(response.status_code))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_LATENCY.labels(*labels).observe(time.perf_counter() - started)
        return response

    app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])


def _metrics_view() -> Response:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    try:
        body = generate_latest(registry)
    except (struct.error, ValueError):
        # A worker that is starting has created its file but not yet sized it; the next
        # scrape reads it whole. A failed scrape is honest; a 500 with a traceback is not.
        return problem_response(503, "Metrics are being written; scrape again.", type_="metrics-busy")
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
