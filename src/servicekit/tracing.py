"""Optional OpenTelemetry trace export over OTLP/HTTP; off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

servicekit.context already reads and passes on the W3C traceparent and the X-Request-ID, so
traces link up across services with or without this module. When export is on, each request
is also recorded as a server span, child of the caller's span, with the trace id that
context.py chose, and sent in batches to the collector.

The SDK is imported only when export is on, so the services run without it installed. Its
batch exporter owns a thread, and threads do not survive fork: the tracer is built lazily
by the first request a process serves. Under gunicorn that is in each worker after the fork,
never in the master (which serves no request), and a process that finds a tracer built by
another pid builds its own.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from flask import Flask, Response, g, has_request_context, request

log = logging.getLogger(__name__)

_lock = threading.Lock()
_tracer = None
_provider = None
_pid: int | None = None
_unavailable = False


def install(app: Flask, service_name: str, endpoint: str) -> None:
    """Record every request of ``app`` as a span exported to ``endpoint`` (no-op when empty)."""
    if not endpoint:
        return

    @app.before_request
    def _start_span() -> None:
        tracer = _tracer_for_this_process(service_name, endpoint)
        if tracer is not None:
            g.otel_span = _start_server_span(tracer)

    @app.after_request
    def _record_status(response: Response) -> Response:
        span = getattr(g, "otel_span", None)
        if span is not None:
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR))
        return response

    @app.teardown_request
    def _end_span(exc: BaseException | None) -> None:
        span = getattr(g, "otel_span", None)
        if span is not None:
            if exc is not None:
                span.record_exception(exc)
            span.end()
            g.otel_span = None


def _start_server_span(tracer):
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        TraceFlags,
        set_span_in_context,
    )

    parent = None
    if getattr(g, "parent_span_id", None):
        remote = SpanContext(
            trace_id=int(g.trace_id, 16),
            span_id=int(g.parent_span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(g.trace_flags, 16)),
        )
        parent = set_span_in_context(NonRecordingSpan(remote))
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    span = tracer.start_span(
        f"{request.method} {route}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": request.method,
            "http.route": route,
            "url.path": request.path,
            "request.id": getattr(g, "request_id", "") or "",
        },
    )
    # Calls to other services name this span as their parent (context.outbound_headers).
    g.span_id = format(span.get_span_context().span_id, "016x")
    return span


def _tracer_for_this_process(service_name: str, endpoint: str):
    global _tracer, _provider, _pid, _unavailable
    if _unavailable:
        return None
    if _pid == os.getpid():
        return _tracer
    with _lock:
        if _pid != os.getpid():
            try:
                _provider = _build_provider(service_name, endpoint)
            except ImportError:
                _unavailable = True
                log.warning(
                    "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed; "
                    "traces are not exported"
                )
                return None
            _tracer = _provider.get_tracer("servicekit")
            _pid = os.getpid()
    return _tracer


def _build_provider(service_name: str, endpoint: str):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class RequestTraceIds(RandomIdGenerator):
        # A request that arrived without traceparent already has a trace id (context.py),
        # which its logs and outbound calls carry; its root span must use the same one.
        def generate_trace_id(self) -> int:
            trace_id = getattr(g, "trace_id", None) if has_request_context() else None
            return int(trace_id, 16) if trace_id else super().generate_trace_id()

    resource = Resource.create(
        {
            "service.name": service_name,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    provider = TracerProvider(
        resource=resource,
        id_generator=RequestTraceIds(),
        # The caller's sampled flag decides; a trace that starts here is always recorded.
        sampler=ParentBased(TraceIdRatioBased(1.0)),
    )
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def shutdown() -> None:
    """Flush the spans this process still holds (gunicorn's worker_exit hook calls it)."""
    if _provider is not None and _pid == os.getpid():
        _provider.shutdown()
