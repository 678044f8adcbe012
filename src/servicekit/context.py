"""Per-request identity: X-Request-ID and W3C trace context, read or made, and passed on."""

from __future__ import annotations

import os
import re

from flask import Flask, Response, g, request

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _incoming_trace(traceparent: str) -> tuple[str, str, str] | None:
    """(trace id, the caller's span id, trace flags) of a valid traceparent header, else None."""
    match = _TRACEPARENT.fullmatch(traceparent.strip().lower())
    if match and match.group(1) != "0" * 32 and match.group(2) != "0" * 16:
        return match.group(1), match.group(2), match.group(3)
    return None


def install(app: Flask) -> None:
    @app.before_request
    def _identify_request() -> None:
        environ = request.environ
        # One draw for every id this request may need: a request id, a trace id, a span id.
        random_hex = os.urandom(40).hex()
        candidate = environ.get("HTTP_X_REQUEST_ID", "")
        # A caller's id is kept only when it is safe to log and echo; otherwise we make one.
        g.request_id = candidate if _REQUEST_ID.fullmatch(candidate) else random_hex[:32]
        trace = _incoming_trace(environ.get("HTTP_TRACEPARENT", ""))
        if trace is None:
            trace = (random_hex[32:64], None, "01")
        g.trace_id, g.parent_span_id, g.trace_flags = trace
        g.span_id = random_hex[64:]

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        req = request._get_current_object()
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        environ = req.environ
        if req.url_rule is not None:
            # Read by the gunicorn access log, which runs outside the Flask request.
            environ["servicekit.route"] = req.url_rule.rule
        environ["servicekit.request_id"] = request_id
        environ["servicekit.trace_id"] = g.get("trace_id")
        return response


def outbound_headers() -> dict[str, str]:
    """Headers that carry this request's identity to another service."""
    headers = {}
    request_id = getattr(g, "request_id", None)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    trace_id = getattr(g, "trace_id", None)
    if trace_id:
        # This request's span is the parent of the callee's (servicekit.tracing records it).
        headers["traceparent"] = f"00-{trace_id}-{g.span_id}-{g.trace_flags}"
    return headers
