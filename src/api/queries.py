"""Query parameters are part of each route's contract: one it does not know, or one given
twice, is a 400.

A misspelt ``?limt=5`` silently ignored would return a page of 20 and hide the mistake; the
routes of this service say which parameters they take, and anything else is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request

from servicekit.errors import ApiError


def query_parameters(*names: str) -> Callable:
    """Declare the query parameters a view accepts (none unless declared)."""

    def mark(view: Callable) -> Callable:
        view.query_parameters = frozenset(names)
        return view

    return mark


def install(app: Flask, blueprints: tuple[str, ...]) -> None:
    @app.before_request
    def _refuse_unknown_query_parameters() -> None:
        if request.blueprint not in blueprints:
            return
        view = app.view_functions.get(request.endpoint)
        allowed = getattr(view, "query_parameters", frozenset())
        errors = [
            {"field": name, "message": "is not a known query parameter"}
            for name in sorted(set(request.args) - allowed)
        ]
        errors += [
            {"field": name, "message": "must be given at most once"}
            for name in sorted(allowed)
            if len(request.args.getlist(name)) > 1
        ]
        if errors:
            raise ApiError(
                400,
                "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                type_="validation-error",
                errors=errors,
            )
