"""The posts contract, against the real database and the real auth service (token checks)."""

from __future__ import annotations

import base64
import collections
import datetime
import threading
from collections.abc import Callable
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import create_engine, text

from api import posts
from devstack.wait import wait_until
from servicekit.database import fetch_all
from servicekit.metrics import exposition
from tests.integration.conftest import end_backends


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
    assert (body["limit"], body["next_cursor"]) == (20, None)


def test_my_posts_lists_only_the_callers_posts(api_client, account):
    _, alice = account("alice")
    _, bob = account("bob")
    mine = [create_post(api_client, alice, content=f"a{i}") for i in range(3)]
    create_post(api_client, bob, content="b")

    response = api_client.get("/api/v1/posts/my", headers=alice)

    assert response.status_code == 200
    assert [p["id"] for p in response.get_json()["items"]] == [p["id"] for p in reversed(mine)]
    assert api_client.get("/api/v1/posts/my").status_code == 401


def walk(client, path: str, limit: int, headers=None, between_pages=lambda: None) -> tuple[list[int], int]:
    """Follow next_cursor from the first page to the last: (the ids seen, in order; pages)."""
    seen, query, pages = [], f"limit={limit}", 0
    while True:
        response = client.get(f"{path}?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        assert set(page) == {"items", "limit", "next_cursor"}
        assert page["limit"] == limit and len(page["items"]) <= limit
        seen += [post["id"] for post in page["items"]]
        pages += 1
        if page["next_cursor"] is None:
            return seen, pages
        query = f"limit={limit}&cursor={page['next_cursor']}"
        between_pages()


def test_paging_walks_every_post_once_newest_first_and_ends_with_a_null_cursor(api_client, account):
    _, headers = account()
    ids = [create_post(api_client, headers, content=f"post {i}")["id"] for i in range(7)]

    seen, pages = walk(api_client, "/api/v1/posts", limit=3)

    assert seen == list(reversed(ids))
    assert pages == 3
    exact = api_client.get("/api/v1/posts?limit=7").get_json()
    assert len(exact["items"]) == 7
    assert exact["next_cursor"] is None


def test_posts_written_while_paging_neither_repeat_nor_hide_the_posts_already_listed(api_client, account):
    _, alice = account("alice")
    _, bob = account("bob")
    ids = [create_post(api_client, alice, content=f"before {i}")["id"] for i in range(8)]
    written = []

    # With offsets, each new post pushed an already listed one onto the next page (listed twice).
    seen, _ = walk(
        api_client,
        "/api/v1/posts",
        limit=3,
        between_pages=lambda: written.append(create_post(api_client, bob, content="meanwhile")["id"]),
    )

    assert seen == list(reversed(ids))
    assert len(written) == 2
    # Newer than where the walk started, the new posts are on a first page fetched afresh.
    first_page = api_client.get("/api/v1/posts?limit=2").get_json()["items"]
    assert [post["id"] for post in first_page] == list(reversed(written))


def test_a_page_after_its_last_post_was_deleted_continues_where_it_was(api_client, account):
    _, headers = account()
    ids = [create_post(api_client, headers, content=f"post {i}")["id"] for i in range(5)]
    first = api_client.get("/api/v1/posts?limit=2").get_json()
    assert api_client.delete(f"/api/v1/posts/{ids[3]}", headers=headers).status_code == 204

    rest = api_client.get(f"/api/v1/posts?limit=10&cursor={first['next_cursor']}").get_json()

    assert [post["id"] for post in rest["items"]] == [ids[2], ids[1], ids[0]]


def test_posts_with_the_same_created_at_are_each_listed_once_by_id(api_client, account, clean_databases):
    user, headers = account()
    engine = create_engine(clean_databases["api"])
    with engine.begin() as connection:
        # Written in one statement, so they share one transaction timestamp.
        same_instant = (
            connection.execute(
                text(
                    "INSERT INTO posts (user_id, username, content, created_at) "
                    "SELECT :user_id, 'alice', 'same instant ' || n, '2030-01-01T00:00:00.123456Z' "
                    "FROM generate_series(1, 5) AS n RETURNING id"
                ),
                {"user_id": user["id"]},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    older = create_post(api_client, headers, content="now")["id"]

    for path, auth in (("/api/v1/posts", None), ("/api/v1/posts/my", headers)):
        seen, _ = walk(api_client, path, limit=2, headers=auth)
        assert seen == [*sorted(same_instant, reverse=True), older]


def test_my_posts_pages_through_the_callers_posts_only(api_client, account):
    _, alice = account("alice")
    _, bob = account("bob")
    mine = []
    for i in range(5):
        mine.append(create_post(api_client, alice, content=f"alice {i}")["id"])
        create_post(api_client, bob, content=f"bob {i}")

    seen, pages = walk(api_client, "/api/v1/posts/my", limit=2, headers=alice)

    assert seen == list(reversed(mine))
    assert pages == 3
    # A cursor from alice's listing gives bob his own posts after that position, never hers.
    cursor = api_client.get("/api/v1/posts/my?limit=1", headers=alice).get_json()["next_cursor"]
    bobs = api_client.get(f"/api/v1/posts/my?cursor={cursor}", headers=bob).get_json()["items"]
    assert {post["username"] for post in bobs} == {"bob"}
    assert api_client.get(f"/api/v1/posts/my?cursor={cursor}").status_code == 401


@pytest.mark.parametrize(("query", "expected"), [("limit=1", 1), ("limit=100", 5), ("", 5), ("offset=0", 5)])
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
        "limit=99999999999999999999999",
    ],
)
def test_bad_paging_parameters_are_400(api_client, account, query):
    _, headers = account()
    assert api_client.get(f"/api/v1/posts?{query}").status_code == 400
    response = api_client.get(f"/api/v1/posts/my?{query}", headers=headers)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize("offset", ["1", "20", "1000000", "-1", "x", "00", ""])
def test_offsets_are_refused_with_a_pointer_to_the_cursor(api_client, account, offset):
    _, headers = account()
    for path, auth in (("/api/v1/posts", None), ("/api/v1/posts/my", headers)):
        response = api_client.get(f"{path}?offset={offset}", headers=auth)

        assert response.status_code == 400
        assert response.content_type == "application/problem+json"
        [error] = response.get_json()["errors"]
        assert error["field"] == "offset"
        assert "next_cursor as cursor" in error["message"]


def b64(text_: str) -> str:
    return base64.urlsafe_b64encode(text_.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!!",
        "not a cursor",
        "A" * 65,
        b64("1700000000000000.1") + "=",  # padded
        b64("1700000000000000.1").replace("M", "+"),  # the other base64 alphabet
        b64("1700000000000000"),
        b64("1700000000000000.0"),
        b64("1700000000000000.-1"),
        b64(f"1700000000000000.{2**63}"),
        b64("01700000000000000.1"),
        b64("1700000000000000.01"),
        b64("+1700000000000000.1"),
        b64(" 1700000000000000.1"),
        b64("1700000000000000.1\n"),
        b64("999999999999999999.1"),  # after the year 9999
        b64("-99999999999999999.1"),  # before the year 1
        b64("1700000000000000.\u0661"),  # an Arabic-Indic digit
        b64("1.5.1"),
        base64.urlsafe_b64encode(b"\xff\xfe.1").rstrip(b"=").decode(),
    ],
)
def test_a_cursor_the_api_did_not_issue_is_400(api_client, account, cursor):
    _, headers = account()
    for path, auth in (("/api/v1/posts", None), ("/api/v1/posts/my", headers)):
        response = api_client.get(f"{path}?cursor={quote(cursor)}", headers=auth)

        assert response.status_code == 400, cursor
        assert response.content_type == "application/problem+json"
        assert response.get_json()["errors"] == [
            {"field": "cursor", "message": "must be a next_cursor from an earlier page"}
        ]


