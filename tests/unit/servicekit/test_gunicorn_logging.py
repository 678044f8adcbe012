"""gunicorn's access log: one JSON line per request, the same fields whichever handler writes it."""

from __future__ import annotations

import datetime
import json
import logging

import pytest
from gunicorn.config import Config

from servicekit import logs
from servicekit.gunicorn_logging import JsonGunicornLogger

ENVIRON = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/api/v1/posts/42",
    "servicekit.route": "/api/v1/posts/<int:post_id>",
    "servicekit.request_id": "req-1",
    "servicekit.trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "REMOTE_ADDR": "10.0.0.7",
    "HTTP_USER_AGENT": "curl/8 «é»",
}


class Sent:
    status = "404 NOT FOUND"
    sent = 123


class Collecting(logging.Handler):
    """Not a stream: the access log goes through logging and JsonFormatter."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def access_log(tmp_path, monkeypatch):
    config = Config()
    config.set("accesslog", str(tmp_path / "access.log"))
    logger = JsonGunicornLogger(config)
    # setup() names the service from SERVICE_NAME, which tests do not set.
    monkeypatch.setattr(logs, "_SERVICE_NAME", "api")
    yield logger, tmp_path / "access.log"
    for handler in logger.access_log.handlers:
        handler.close()


def _log_one(logger: JsonGunicornLogger) -> None:
    logger.access(Sent, None, ENVIRON, datetime.timedelta(milliseconds=12.345))


def test_an_access_line_names_the_request_its_route_and_its_outcome(access_log):
    logger, path = access_log

    _log_one(logger)

    (line,) = path.read_text().splitlines()
    entry = json.loads(line)
    assert list(entry)[:5] == ["time", "level", "service", "logger", "message"]
    assert entry["level"] == "info" and entry["service"] == "api" and entry["message"] == "request"
    assert entry["logger"] == "gunicorn.access"
    assert datetime.datetime.fromisoformat(entry["time"]).tzinfo is not None
    assert {key: entry[key] for key in list(entry)[5:]} == {
        "kind": "access",
        "request_id": "req-1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "method": "GET",
        "path": "/api/v1/posts/42",
        "route": "/api/v1/posts/<int:post_id>",
        "status": 404,
        "duration_ms": 12.35,
        "bytes": 123,
        "remote_addr": "10.0.0.7",
        "user_agent": "curl/8 «é»",
    }


def test_a_handler_that_is_not_a_stream_gets_the_same_line_through_the_formatter(access_log):
    logger, path = access_log
    _log_one(logger)
    written = json.loads(path.read_text())
    collecting = Collecting()
    collecting.setFormatter(logs.JsonFormatter())
    logger.access_log.addHandler(collecting)

    _log_one(logger)

    (line,) = collecting.lines
    through_logging = json.loads(line)
    assert list(through_logging) == list(written)
    assert {**through_logging, "time": None} == {**written, "time": None}


def test_nothing_is_written_when_the_access_log_is_off(capsys):
    logger = JsonGunicornLogger(Config())

    _log_one(logger)

    assert capsys.readouterr() == ("", "")
