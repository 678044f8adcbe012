"""The OpenAPI document and the routes the app really has describe the same API."""

from __future__ import annotations

import re

import pytest

import api
from api import contract, posts
from api.config import ApiSettings
from api.openapi import DOCUMENT
from servicekit import config

SCHEMAS = DOCUMENT["components"]["schemas"]


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
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
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


def _parameter(path: str, name: str) -> dict:
    [parameter] = [p for p in DOCUMENT["paths"][path]["get"]["parameters"] if p["name"] == name]
    return parameter["schema"]


@pytest.mark.parametrize("path", ["/api/v1/posts", "/api/v1/posts/my"])
def test_the_posts_page_size_documented_is_the_one_the_code_applies(path):
    assert _parameter(path, "limit") == {
        "type": "integer",
        "minimum": 1,
        "maximum": posts.MAX_PAGE_SIZE,
        "default": posts.DEFAULT_PAGE_SIZE,
    }
    assert SCHEMAS["PostPage"]["properties"]["items"]["maxItems"] == posts.MAX_PAGE_SIZE


def test_the_image_list_documents_its_own_page_size_not_the_posts_one():
    assert _parameter("/api/v1/images", "limit")["maximum"] == contract.IMAGES_MAX_PAGE_SIZE
    assert _parameter("/api/v1/images", "limit")["default"] == contract.IMAGES_DEFAULT_PAGE_SIZE
    assert _parameter("/api/v1/images", "offset")["maximum"] == contract.IMAGES_MAX_OFFSET
    assert SCHEMAS["ImagePage"]["properties"]["items"]["maxItems"] == contract.IMAGES_MAX_PAGE_SIZE


def test_the_image_contract_is_the_images_services_own():
    routes = pytest.importorskip("images.routes")
    assert (routes.DEFAULT_PAGE_SIZE, routes.MAX_PAGE_SIZE, routes.MAX_OFFSET) == (
        contract.IMAGES_DEFAULT_PAGE_SIZE,
        contract.IMAGES_MAX_PAGE_SIZE,
        contract.IMAGES_MAX_OFFSET,
    )
    inspection = pytest.importorskip("images.inspection")
    assert inspection.CONTENT_TYPES == contract.IMAGE_TYPES


def test_the_auth_rules_documented_are_auths_own():
    from auth import passwords, routes

    registration = SCHEMAS["Registration"]["properties"]
    assert registration["username"]["pattern"] == f"^{routes.USERNAME.pattern}$"
    assert registration["password"]["minLength"] == passwords.MIN_CHARACTERS
    assert registration["password"]["maxLength"] == passwords.MAX_BYTES


def test_the_stats_schema_has_the_counts_by_content_type():
    by_content_type = SCHEMAS["ImageStats"]["properties"]["by_content_type"]
    assert "by_content_type" in SCHEMAS["ImageStats"]["required"]
    assert by_content_type["propertyNames"] == {"enum": list(contract.IMAGE_TYPES)}


def test_the_new_post_limits_are_the_codes():
    content = SCHEMAS["NewPost"]["properties"]["content"]
    title = SCHEMAS["NewPost"]["properties"]["title"]
    assert (content["minLength"], content["maxLength"], content["pattern"]) == (
        1,
        posts.MAX_CONTENT_CHARACTERS,
        posts.CONTENT_PATTERN,
    )
    assert (title["maxLength"], title["pattern"]) == (posts.MAX_TITLE_CHARACTERS, posts.TITLE_PATTERN)
    assert SCHEMAS["NewPost"]["additionalProperties"] is False
