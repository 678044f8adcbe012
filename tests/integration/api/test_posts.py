"""The posts contract, against the real database and the real auth service (token checks)."""

from __future__ import annotations

import datetime
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from servicekit.metrics import exposition


def create_post(client, headers, content="hello", **fields):
    response = client.post("/api/v1/posts", json={"content": content, **fields}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def post_count(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM posts")).scalar_one()
    engine.dispose()
    return count


def test_creating_a_post_returns_it_with_the_token_users_id_and_name(api_client, account):
    user, headers = account("alice")

    post = create_post(api_client, headers, content="first words", title="Hello")

    assert post["user_id"] == user["id"]
    assert post["username"] == "alice"
    assert post["title"] == "Hello"
    assert post["content"] == "first words"
    assert isinstance(post["id"], int)
    created = datetime.datetime.fromisoformat(post["created_at"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.UTC) - created) < datetime.timedelta(minutes=1)


def test_title_is_optional_and_null_when_left_out(api_client, account):
    _, headers = account()
    assert create_post(api_client, headers, content="no title")["title"] is None


@pytest.mark.parametrize("field", ["id", "user_id", "username", "created_at", "author"])
def test_a_body_naming_the_author_or_any_other_field_is_refused(api_client, account, clean_databases, field):
    _, headers = account()
    response = api_client.post("/api/v1/posts", json={"content": "x", field: 999}, headers=headers)

    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": field, "message": "is not a known field"}]
    assert post_count(clean_databases["api"]) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "content"),
        ({"content": ""}, "content"),
        ({"content": "   \n\t "}, "content"),
        ({"content": "x" * 10_001}, "content"),
        ({"content": "nul \x00 inside"}, "content"),
        ({"content": 42}, "content"),
        ({"content": None}, "content"),
        ({"content": "ok", "title": "t" * 201}, "title"),
        ({"content": "ok", "title": 5}, "title"),
        ({"content": "ok", "title": "a\x00b"}, "title"),
    ],
)
def test_invalid_posts_are_refused_with_the_field_named(api_client, account, clean_databases, body, field):
    _, headers = account()
    response = api_client.post("/api/v1/posts", json=body, headers=headers)

    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert [error["field"] for error in response.get_json()["errors"]] == [field]
    assert post_count(clean_databases["api"]) == 0


def test_content_of_exactly_ten_thousand_characters_and_a_200_character_title_are_accepted(
    api_client, account
):
    _, headers = account()
    post = create_post(api_client, headers, content="é" * 10_000, title="t" * 200)
    assert len(post["content"]) == 10_000
    assert len(post["title"]) == 200


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("not json", "application/json"), ('{"content": "x"}', "text/plain"), ("[1, 2]", "application/json")],
)
def test_a_body_that_is_not_a_json_object_is_refused(api_client, account, data, content_type):
    _, headers = account()
    response = api_client.post("/api/v1/posts", data=data, content_type=content_type, headers=headers)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


def test_a_body_over_the_limit_is_refused_with_413(api_client, account):
    _, headers = account()
    response = api_client.post("/api/v1/posts", json={"content": "x" * 200_000}, headers=headers)
    assert response.status_code == 413


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer not-a-jwt", "Basic YWxpY2U6cHc=", "Bearer a.b.c", "Bearer " + "a" * 5000],
)
def test_writing_without_a_valid_token_is_401(api_client, clean_databases, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = api_client.post("/api/v1/posts", json={"content": "x"}, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.content_type == "application/problem+json"
    assert response.get_json()["type"].endswith("/invalid-token")
    assert response.headers["X-Request-ID"]
    assert post_count(clean_databases["api"]) == 0


def test_a_forged_token_is_refused_by_the_auth_service(api_client, account, clean_databases):
    _, headers = account()
    header, payload, _signature = headers["Authorization"].removeprefix("Bearer ").split(".")
    forged = {"Authorization": f"Bearer {header}.{payload}.{'A' * 43}"}

    assert api_client.post("/api/v1/posts", json={"content": "x"}, headers=forged).status_code == 401
    assert api_client.get("/api/v1/posts/my", headers=forged).status_code == 401


def test_the_public_listing_needs_no_token_and_is_newest_first(api_client, account):
    _, alice = account("alice")
    _, bob = account("bob")
    first = create_post(api_client, alice, content="one")
    second = create_post(api_client, bob, content="two")
    third = create_post(api_client, alice, content="three")

    response = api_client.get("/api/v1/posts")

    assert response.status_code == 200
    body = response.get_json()
    assert [p["id"] for p in body["items"]] == [third["id"], second["id"], first["id"]]
    assert body["items"][1] == second
    assert (body["limit"], body["offset"], body["next_offset"]) == (20, 0, None)


def test_my_posts_lists_only_the_callers_posts(api_client, account):
    _, alice = account("alice")
    _, bob = account("bob")
    mine = [create_post(api_client, alice, content=f"a{i}") for i in range(3)]
    create_post(api_client, bob, content="b")

    response = api_client.get("/api/v1/posts/my", headers=alice)

    assert response.status_code == 200
    assert [p["id"] for p in response.get_json()["items"]] == [p["id"] for p in reversed(mine)]
    assert api_client.get("/api/v1/posts/my").status_code == 401


def test_paging_walks_every_post_once_and_reports_the_last_page(api_client, account):
    _, headers = account()
    ids = [create_post(api_client, headers, content=f"post {i}")["id"] for i in range(7)]

    seen, offset, pages = [], 0, 0
    while offset is not None:
        page = api_client.get(f"/api/v1/posts?limit=3&offset={offset}").get_json()
        seen += [p["id"] for p in page["items"]]
        offset = page["next_offset"]
        pages += 1

    assert seen == list(reversed(ids))
    assert pages == 3
    mine = api_client.get("/api/v1/posts/my?limit=7", headers=headers).get_json()
    assert len(mine["items"]) == 7
    assert mine["next_offset"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [("limit=1", 1), ("limit=100", 5), ("offset=4", 1), ("offset=5", 0), ("offset=1000000", 0)],
)
def test_paging_edges(api_client, account, query, expected):
    _, headers = account()
    for i in range(5):
        create_post(api_client, headers, content=f"p{i}")
    response = api_client.get(f"/api/v1/posts?{query}")
    assert response.status_code == 200
    assert len(response.get_json()["items"]) == expected


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=1.5",
        "limit=²",
        "offset=-1",
        "offset=x",
        "offset=1000001",
        "limit=99999999999999999999999",
    ],
)
def test_bad_paging_parameters_are_400(api_client, account, query):
    _, headers = account()
    assert api_client.get(f"/api/v1/posts?{query}").status_code == 400
    response = api_client.get(f"/api/v1/posts/my?{query}", headers=headers)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


