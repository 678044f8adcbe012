"""Liveness, health and readiness.

- GET /live: the process answers. No I/O, so a slow dependency never gets a pod killed.
- GET /health: 200 while the process serves, with each dependency's state in the body.
- GET /ready: 200 when every dependency the pod cannot serve without answers, 503 otherwise;
  recovers by itself. A check registered with ``required=False`` is reported (and exported
  as dependency_up) but does not fail readiness.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Blueprint, Flask, current_app, jsonify
from prometheus_client import Gauge

from servicekit.errors import problem_response

Check = Callable[[], None]
log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

DEPENDENCY_UP = Gauge(
    "dependency_up",
    "1 when the dependency answered the last health or readiness check, else 0.",
    ["dependency"],
    multiprocess_mode="mostrecent",
)


def add_check(app: Flask, name: str, check: Check, *, required: bool = True) -> None:
    """Register a dependency check: a callable that raises when the dependency is unusable.

    ``required=False`` is for a dependency that every replica shares and that only some routes
    need: taking all replicas out of the Service while it is down would turn a partial outage
    into a total one.
    """
    app.extensions.setdefault("servicekit.checks", {})[name] = (check, required)


def run_checks() -> dict[str, dict]:
    results = {}
    for name, (check, required) in current_app.extensions.get("servicekit.checks", {}).items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure of a dependency means "not ready"
            log.warning("dependency check failed", extra={"check": name, "error": str(exc)[:300]})
            results[name] = {"status": "unavailable", "error": type(exc).__name__}
            DEPENDENCY_UP.labels(name).set(0)
        else:
            results[name] = {"status": "ok"}
            DEPENDENCY_UP.labels(name).set(1)
        results[name]["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name]["required"] = required
    return results


@bp.get("/live")
def live():
    return jsonify(status="ok", service=current_app.name)


@bp.get("/health")
def health():
    checks = run_checks()
    degraded = any(result["status"] != "ok" for result in checks.values())
    return jsonify(status="degraded" if degraded else "ok", service=current_app.name, checks=checks)


@bp.get("/ready")
def ready():
    checks = run_checks()
    failing = sorted(
        name for name, result in checks.items() if result["required"] and result["status"] != "ok"
    )
    if failing:
        return problem_response(
            503, f"Not ready: {', '.join(failing)} unavailable.", type_="not-ready", checks=checks
        )
    return jsonify(status="ready", service=current_app.name, checks=checks)