def test_a_cursor_whose_last_character_carries_stray_bits_is_400(api_client):
    canonical = b64("1700000000000000.12")  # 19 bytes: the last character holds 4 spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    stray = canonical[:-1] + alphabet[alphabet.index(canonical[-1]) + 1]
    assert base64.urlsafe_b64decode(stray + "==") == base64.urlsafe_b64decode(canonical + "==")

    assert api_client.get(f"/api/v1/posts?cursor={canonical}").status_code == 200
    assert api_client.get(f"/api/v1/posts?cursor={stray}").status_code == 400


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


@pytest.fixture
def listing_statements(monkeypatch):
    """The SQL (and parameters) of every posts listing the app runs while the test does."""
    captured: list[tuple[str, dict]] = []

    def recording(engine, statement, parameters):
        captured.append((statement, dict(parameters)))
        return fetch_all(engine, statement, parameters)

    # The listings read past SQLAlchemy's execution events (servicekit.database.fetch_all).
    monkeypatch.setattr(posts, "fetch_all", recording)
    return captured


def query_plan(database_url: str, statement: str, parameters: dict) -> str:
    engine = create_engine(database_url)
    connection = engine.raw_connection()
    try:
        with connection.cursor() as cursor:
            # A handful of rows makes a sequential scan the cheapest plan; with that option taken
            # away the planner shows whether the index can serve the query in its order at all.
            cursor.execute("SET enable_seqscan = off")
            cursor.execute(f"EXPLAIN {statement}", parameters)
            return "\n".join(row[0] for row in cursor.fetchall())
    finally:
        connection.close()
        engine.dispose()


