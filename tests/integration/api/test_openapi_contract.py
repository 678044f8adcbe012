"""The OpenAPI document against the live gateway (gunicorn, real auth, real images).

schemathesis generates requests from the document, valid and invalid, and checks every answer:
no 5xx, a documented status, content type and headers, a body that matches its schema, valid
data accepted and invalid data refused.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.openapi import DOCUMENT

# A negative case that repeats a query parameter many times can pass the 4094 bytes gunicorn
# allows in a request line; gunicorn then refuses it with 414 itself, as the document says.
_REFUSALS = SchemathesisConfig.from_dict({}).projects.default.checks.negative_data_rejection.expected_statuses
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            # Every check schemathesis has, named so a default turned off upstream stays on here:
            # ignored_auth among them (a route that declares bearer auth must refuse without it).
            "enabled": True,
            "negative_data_rejection": {"expected-statuses": [*_REFUSALS, "414"]},
            # Far above any answer the gateway should give; the bound catches a hang, not slowness
            # on a shared machine.
            "max_response_time": 8.0,
        }
    }
)
# Built from the same document the gateway serves (checked below), so the cases exist at
# collection time; every one of them is sent to the live gateway.
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)

# Valid per JSON Schema but refused on purpose, by rules a schema cannot state: an upload must be
# a real image (decided from its bytes), and a password at most 72 bytes of UTF-8 (bcrypt).
CONTENT_RULES_BEYOND_THE_SCHEMA = {"uploadImage", "register"}


# A cursor is valid only if the API issued it (it names a position in the listing): the schema can
# state its alphabet and length, not that. A schema-valid cursor the API never issued is refused,
# so cases that send one are not held to positive_data_acceptance; every other check still runs.
ISSUED_VALUES_ONLY = {"listPosts": "cursor", "listMyPosts": "cursor"}


# The token of the user the current test registered; schemathesis asks for it per request and
# leaves it out of the cases that test a missing or broken Authorization header.
CURRENT_TOKEN: dict[str, str] = {}


@schema.auth(refresh_interval=None)
class RegisteredUser:
    def get(self, case, context) -> str:
        # Asked once at collection too, before any user exists.
        return CURRENT_TOKEN.get("token", "not.yet.registered")

    def set(self, case, data: str, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def registered_user(gateway_account):
    CURRENT_TOKEN["token"] = gateway_account("contract")[1]["Authorization"].removeprefix("Bearer ")
    yield
    CURRENT_TOKEN.clear()


def test_the_document_is_openapi_3_1_and_lists_every_public_route(gateway):
    document = requests.get(f"{gateway.url}/api/v1/openapi.json", timeout=5).json()
    assert document == DOCUMENT
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/v1/posts",
        "/api/v1/posts/my",
        "/api/v1/posts/{post_id}",
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/images/upload",
        "/api/v1/images",
        "/api/v1/images/stats",
        "/api/v1/images/{filename}",
    }


def test_every_check_schemathesis_has_is_enabled():
    checks = CONFIG.projects.default.checks
    names = [name for name in type(checks).__annotations__ if not name.startswith("_")]

    assert "ignored_auth" in names
    assert {name: getattr(checks, name).enabled for name in names} == dict.fromkeys(names, True)


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_gateway_keeps_its_documented_contract(case, gateway, registered_user):
    operation_id = case.operation.definition.raw.get("operationId")
    issued_only = ISSUED_VALUES_ONLY.get(operation_id)
    unissued = issued_only is not None and issued_only in (case.query or {})
    beyond_schema = operation_id in CONTENT_RULES_BEYOND_THE_SCHEMA or unissued
    excluded = [positive_data_acceptance] if beyond_schema else []
    case.call_and_validate(base_url=gateway.url, excluded_checks=excluded, timeout=10)
