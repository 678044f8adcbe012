"""POST /upload: what is accepted, what is stored, and every way an upload is refused."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib

import pytest

from images.budget import DecodeBudget
from images.uploads import request_body_limit
from servicekit.metrics import exposition
from tests.integration.images.conftest import BUCKET, bucket_keys, image_bytes

FILENAME = re.compile(r"^[0-9a-f]{32}\.(jpg|png|gif|webp)$")
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def rejections(images_client, reason: str) -> float:
    metrics = exposition(images_client.application).decode()
    match = re.search(rf'^images_upload_rejections_total\{{reason="{reason}"\}} (\S+)$', metrics, re.M)
    return float(match.group(1))


@pytest.mark.parametrize(
    "accepted",
    [
        ("JPEG", "image/jpeg", "jpg"),
        ("PNG", "image/png", "png"),
        ("GIF", "image/gif", "gif"),
        ("WEBP", "image/webp", "webp"),
    ],
    ids=lambda accepted: accepted[0],
)
def test_each_accepted_format_is_stored_with_its_metadata(upload, alice, s3, image_rows, accepted):
    fmt, content_type, extension = accepted
    data = image_bytes(fmt, size=(12, 7))

    response = upload(alice, data, filename=f"holiday.{extension}", content_type=content_type)

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == {
        "filename",
        "original_filename",
        "content_type",
        "size",
        "width",
        "height",
        "sha256",
        "created_at",
    }
    assert FILENAME.match(body["filename"]) and body["filename"].endswith(f".{extension}")
    assert body["original_filename"] == f"holiday.{extension}"
    assert body["content_type"] == content_type
    assert (body["size"], body["width"], body["height"]) == (len(data), 12, 7)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert CREATED_AT.match(body["created_at"])
    assert response.headers["Location"] == f"/images/{body['filename']}"
    stored = s3.get_object(Bucket=BUCKET, Key=f"users/1/{body['filename']}")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == content_type
    [row] = image_rows()
    assert (row["status"], row["user_id"], row["username"]) == ("committed", 1, "alice")


def test_the_format_comes_from_the_content_not_the_name_or_declared_type(upload, alice, tiny_images):
    response = upload(alice, tiny_images["JPEG"], filename="not-really.png", content_type="image/png")

    assert response.status_code == 201
    assert response.get_json()["content_type"] == "image/jpeg"
    assert response.get_json()["filename"].endswith(".jpg")


def test_the_client_file_name_is_only_metadata_and_never_part_of_the_key(upload, alice, tiny_images, s3):
    response = upload(alice, tiny_images["PNG"], filename="..\\../../etc/pass\x07wd.png")

    body = response.get_json()
    assert response.status_code == 201
    assert body["original_filename"] == "passwd.png"
    assert bucket_keys(s3) == [f"users/1/{body['filename']}"]


def test_the_same_image_uploaded_twice_gets_two_names(upload, alice, tiny_images):
    first = upload(alice, tiny_images["PNG"]).get_json()
    second = upload(alice, tiny_images["PNG"]).get_json()

    assert first["filename"] != second["filename"]
    assert first["sha256"] == second["sha256"]


# -- refusals ------------------------------------------------------------------------------
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header that declares a huge image: a decompression bomb."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def truncated(fmt: str) -> bytes:
    data = image_bytes(fmt, size=(64, 48), noise=True)
    return data[: len(data) * 2 // 3]


REFUSALS = {
    "svg": (SVG, 415, "unsupported_type"),
    "text named .png": (b"just some text, honestly\n" * 10, 415, "unsupported_type"),
    "html": (b"<html><script>alert(1)</script></html>", 415, "unsupported_type"),
    "bmp": (image_bytes("BMP"), 415, "unsupported_type"),
    "empty": (b"", 400, "empty"),
    "png signature only": (b"\x89PNG\r\n\x1a\n", 400, "invalid_image"),
    "truncated jpeg": (truncated("JPEG"), 400, "invalid_image"),
    "truncated png": (truncated("PNG"), 400, "invalid_image"),
    "truncated gif": (truncated("GIF"), 400, "invalid_image"),
    "truncated webp": (truncated("WEBP"), 400, "invalid_image"),
    "decompression bomb": (png_declaring(100_000, 100_000), 422, "too_many_pixels"),
    "just over the pixel limit": (png_declaring(8000, 5001), 422, "too_many_pixels"),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_an_unacceptable_file_is_refused_and_nothing_is_stored(images_client, upload, alice, stored, refusal):
    data, status, reason = refusal
    before = rejections(images_client, reason)

    response = upload(alice, data, filename="innocent.png", content_type="image/png")

    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == status
    assert stored() == ([], [])
    assert rejections(images_client, reason) == before + 1


def test_a_file_over_the_size_limit_is_refused_with_413(
    images_client, upload, alice, images_settings, stored
):
    limit = images_settings.max_upload_bytes
    over = image_bytes("PNG") + b"\0" * (limit - len(image_bytes("PNG")) + 1)
    before = rejections(images_client, "too_large")

    response = upload(alice, over)

    assert response.status_code == 413
    assert str(limit) in response.get_json()["detail"]
    assert rejections(images_client, "too_large") == before + 1
    assert stored() == ([], [])


def test_a_file_exactly_at_the_size_limit_is_accepted(upload, alice, images_settings):
    data = image_bytes("PNG")
    padded = data + b"\0" * (images_settings.max_upload_bytes - len(data))  # trailing bytes after IEND

    response = upload(alice, padded)

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["size"] == images_settings.max_upload_bytes


class UnreadableBody(io.RawIOBase):
    """A request body that fails the test if the service reads any of it."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, _offset: int, _whence: int = 0) -> int:
        return 0

    def readinto(self, _buffer) -> int:
        raise AssertionError("the service read a body it should have refused from its length")


