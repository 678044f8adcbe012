"""OpenTelemetry traces over OTLP/HTTP; off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

OpenTelemetry's own instrumentations record the spans: the WSGI middleware the incoming
request (continuing the caller's W3C traceparent), requests the calls to other services (and
puts their traceparent on them), SQLAlchemy the database statements, botocore the S3 calls.
The SDK reads the rest of the standard variables itself: OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default
parentbased_always_on), OTEL_EXPORTER_OTLP_*, OTEL_BSP_*, OTEL_PROPAGATORS; OTEL_SDK_DISABLED
turns it all off.

Nothing of OpenTelemetry is imported while export is off: servicekit.context still passes the
traceparent and X-Request-ID on, so logs correlate across services without it.

The batch exporter owns a thread, and threads do not survive fork. gunicorn (without
preload_app) calls the app factory in each worker after the fork, so the provider is built
there, once per process; gunicorn_conf.worker_exit flushes it.
"""

from __future__ import annotations

import os
import socket

from flask import Flask, g, request

_provider = None
_pid: int | None = None


def enabled(endpoint: str) -> bool:
    return bool(endpoint) and os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def install(app: Flask, service_name: str, endpoint: str) -> None:
    """Trace every request of ``app`` and what it calls (no-op unless ``endpoint`` is set)."""
    if not enabled(endpoint):
        return
    from opentelemetry import trace
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    _provider_for_this_process(service_name, endpoint)
    _instrument_libraries()
    app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)

    @app.before_request
    def _name_span_and_share_its_ids() -> None:
        # Registered after servicekit.context's hook: the span, not the bare header, now
        # decides the ids that logs, the access line and outbound calls carry.
        span = trace.get_current_span()
        ids = span.get_span_context()
        if not ids.is_valid:
            return
        g.trace_id = format(ids.trace_id, "032x")
        g.span_id = format(ids.span_id, "016x")
        g.trace_flags = format(ids.trace_flags, "02x")
        # The middleware sees the path only; the route names the span without the ids in it.
        if request.url_rule is not None:
            span.update_name(f"{request.method} {request.url_rule.rule}")
            span.set_attribute("http.route", request.url_rule.rule)
        span.set_attribute("request.id", getattr(g, "request_id", "") or "")


def _provider_for_this_process(service_name: str, endpoint: str):
    global _provider, _pid
    if _pid == os.getpid():
        return _provider
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    defaults = Resource.create(
        {"service.name": service_name, "service.instance.id": f"{socket.gethostname()}-{os.getpid()}"}
    )
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the defaults, as the spec says.
    provider = TracerProvider(resource=defaults.merge(OTELResourceDetector().detect()))
    # The endpoint comes through the settings (which may not be the environment, in tests); the
    # exporter reads its other OTEL_EXPORTER_OTLP_* variables itself.
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider, _pid = provider, os.getpid()
    return provider


def _instrument_libraries() -> None:
    """Patch the client libraries this service has installed (each image has its own extra)."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Its declared range ends before SQLAlchemy 2.1, but the engine events it listens to are
    # unchanged there (the tracing tests see the statements' spans).
    _instrument(SQLAlchemyInstrumentor(), skip_dep_check=True)
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
    except ImportError:  # auth calls no other service
        pass
    else:
        _instrument(RequestsInstrumentor())
    try:
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    except ImportError:  # only images talks to S3
        pass
    else:
        _instrument(BotocoreInstrumentor())


def _instrument(instrumentor, **options) -> None:
    # Instrumentors patch modules, once per process; a second app in the same process reuses that.
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(**options)


def shutdown() -> None:
    """Flush the spans this process still holds (gunicorn's worker_exit hook calls it)."""
    if _provider is not None and _pid == os.getpid():
        _provider.shutdown()
