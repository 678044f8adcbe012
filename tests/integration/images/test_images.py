"""GET /images, GET /images/<filename>, DELETE /images/<filename>, GET /stats for the owner."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event

from images.models import db
from tests.integration.images.conftest import ALICE, BUCKET, bucket_keys, image_bytes


def test_the_list_is_newest_first(images_client, alice, uploaded):
    names = [uploaded(alice)["filename"] for _ in range(3)]

    response = images_client.get("/images", headers=alice)

    assert response.status_code == 200
    assert [item["filename"] for item in response.get_json()["items"]] == names[::-1]


def test_list_items_carry_the_upload_metadata(images_client, alice, uploaded):
    first = uploaded(alice)

    [item] = images_client.get("/images", headers=alice).get_json()["items"]

    assert item == first


def test_the_list_pages_with_limit_and_offset_like_the_post_lists(images_client, alice, uploaded):
    names = [uploaded(alice)["filename"] for _ in range(5)][::-1]

    first = images_client.get("/images?limit=2", headers=alice).get_json()
    middle = images_client.get("/images?limit=2&offset=1", headers=alice).get_json()
    last = images_client.get("/images?limit=2&offset=3", headers=alice).get_json()
    past_the_end = images_client.get("/images?limit=2&offset=5", headers=alice).get_json()

    assert [item["filename"] for item in first["items"]] == names[:2]
    assert (first["limit"], first["offset"], first["next_offset"]) == (2, 0, 2)
    assert [item["filename"] for item in middle["items"]] == names[1:3]
    assert middle["next_offset"] == 3
    assert [item["filename"] for item in last["items"]] == names[3:]
    assert last["next_offset"] is None
    assert past_the_end == {"items": [], "limit": 2, "offset": 5, "next_offset": None}


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "offset=-1", "limit=1.5"])
def test_a_bad_page_is_a_400(images_client, alice, query):
    response = images_client.get(f"/images?{query}", headers=alice)

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("limt=5", "limt", "is not a known query parameter"),
        ("limit=5&limit=6", "limit", "must be given at most once"),
        ("offset=1&offset=1", "offset", "must be given at most once"),
    ],
)
def test_an_unknown_or_repeated_query_parameter_is_a_400(images_client, alice, query, field, message):
    response = images_client.get(f"/images?{query}", headers=alice)

    assert response.status_code == 400
    assert response.get_json()["type"].endswith("/validation-error")
    assert response.get_json()["errors"] == [{"field": field, "message": message}]


def test_an_empty_list(images_client, alice):
    assert images_client.get("/images", headers=alice).get_json() == {
        "items": [],
        "limit": 20,
        "offset": 0,
        "next_offset": None,
    }


def test_listing_and_downloading_cost_one_database_round_trip_each(
    images_client, alice, uploaded, database_round_trips
):
    filename = uploaded(alice)["filename"]
    images_client.get("/images", headers=alice)  # a warm pool

    with database_round_trips() as listing:
        assert images_client.get("/images", headers=alice).status_code == 200
    with database_round_trips() as download:
        assert images_client.get(f"/images/{filename}", headers=alice).status_code == 200

    assert listing == [1]
    assert download == [1]


def test_download_returns_the_bytes_with_safe_headers(images_client, alice, upload):
    data = image_bytes("WEBP", size=(30, 20), noise=True)
    body = upload(alice, data).get_json()

    response = images_client.get(f"/images/{body['filename']}", headers=alice)

    assert response.status_code == 200
    assert response.get_data() == data
    assert response.headers["Content-Type"] == "image/webp"
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["ETag"] == f'"{body["sha256"]}"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"].startswith("private")


@pytest.fixture
def s3_calls(images_app):
    """The names of the S3 operations the service calls during the test."""
    calls: list[str] = []

    def record(model, **_):
        calls.append(model.name)

    events = images_app.extensions["images.store"].client.meta.events
    events.register("before-call.s3", record, unique_id="test-s3-calls")
    yield calls
    events.unregister("before-call.s3", unique_id="test-s3-calls")


def test_head_gives_the_download_headers_from_the_object_metadata_alone(
    images_client, alice, upload, s3_calls
):
    data = image_bytes("WEBP", size=(30, 20), noise=True)
    body = upload(alice, data).get_json()
    s3_calls.clear()

    response = images_client.head(f"/images/{body['filename']}", headers=alice)

    assert response.status_code == 200
    assert response.get_data() == b""
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Content-Type"] == "image/webp"
    assert response.headers["ETag"] == f'"{body["sha256"]}"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert s3_calls == ["HeadObject"]


def test_head_of_an_image_whose_object_is_gone_is_a_404(images_client, alice, uploaded, s3):
    body = uploaded(alice)
    s3.delete_object(Bucket=BUCKET, Key=f"users/{ALICE[0]}/{body['filename']}")

    assert images_client.head(f"/images/{body['filename']}", headers=alice).status_code == 404


@pytest.fixture
def sql_statements(images_app):
    """The SQL statements the service runs during the test."""
    statements: list[str] = []

    def record(_connection, _cursor, statement, *_):
        statements.append(statement)

    with images_app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield statements
    event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("method", ["get", "head", "delete"])
def test_a_filename_with_a_trailing_newline_is_not_found_without_asking_the_database(
    images_client, alice, uploaded, sql_statements, method
):
    filename = uploaded(alice)["filename"]
    sql_statements.clear()

    response = getattr(images_client, method)(f"/images/{filename}%0A", headers=alice)

    assert response.status_code == 404
    assert sql_statements == []


def test_download_answers_304_when_the_client_has_the_same_bytes(images_client, alice, uploaded):
    body = uploaded(alice)

    response = images_client.get(
        f"/images/{body['filename']}", headers={**alice, "If-None-Match": f'"{body["sha256"]}"'}
    )

    assert response.status_code == 304
    assert response.get_data() == b""


@pytest.mark.parametrize(
    "filename", ["0123456789abcdef0123456789abcdef.png", "nope", "..%2F..%2Fetc%2Fpasswd", "a" * 300]
)
def test_download_of_an_unknown_image_is_a_404(images_client, alice, filename):
    response = images_client.get(f"/images/{filename}", headers=alice)

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_a_committed_image_whose_object_vanished_is_a_404_not_a_500(images_client, alice, uploaded, s3):
    body = uploaded(alice)
    s3.delete_object(Bucket=BUCKET, Key=f"users/1/{body['filename']}")

    response = images_client.get(f"/images/{body['filename']}", headers=alice)

    assert response.status_code == 404


def test_delete_removes_the_row_and_the_object(images_client, alice, uploaded, stored):
    body = uploaded(alice)

    response = images_client.delete(f"/images/{body['filename']}", headers=alice)

    assert response.status_code == 204
    assert response.get_data() == b""
    assert stored() == ([], [])
    assert images_client.get(f"/images/{body['filename']}", headers=alice).status_code == 404
    assert images_client.delete(f"/images/{body['filename']}", headers=alice).status_code == 404


def test_delete_leaves_the_other_images_alone(images_client, alice, uploaded, s3):
    keep, drop = uploaded(alice), uploaded(alice)

    images_client.delete(f"/images/{drop['filename']}", headers=alice)

    listed = images_client.get("/images", headers=alice).get_json()["items"]
    assert [item["filename"] for item in listed] == [keep["filename"]]
    assert bucket_keys(s3) == [f"users/1/{keep['filename']}"]


def test_concurrent_deletes_of_one_image_give_one_204_and_404s_never_a_500(
    images_app, alice, uploaded, stored
):
    body = uploaded(alice)
    racers = 8
    start = threading.Barrier(racers)

    def delete() -> int:
        client = images_app.test_client()
        start.wait()
        return client.delete(f"/images/{body['filename']}", headers=alice).status_code

    with ThreadPoolExecutor(racers) as pool:
        statuses = sorted(pool.map(lambda _: delete(), range(racers)))

    assert statuses == [204] + [404] * (racers - 1)
    assert stored() == ([], [])


def test_stats_count_the_callers_images_by_content_type(images_client, alice, upload, tiny_images):
    for fmt in ("PNG", "PNG", "JPEG", "WEBP"):
        assert upload(alice, tiny_images[fmt]).status_code == 201
    expected_bytes = 2 * len(tiny_images["PNG"]) + len(tiny_images["JPEG"]) + len(tiny_images["WEBP"])

    response = images_client.get("/stats", headers=alice)

    assert response.status_code == 200
    assert response.get_json() == {
        "count": 4,
        "total_bytes": expected_bytes,
        "by_content_type": {"image/jpeg": 1, "image/png": 2, "image/gif": 0, "image/webp": 1},
    }


def test_stats_of_a_user_without_images_are_zero(images_client, alice):
    assert images_client.get("/stats", headers=alice).get_json() == {
        "count": 0,
        "total_bytes": 0,
        "by_content_type": {"image/jpeg": 0, "image/png": 0, "image/gif": 0, "image/webp": 0},
    }


def test_a_delete_whose_object_is_already_gone_still_completes(images_client, alice, uploaded, s3, stored):
    # What a retry meets when a delete removed the object but could not commit.
    body = uploaded(alice)
    s3.delete_object(Bucket=BUCKET, Key=f"users/1/{body['filename']}")

    response = images_client.delete(f"/images/{body['filename']}", headers=alice)

    assert response.status_code == 204
    assert stored() == ([], [])
