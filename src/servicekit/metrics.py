"""Prometheus metrics that add up across gunicorn workers.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR is set (servicekit.gunicorn_conf) before
prometheus_client is imported, so every worker writes its samples to files there and the
master sums them; counters of workers that exited stay counted. Without it (tests, the
Flask dev server) the process's own registry is read.

The request metrics are the ones prometheus-flask-exporter defines, by the same names and
labels, recorded here by one hook per request phase (the exporter's own hooks cost more than
half of servicekit's per-request work): flask_http_request_total by method and status,
flask_http_request_duration_seconds by method, route and status, and
flask_http_request_exceptions_total for errors no handler answered. The route label is the url
rule, never the raw path, and no label shares a name with a target label the Prometheus
Operator adds (endpoint, instance, job, namespace, pod, service, container), so the
ServiceMonitors need no honorLabels.

/metrics is served by the gunicorn master on its own port (METRICS_PORT, see ``serve``), not
by the app: the app port is the one the Ingress reaches, and request counts, dependency
state and worker restarts are for Prometheus only.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from http import HTTPStatus
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Request, Response, g, request
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

from servicekit.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The exporter has no app-wide in-flight gauge; livesum drops a dead worker's share.
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

# Tests and the dev server build several apps in one process; a registry per app lets each
# register its request metrics, and the newest app's are the ones exposed. Under gunicorn the
# samples go to the multiprocess files whatever the registry.
_app_registry: CollectorRegistry | None = None


def route(req: Request) -> str:
    """The route label: the url rule, with every unmatched path as one value."""
    return req.url_rule.rule if req.url_rule is not None else "unmatched"


def bounded_method(req: Request) -> str:
    """The method label: one of KNOWN_METHODS, or "other"."""
    return req.method if req.method in KNOWN_METHODS else "other"


class RequestMetrics:
    """One app's request metrics, with each label set's children looked up once."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "flask_http_request_duration_seconds",
            "Flask HTTP request duration in seconds",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.total = Counter(
            "flask_http_request_total",
            "Total number of HTTP requests",
            ("method", "status"),
            registry=registry,
        )
        self.exceptions = Counter(
            "flask_http_request_exceptions_total",
            "Total number of HTTP requests which resulted in an exception",
            ("method", "status"),
            registry=registry,
        )
        # Bounded: methods are KNOWN_METHODS or "other", routes are the app's rules or "unmatched".
        self._children: dict[tuple[str, str, int], tuple] = {}

    def observe(self, req: Request, status: int, seconds: float) -> None:
        method = bounded_method(req)
        key = (method, route(req), status)
        children = self._children.get(key)
        if children is None:
            children = (self.duration.labels(*key), self.total.labels(method, status))
            self._children[key] = children
        children[0].observe(seconds)
        children[1].inc()


def install(app: Flask) -> None:
    global _app_registry
    _app_registry = app.extensions["metrics_registry"] = CollectorRegistry()
    request_metrics = RequestMetrics(_app_registry)

    @app.before_request
    def _start_request() -> None:
        g.request_started = time.perf_counter()
        g.in_flight = True
        HTTP_IN_FLIGHT.inc()

    @app.after_request
    def _count_request(response: Response) -> Response:
        # Popped, so a response Flask finalizes twice (a hook that raised) is counted once.
        started = g.pop("request_started", None)
        if started is not None:
            seconds = time.perf_counter() - started
            request_metrics.observe(request._get_current_object(), response.status_code, seconds)
        return response

    @app.teardown_request
    def _end_request(error: BaseException | None) -> None:
        started = g.pop("request_started", None)
        if error is not None and started is not None:
            # No handler answered (one of them raised): the server sends a 500.
            req = request._get_current_object()
            request_metrics.observe(req, 500, time.perf_counter() - started)
            request_metrics.exceptions.labels(bounded_method(req), 500).inc()
        # An earlier before_request that raised means _start_request never ran.
        if g.pop("in_flight", False):
            HTTP_IN_FLIGHT.dec()


class MetricsBusy(RuntimeError):
    """A worker's sample file is being created; the next scrape reads it whole."""


def exposition(app: Flask | None = None) -> bytes:
    """Every metric in the Prometheus text format, summed over the workers under gunicorn.

    Outside gunicorn, the request metrics are those of ``app`` (default: the newest app).
    """
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = app.extensions["metrics_registry"] if app is not None else _app_registry
        own = generate_latest(registry) if registry is not None else b""
        return generate_latest(REGISTRY) + own
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    try:
        return generate_latest(registry)
    except (struct.error, ValueError) as exc:
        # A worker that is starting has created its file but not yet sized it.
        raise MetricsBusy(str(exc)) from exc


def metrics_app(environ, start_response):
    """The WSGI app of the metrics port: GET /metrics, nothing else."""
    if environ.get("PATH_INFO") != "/metrics":
        return _problem(start_response, 404, "Only /metrics is served on this port.", "not-found")
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return _problem(start_response, 405, "Only GET is served on this port.", "method-not-allowed")
    try:
        body = exposition()
    except MetricsBusy:
        # A failed scrape is honest; a 500 with a traceback is not.
        return _problem(start_response, 503, "Metrics are being written; scrape again.", "metrics-busy")
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
    return [body] if environ["REQUEST_METHOD"] == "GET" else []


def _problem(start_response, status: int, detail: str, type_: str) -> list[bytes]:
    phrase = HTTPStatus(status).phrase
    body = json.dumps(
        {"type": PROBLEM_TYPE_BASE + type_, "title": phrase, "status": status, "detail": detail}
    ).encode()
    start_response(
        f"{status} {phrase}", [("Content-Type", PROBLEM_CONTENT_TYPE), ("Content-Length", str(len(body)))]
    )
    return [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # A slow scrape never holds up the next one, nor the master's exit.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        # Scrapes every 15 s would drown the JSON logs in plain-text lines.
        pass


def serve(host: str, port: int) -> WSGIServer:
    """Serve /metrics on host:port from a daemon thread of the calling process.

    Under gunicorn this is the master (servicekit.gunicorn_conf.when_ready), the one process
    that outlives every worker, as prometheus_client's multiprocess documentation advises.
    """
    server = make_server(host, port, metrics_app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
