"""Bad input anywhere gets a 400 or 413 problem+json, never a 500."""

from __future__ import annotations

import json

import pytest

VALID = {"username": "alice", "password": "correct horse"}

BAD_BODIES = {
    "no body": {"data": b"", "content_type": "application/json"},
    "not json": {"data": b"{username: alice", "content_type": "application/json"},
    "json but form content type": {
        "data": json.dumps(VALID),
        "content_type": "application/x-www-form-urlencoded",
    },
    "no content type": {"data": json.dumps(VALID)},
    "array": {"json": [VALID]},
    "string": {"json": "alice"},
    "null": {"data": b"null", "content_type": "application/json"},
    "missing password": {"json": {"username": "alice"}},
    "missing username": {"json": {"password": "correct horse"}},
    "username is a number": {"json": {"username": 12345, "password": "correct horse"}},
    "password is a list": {"json": {"username": "alice", "password": ["correct", "horse"]}},
    "password is null": {"json": {"username": "alice", "password": None}},
    "password is true": {"json": {"username": "alice", "password": True}},
    "unknown field": {"json": {**VALID, "is_admin": True}},
    "invalid utf-8": {
        "data": b'{"username": "\xff\xfe", "password": "x"}',
        "content_type": "application/json",
    },
}


@pytest.mark.parametrize("path", ["/register", "/login"])
@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_malformed_bodies_get_400_problem_json(auth_client, path, body):
    response = auth_client.post(path, **body)

    assert response.status_code == 400, response.data
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 400
    assert problem["title"] == "Bad Request"
    assert problem["type"].startswith("https://")
    assert problem["detail"]


def test_validation_errors_name_every_bad_field(auth_client):
    response = auth_client.post("/register", json={"username": 1, "role": "admin"})

    fields = {error["field"] for error in response.get_json()["errors"]}
    assert fields == {"username", "password", "role"}


@pytest.mark.parametrize("path", ["/register", "/login", "/verify"])
def test_huge_bodies_get_413_problem_json(auth_client, path):
    response = auth_client.post(path, json={"username": "alice", "password": "x" * 100_000})

    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(("method", "path"), [("GET", "/register"), ("PUT", "/login"), ("GET", "/verify")])
def test_wrong_methods_get_405_with_allow_header(auth_client, method, path):
    response = auth_client.open(path, method=method)

    assert response.status_code == 405
    assert response.headers["Allow"] == "OPTIONS, POST"
    assert response.mimetype == "application/problem+json"


def test_unknown_paths_get_404_problem_json(auth_client):
    response = auth_client.get("/admin")

    assert response.status_code == 404
    assert response.get_json()["status"] == 404
