"""The OpenAPI document and the routes the app really has describe the same API."""

from __future__ import annotations

import re

import pytest

import api
from api.config import ApiSettings
from api.openapi import DOCUMENT
from servicekit import config


@pytest.fixture(scope="module")
def app():
    environ = {
        "DATABASE_URL": "postgresql+psycopg2://u:p@127.0.0.1:1/api_db",
        "AUTH_SERVICE_URL": "http://127.0.0.1:1",
        "IMAGES_SERVICE_URL": "http://127.0.0.1:1",
    }
    return api.create_app(config.load(ApiSettings, environ))


def test_every_public_route_is_documented_with_its_methods_and_nothing_more(app):
    routed = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and rule.endpoint != "openapi.openapi_document":
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule).replace("{post_id}", "{id}")
            routed.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    documented = {path: set(item) for path, item in DOCUMENT["paths"].items()}
    assert routed == documented


def test_the_document_is_served_as_openapi_3_1(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"] == "3.1.0"
    assert response.get_json() == DOCUMENT


def test_every_authenticated_operation_documents_401_and_the_upstream_failures():
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if operation.get("security"):
                assert {"401", "502", "503", "504"} <= set(operation["responses"]), (method, path)


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/register"])
def test_login_and_register_document_the_429_with_its_retry_after(path):
    answer = DOCUMENT["paths"][path]["post"]["responses"]["429"]
    component = DOCUMENT["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]

    assert "application/problem+json" in component["content"]
    assert component["headers"]["Retry-After"]["required"] is True