def test_deleting_ones_own_post_removes_it(api_client, account):
    _, headers = account()
    post = create_post(api_client, headers)

    response = api_client.delete(f"/api/v1/posts/{post['id']}", headers=headers)

    assert response.status_code == 204
    assert response.data == b""
    assert api_client.get("/api/v1/posts").get_json()["items"] == []
    assert api_client.delete(f"/api/v1/posts/{post['id']}", headers=headers).status_code == 404


def test_another_users_post_cannot_be_deleted_and_stays_untouched(api_client, account):
    _, alice = account("alice")
    _, bob = account("bob")
    post = create_post(api_client, alice, content="alice's")

    response = api_client.delete(f"/api/v1/posts/{post['id']}", headers=bob)

    assert response.status_code == 404
    assert response.get_json()["detail"] == "No such post."
    assert api_client.get("/api/v1/posts").get_json()["items"] == [post]


@pytest.mark.parametrize("post_id", ["123456", "0", "-1", "abc", "9223372036854775808", "1.5"])
def test_deleting_a_post_that_does_not_exist_is_404(api_client, account, post_id):
    _, headers = account()
    assert api_client.delete(f"/api/v1/posts/{post_id}", headers=headers).status_code == 404


@pytest.mark.parametrize(
    "zero",
    ["\u0660", "\u06f0", "\u0966", "\uff10"],
    ids=["arabic-indic", "extended-arabic-indic", "devanagari", "fullwidth"],
)
def test_a_post_id_written_in_non_ascii_digits_is_404_and_deletes_nothing(api_client, account, zero):
    _, headers = account()
    post = create_post(api_client, headers)
    # The post's own id in another script's digits: e.g. post 1 as /api/v1/posts/%D9%A1.
    lookalike = "".join(chr(ord(zero) + int(digit)) for digit in str(post["id"]))

    response = api_client.delete(f"/api/v1/posts/{quote(lookalike)}", headers=headers)

    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    assert api_client.get("/api/v1/posts").get_json()["items"] == [post]


def test_deleting_post_one_as_arabic_indic_one_is_404(api_client, account):
    _, headers = account()
    post = create_post(api_client, headers)
    assert post["id"] == 1  # the tables are truncated with their sequences between tests

    assert api_client.delete("/api/v1/posts/%D9%A1", headers=headers).status_code == 404
    assert api_client.get("/api/v1/posts").get_json()["items"] == [post]


def test_deleting_needs_a_token(api_client, account):
    _, headers = account()
    post = create_post(api_client, headers)
    assert api_client.delete(f"/api/v1/posts/{post['id']}").status_code == 401
    assert len(api_client.get("/api/v1/posts").get_json()["items"]) == 1


def test_posts_metrics_count_creations_and_deletions(api_client, account):
    _, headers = account()

    def sample(name):
        for line in exposition().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(name)

    created, deleted = sample("api_posts_created_total"), sample("api_posts_deleted_total")
    post = create_post(api_client, headers)
    api_client.delete(f"/api/v1/posts/{post['id']}", headers=headers)

    assert sample("api_posts_created_total") == created + 1
    assert sample("api_posts_deleted_total") == deleted + 1
