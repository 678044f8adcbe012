"""A database that never completes the connect costs the api a bounded wait and a 503."""

from __future__ import annotations

import api
from api.config import ApiSettings
from devstack.wait import free_port
from servicekit import config
from tests.integration.api.conftest import api_environ
from tests.integration.conftest import CONNECT_TIMEOUT_SECONDS, assert_503_within_connect_timeout


def test_a_database_that_never_completes_the_connect_gives_503_within_the_connect_timeout(
    unanswering_database_url, token_keys
):
    # Nothing listens there: the listing needs no upstream, and readiness does not wait for one.
    nowhere = f"http://127.0.0.1:{free_port()}"
    environ = api_environ(
        unanswering_database_url,
        token_keys,
        nowhere,
        nowhere,
        DB_CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT_SECONDS),
    )
    client = api.create_app(config.load(ApiSettings, environ)).test_client()

    listing = assert_503_within_connect_timeout("api GET /api/v1/posts", lambda: client.get("/api/v1/posts"))
    ready = assert_503_within_connect_timeout(
        "api GET /ready", lambda: client.get("/ready"), waits_for_connect=False
    )

    assert listing.get_json()["type"].endswith("/dependency-unavailable")
    assert ready.get_json()["checks"]["database"]["status"] == "unavailable"
