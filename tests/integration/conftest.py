"""Apps and clients of the services, bound to the session's real servers."""

from __future__ import annotations

import pytest

import auth
from auth.config import AuthSettings
from servicekit import config
from tests.conftest import service_environ


@pytest.fixture(scope="session")
def auth_settings(database_urls, token_keys) -> AuthSettings:
    # bcrypt's lowest cost keeps the suite fast; the cost itself is tested separately.
    environ = service_environ("auth", database_urls["auth"], token_keys, BCRYPT_ROUNDS="4")
    return config.load(AuthSettings, environ)


@pytest.fixture(scope="session")
def auth_app(auth_settings):
    return auth.create_app(auth_settings)


@pytest.fixture
def auth_client(auth_app, clean_databases):
    return auth_app.test_client()


@pytest.fixture
def register_user(auth_client):
    def register(username: str = "alice", password: str = "correct horse battery") -> dict:
        response = auth_client.post("/register", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return register


@pytest.fixture
def login(auth_client):
    def login(username: str = "alice", password: str = "correct horse battery") -> str:
        response = auth_client.post("/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]

    return login