@pytest.mark.parametrize(
    "listing",
    [("/api/v1/posts", "posts_created_at_id_idx"), ("/api/v1/posts/my", "posts_user_id_created_at_id_idx")],
)
def test_every_page_is_the_same_index_range_scan_with_no_offset(
    api_client, account, clean_databases, listing_statements, listing
):
    path, index = listing
    _, headers = account()
    for i in range(7):
        create_post(api_client, headers, content=f"post {i}")

    _, pages = walk(api_client, path, limit=2, headers=headers)

    assert pages == 4
    statements = [statement for statement, _ in listing_statements]
    assert len(statements) == 4
    assert not any("OFFSET" in statement.upper() for statement in statements)
    # Every page after the first is one statement, only its parameters differ.
    assert len(set(statements[1:])) == 1
    for statement, parameters in listing_statements[1:]:
        plan = query_plan(clean_databases["api"], statement, parameters)
        assert f"Index Scan Backward using {index}" in plan, plan
        assert "Sort" not in plan, plan
        assert "Index Cond" in plan and "created_at, id) <" in plan.replace("ROW(", "("), plan


def test_a_page_of_posts_costs_one_database_round_trip(api_client, account, database_round_trips):
    _, headers = account("alice")
    for number in range(3):
        create_post(api_client, headers, content=f"post {number}")
    api_client.get("/api/v1/posts/my", headers=headers)  # the token is cached, the pool warm

    with database_round_trips() as everyone:
        assert api_client.get("/api/v1/posts?limit=2").status_code == 200
    with database_round_trips() as own:
        assert api_client.get("/api/v1/posts/my?limit=2", headers=headers).status_code == 200

    # The SELECT alone: no BEGIN before it, no pre-ping, no ROLLBACK after it.
    assert everyone == [1]
    assert own == [1]


def test_a_pooled_connection_the_server_ended_is_replaced_before_a_request_gets_it(
    api_client, account, database_urls, postgres
):
    _, headers = account("alice")
    create_post(api_client, headers)
    assert api_client.get("/api/v1/posts").status_code == 200
    assert end_backends(postgres, "datname = 'api_db'")

    pages = [api_client.get("/api/v1/posts") for _ in range(3)]

    assert [page.status_code for page in pages] == [200, 200, 200]


def test_listings_under_load_are_answered_while_the_database_ends_every_connection(
    live_api, live_account, postgres
):
    # A restart or a failover ends every backend at once, some while a read is on its way: those
    # reads are sent again on a new connection (servicekit.database.fetch_all), not answered 503.
    _, headers = live_account("alice")
    created = requests.post(
        f"{live_api.url}/api/v1/posts", json={"content": "x"}, headers=headers, timeout=10
    )
    assert created.status_code == 201
    url = f"{live_api.url}/api/v1/posts"
    statuses: collections.Counter = collections.Counter()
    stop = threading.Event()

    def keep_listing() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                statuses[session.get(url, timeout=30).status_code] += 1

    def answered_at_least(count: int) -> Callable[[], bool]:
        return lambda: sum(statuses.values()) >= count

    clients = [threading.Thread(target=keep_listing) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        for _ in range(5):
            wait_until(answered_at_least(sum(statuses.values()) + 50), timeout=30, message="50 more listings")
            assert end_backends(postgres, "datname = 'api_db' AND application_name = 'api'")
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)

    assert statuses[200] > 250
    assert dict(statuses) == {200: statuses[200]}


def test_a_post_reads_the_same_in_every_listing_as_when_it_was_created(api_client, account):
    _, headers = account("alice")
    created = [create_post(api_client, headers, content=f"post {number}") for number in range(3)]

    everyone = api_client.get("/api/v1/posts").get_json()["items"]
    own = api_client.get("/api/v1/posts/my", headers=headers).get_json()["items"]

    assert everyone == own == created[::-1]
