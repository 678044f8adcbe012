"""POST /register: who may sign up, and what they get back."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import create_engine, text

PROBLEM = "application/problem+json"


def test_register_returns_201_with_id_and_username_only(auth_client):
    response = auth_client.post("/register", json={"username": "alice", "password": "correct horse"})

    assert response.status_code == 201
    assert response.get_json() == {"id": 1, "username": "alice"}


def test_register_stores_a_bcrypt_hash_with_the_configured_cost(auth_client, database_urls):
    auth_client.post("/register", json={"username": "alice", "password": "correct horse"})

    engine = create_engine(database_urls["auth"])
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT password_hash FROM users")).scalar_one()
    engine.dispose()
    assert stored.startswith("$2b$04$")  # the suite runs with BCRYPT_ROUNDS=4
    assert "correct horse" not in stored


def test_password_hash_never_appears_in_responses_or_logs(auth_client, caplog):
    caplog.set_level(logging.DEBUG)
    responses = [
        auth_client.post("/register", json={"username": "alice", "password": "correct horse"}),
        auth_client.post("/register", json={"username": "alice", "password": "correct horse"}),
        auth_client.post("/login", json={"username": "alice", "password": "correct horse"}),
        auth_client.post("/login", json={"username": "alice", "password": "wrong password"}),
    ]
    for response in responses:
        assert b"$2b$" not in response.data
        assert b"password_hash" not in response.data
    assert "$2b$" not in caplog.text
    assert "correct horse" not in caplog.text


@pytest.mark.parametrize("username", ["abc", "a" * 32, "Alice.Smith-99_x"])
def test_usernames_of_3_to_32_allowed_characters_are_accepted(auth_client, username):
    response = auth_client.post("/register", json={"username": username, "password": "correct horse"})
    assert response.status_code == 201


@pytest.mark.parametrize(
    "username",
    ["ab", "a" * 33, "alice smith", "alice@example", "ålice", "", "al/ce", "bob\n", "a" * 32 + "\n"],
)
def test_usernames_outside_the_rules_are_refused_with_400(auth_client, username):
    response = auth_client.post("/register", json={"username": username, "password": "correct horse"})

    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert response.get_json()["errors"][0]["field"] == "username"


def test_usernames_are_unique_regardless_of_case(auth_client):
    first = auth_client.post("/register", json={"username": "Alice", "password": "correct horse"})
    second = auth_client.post("/register", json={"username": "aLICE", "password": "other password"})

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.mimetype == PROBLEM
    assert second.get_json()["status"] == 409


@pytest.mark.parametrize(
    ("password", "expected_status"),
    [
        ("x" * 7, 400),  # shorter than 8 characters
        ("x" * 8, 201),
        ("x" * 71, 201),
        ("x" * 72, 201),  # bcrypt's limit, exactly
        ("x" * 73, 400),  # would be truncated by bcrypt: refused instead
        ("é" * 36, 201),  # 72 bytes in UTF-8
        ("é" * 36 + "x", 400),  # 73 bytes
        ("é" * 37, 400),  # 74 bytes though only 37 characters
        ("🔑" * 18, 201),  # 72 bytes of 4-byte characters
        ("🔑" * 2, 400),  # 8 bytes but 2 characters: too short
        ("🔑" * 19, 400),
        ("password\x00tail", 400),
    ],
)
def test_password_length_is_checked_in_characters_and_bcrypt_bytes(auth_client, password, expected_status):
    response = auth_client.post("/register", json={"username": "alice", "password": password})

    assert response.status_code == expected_status, response.get_json()
    if expected_status == 400:
        assert response.get_json()["errors"][0]["field"] == "password"


def test_a_72_byte_password_must_match_in_full_to_log_in(auth_client):
    password = "p" * 71 + "A"
    auth_client.post("/register", json={"username": "alice", "password": password})

    wrong_last_byte = auth_client.post("/login", json={"username": "alice", "password": "p" * 71 + "B"})
    right = auth_client.post("/login", json={"username": "alice", "password": password})

    assert wrong_last_byte.status_code == 401
    assert right.status_code == 200
