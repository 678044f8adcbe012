"""gunicorn's own logs, and its access log, as the same JSON lines as the app's."""

from __future__ import annotations

import json
import logging
import os
import time

from gunicorn import glogging

from servicekit import logs


class JsonGunicornLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        logs.set_service_name(os.environ.get("SERVICE_NAME", "service"))
        formatter = logs.JsonFormatter()
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(formatter)

    def access(self, resp, req, environ, request_time) -> None:
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict):
            return
        if not self.access_log.isEnabledFor(logging.INFO):
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        fields = {
            "kind": "access",
            "request_id": environ.get("servicekit.request_id"),
            "trace_id": environ.get("servicekit.trace_id"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "route": environ.get("servicekit.route"),
            "status": int(status),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "bytes": getattr(resp, "sent", None),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        handlers = self.access_log.handlers
        if not all(type(handler) in (logging.StreamHandler, logging.FileHandler) for handler in handlers):
            self.access_log.info("request", extra=fields)
            return
        # The line JsonFormatter would write, straight to the streams: a LogRecord and the
        # formatter's pass over it cost more than the line itself, once per request.
        entry = logs.line_start(time.time(), "info", self.access_log.name, "request")
        entry.update(fields)
        line = json.dumps(entry, default=str) + "\n"
        for handler in handlers:
            handler.acquire()
            try:
                handler.stream.write(line)
                handler.flush()
            except Exception:
                handler.handleError(logging.makeLogRecord({"msg": line}))
            finally:
                handler.release()
