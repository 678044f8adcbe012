"""Per-request identity: X-Request-ID and W3C trace context, read or made, and passed on."""

from __future__ import annotations

import re
import secrets
import uuid

from flask import Flask, Response, g, request

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _incoming_request_id() -> str:
    candidate = request.headers.get(REQUEST_ID_HEADER, "")
    # A caller's id is kept only when it is safe to log and echo; otherwise we make one.
    return candidate if _REQUEST_ID.fullmatch(candidate) else uuid.uuid4().hex


def _incoming_trace() -> tuple[str, str | None, str]:
    """(trace id, the caller's span id or None, trace flags)."""
    match = _TRACEPARENT.fullmatch(request.headers.get("traceparent", "").strip().lower())
    if match and match.group(1) != "0" * 32 and match.group(2) != "0" * 16:
        return match.group(1), match.group(2), match.group(3)
    return secrets.token_hex(16), None, "01"


def install(app: Flask) -> None:
    @app.before_request
    def _identify_request() -> None:
        g.request_id = _incoming_request_id()
        g.trace_id, g.parent_span_id, g.trace_flags = _incoming_trace()
        g.span_id = secrets.token_hex(8)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        request_id = getattr(g, "request_id", None)
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        if request.url_rule is not None:
            # Read by the gunicorn access log, which runs outside the Flask request.
            request.environ["servicekit.route"] = request.url_rule.rule
        request.environ["servicekit.request_id"] = request_id
        request.environ["servicekit.trace_id"] = getattr(g, "trace_id", None)
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
