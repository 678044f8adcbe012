"""gunicorn's own logs, and its access log, as the same JSON lines as the app's."""

from __future__ import annotations

import os

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
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        self.access_log.info(
            "request",
            extra={
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
            },
        )