def test_a_body_declared_too_long_is_refused_before_any_of_it_is_read(images_client, alice, images_settings):
    before = rejections(images_client, "too_large")
    response = images_client.post(
        "/upload",
        headers=alice,
        input_stream=UnreadableBody(),
        content_type="multipart/form-data; boundary=x",
        environ_overrides={"CONTENT_LENGTH": str(images_settings.max_upload_bytes * 2)},
    )

    assert response.status_code == 413
    assert response.get_json()["type"].endswith("/upload-too-large")
    assert rejections(images_client, "too_large") == before + 1


def test_a_body_declared_one_byte_over_the_limit_is_refused_and_counted_once(
    images_client, alice, images_settings
):
    before = rejections(images_client, "too_large")
    response = images_client.post(
        "/upload",
        headers=alice,
        input_stream=UnreadableBody(),
        content_type="multipart/form-data; boundary=x",
        environ_overrides={"CONTENT_LENGTH": str(request_body_limit(images_settings.max_upload_bytes) + 1)},
    )

    assert response.status_code == 413
    assert rejections(images_client, "too_large") == before + 1


def test_a_too_long_body_sent_elsewhere_is_a_413_but_not_an_upload_rejection(
    images_client, alice, images_settings
):
    before = rejections(images_client, "too_large")
    response = images_client.delete(
        "/images/0123456789abcdef0123456789abcdef.png",
        headers=alice,
        input_stream=UnreadableBody(),
        environ_overrides={"CONTENT_LENGTH": str(images_settings.max_upload_bytes * 2)},
    )

    assert response.status_code == 413
    assert rejections(images_client, "too_large") == before


def test_a_body_without_a_length_is_cut_off_at_the_limit(images_client, alice, images_settings):
    boundary = "x"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + image_bytes("PNG") + b"\0" * (images_settings.max_upload_bytes + 100_000)

    response = images_client.post(
        "/upload",
        headers=alice,
        input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={boundary}",
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )

    assert response.status_code == 413


def test_an_upload_without_the_file_field_is_a_400(images_client, alice):
    response = images_client.post(
        "/upload", headers=alice, data={"image": "not a file"}, content_type="multipart/form-data"
    )

    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        {"field": "file", "message": response.get_json()["errors"][0]["message"]}
    ]


def test_a_json_body_is_not_an_upload(images_client, alice):
    response = images_client.post("/upload", headers=alice, json={"file": "aGVsbG8="})

    assert response.status_code == 400


def test_an_upload_waits_for_decode_memory_and_is_answered_503_when_it_stays_in_use(
    images_app, upload, alice, stored, monkeypatch
):
    budget = DecodeBudget(limit_bytes=10 * 1024 * 1024, wait_seconds=0.2)
    monkeypatch.setitem(images_app.extensions, "images.decode_budget", budget)
    gif = image_bytes("GIF", size=(1000, 1000))  # 1 MB to decode

    with budget.reserve(budget.limit_bytes):  # other uploads hold all of it
        refused = upload(alice, gif, filename="a.gif", content_type="image/gif")
    accepted = upload(alice, gif, filename="a.gif", content_type="image/gif")

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "2"
    assert refused.get_json()["type"].endswith("/decode-busy")
    assert accepted.status_code == 201
    assert len(stored()[0]) == 1 and budget.reserved_bytes == 0
