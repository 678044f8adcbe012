"""JSON logging: one object per line on stdout, with the service name and the request id."""

from __future__ import annotations

import datetime
import json
import logging
import sys

from flask import g, has_request_context, request

_SERVICE_NAME = "unknown"
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def line_start(created: float, level: str, logger: str, message: str) -> dict:
    """The fields every JSON log line starts with, in order."""
    return {
        "time": datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "service": _SERVICE_NAME,
        "logger": logger,
        "message": message,
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = line_start(record.created, record.levelname.lower(), record.name, record.getMessage())
        if has_request_context():
            entry["request_id"] = getattr(g, "request_id", None)
            entry["trace_id"] = getattr(g, "trace_id", None)
            entry["method"] = request.method
            entry["route"] = request.url_rule.rule if request.url_rule else None
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time, so a replaced stdout is honoured."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def set_service_name(service_name: str) -> None:
    global _SERVICE_NAME
    _SERVICE_NAME = service_name


def configure(service_name: str, level: str = "INFO") -> None:
    """Route every logger (the app's and libraries') through one JSON handler on stdout."""
    set_service_name(service_name)
    handler = StdoutHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request lines come from our own access log; werkzeug's would repeat them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # botocore logs request bodies and signing details at DEBUG.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLevelName(level)))
