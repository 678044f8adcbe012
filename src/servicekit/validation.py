"""Strict JSON bodies: an object (with known fields of the right types), or a 400."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from servicekit.errors import ApiError

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "an array"}


def invalid(field: str, message: str) -> ApiError:
    """A 400 for one bad field, in the same shape json_object reports many."""
    return ApiError(
        400, f"{field}: {message}", type_="validation-error", errors=[{"field": field, "message": message}]
    )


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 (or 413 for a cut-off chunked body)."""
    if not request.is_json:
        raise ApiError(
            400, "The request body must be JSON (Content-Type: application/json).", type_="invalid-body"
        )
    body = request.get_json(silent=True)
    limit = request.max_content_length
    if body is None and request.content_length is None and limit and len(request.get_data()) >= limit:
        # A chunked body has no length to refuse up front; werkzeug stops reading it at the
        # limit, and the cut-off JSON would otherwise pass for malformed JSON.
        raise RequestEntityTooLarge()
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", type_="invalid-body")
    return body


def json_object(required: dict[str, type], optional: dict[str, type] | None = None) -> dict[str, Any]:
    """Parse the request body as a JSON object holding exactly the declared fields."""
    optional = optional or {}
    body = json_body()
    errors = []
    for name in body.keys() - required.keys() - optional.keys():
        errors.append({"field": name, "message": "is not a known field"})
    for name, kind in {**required, **optional}.items():
        if name not in body:
            if name in required:
                errors.append({"field": name, "message": "is required"})
            continue
        value = body[name]
        # bool is an int in Python; JSON true is never a valid integer here.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            errors.append({"field": name, "message": f"must be {_TYPE_NAMES.get(kind, kind.__name__)}"})
    if errors:
        errors.sort(key=lambda error: error["field"])
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ApiError(400, detail, type_="validation-error", errors=errors)
    return body


def query_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # isdigit() alone admits digits like '²' that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        raise invalid(name, f"must be an integer from {minimum} to {maximum}")
    return int(raw)
