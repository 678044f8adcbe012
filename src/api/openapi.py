"""The public API as an OpenAPI 3.1 document, served at GET /api/v1/openapi.json.

Built from the routes and the models they validate with (api.contract): each route's Operation
gives its query, path and body models and its answers; pydantic states the models' limits as
JSON Schema. Only what a model cannot say is written here: the problem responses and the
bearer scheme. tests/integration/api/test_openapi_contract.py lets schemathesis check the live
gateway against it.
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask, jsonify
from pydantic.json_schema import models_json_schema

from api import gateway, posts
from api.contract import IMAGE_TYPES, JSON, Operation, Problem

bp = Blueprint("openapi", __name__)

PROBLEM = "application/problem+json"
REF = "#/components/schemas/{model}"
ERROR_RESPONSES = {
    "400": ("BadRequest", "The request is malformed: a bad parameter or body (see `errors`)."),
    "401": ("Unauthorized", "No valid bearer token (or, on login, wrong credentials)."),
    "404": ("NotFound", "No such resource, or it belongs to someone else."),
    "409": ("Conflict", "The resource already exists."),
    "413": ("ContentTooLarge", "The request body is larger than this endpoint accepts."),
    "415": ("UnsupportedMediaType", "The uploaded file is not a JPEG, PNG, GIF or WebP image."),
    "422": ("UnprocessableContent", "The image cannot be stored (e.g. too many pixels)."),
    "429": (
        "TooManyRequests",
        "Too many attempts: this client is over the gateway's limit (`rate-limited`), or this "
        "username is backing off after failed logins (`login-throttled`). Retry after the "
        "seconds in `Retry-After`.",
    ),
    "502": ("BadGateway", "A service behind the gateway failed or answered something malformed."),
    "503": ("ServiceUnavailable", "The database or a service behind the gateway is unavailable."),
    "504": ("GatewayTimeout", "A service behind the gateway did not answer in time."),
}
_PATH_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _operations(app: Flask) -> list[tuple[str, str, Operation]]:
    found = []
    for rule in app.url_map.iter_rules():
        declared = getattr(app.view_functions[rule.endpoint], "operation", None)
        if declared is not None:
            path = _PATH_PARAMETER.sub(r"{\1}", rule.rule)
            found += [
                (path, method.lower(), declared) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
            ]
    return found


def _schemas(operations: list[Operation]) -> tuple[dict, dict]:
    """Every model's JSON Schema under components, and each (model, mode)'s reference."""
    wanted = {(Problem, "serialization")}
    for declared in operations:
        wanted.add((declared.query, "validation"))
        if declared.body is not None:
            wanted.add((declared.body, "validation"))
        wanted |= {
            (model, "serialization") for model, _ in declared.responses.values() if isinstance(model, type)
        }
        if declared.path is not None:
            wanted.add((declared.path, "validation"))
    refs, definitions = models_json_schema(
        sorted(wanted, key=lambda pair: pair[0].__name__), ref_template=REF
    )
    return refs, definitions.get("$defs", {})


def _parameters(model, where: str, schemas: dict) -> list[dict]:
    if model is None:
        return []
    schema = schemas[model.__name__]
    parameters = []
    for name, declared_schema in schema.get("properties", {}).items():
        field_schema = dict(declared_schema)
        parameter = {"name": name, "in": where, "required": name in schema.get("required", [])}
        if "description" in field_schema:
            parameter["description"] = field_schema.pop("description")
        if field_schema.pop("deprecated", False):
            parameter["deprecated"] = True
        field_schema.pop("title", None)
        if field_schema.get("default", "") is None:  # absent, which is not the JSON null
            del field_schema["default"]
        parameters.append({**parameter, "schema": field_schema})
    return parameters


def _answer(model, description: str, refs: dict) -> dict:
    if model is None:
        return {"description": description}
    if model == "image":
        schema = {"type": "string", "format": "binary"}
        return {"description": description, "content": {kind: {"schema": schema} for kind in IMAGE_TYPES}}
    return {"description": description, "content": {JSON: {"schema": refs[(model, "serialization")]}}}


def build(app: Flask) -> dict:
    found = _operations(app)
    refs, schemas = _schemas([declared for _, _, declared in found])
    paths: dict[str, dict] = {}
    for path, method, declared in found:
        entry = {
            "operationId": declared.operation_id,
            "summary": declared.summary,
            "tags": [declared.tag],
        }
        parameters = _parameters(declared.path, "path", schemas) + _parameters(
            declared.query, "query", schemas
        )
        if parameters:
            entry["parameters"] = parameters
        if declared.secured:
            entry["security"] = [{"bearerAuth": []}]
        if declared.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {declared.body_type: {"schema": refs[(declared.body, "validation")]}},
            }
        entry["responses"] = {
            **{code: _answer(model, text, refs) for code, (model, text) in declared.responses.items()},
            **{
                code: {"$ref": f"#/components/responses/{ERROR_RESPONSES[code][0]}"}
                for code in declared.errors
            },
            "414": {"$ref": "#/components/responses/UriTooLong"},
        }
        paths.setdefault(path, {})[method] = entry
    problem = {"content": {PROBLEM: {"schema": refs[(Problem, "serialization")]}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "platform API",
            "version": "1.0.0",
            "description": "Posts, and the gateway to accounts (auth) and images. Errors are "
            "application/problem+json (RFC 9457); every response carries X-Request-ID.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                **{name: {"description": text, **problem} for name, text in ERROR_RESPONSES.values()},
                "TooManyRequests": {
                    "description": ERROR_RESPONSES["429"][1],
                    **problem,
                    "headers": {
                        "Retry-After": {
                            "description": "Seconds to wait before trying again.",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        }
                    },
                },
                # gunicorn refuses a request line over 4094 bytes itself, before the API sees it.
                "UriTooLong": {
                    "description": "The URL is longer than the HTTP server accepts (answered by gunicorn).",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _public_routes() -> Flask:
    app = Flask(__name__)
    app.register_blueprint(posts.bp)
    app.register_blueprint(gateway.bp)
    return app


# The same for every app: the routes and models are the code's, not a deployment's.
DOCUMENT = build(_public_routes())


@bp.get("/api/v1/openapi.json")
def openapi_document():
    return jsonify(DOCUMENT)
