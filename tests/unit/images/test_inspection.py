"""Deciding what an upload is from its bytes (images.inspection), without any server."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from images import inspection
from images.inspection import Rejected, inspect, sniff


def encoded(fmt: str, size=(20, 10), mode="RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "teal").save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("JPEG", inspection.JPEG), ("PNG", inspection.PNG), ("GIF", inspection.GIF), ("WEBP", inspection.WEBP)],
)
def test_each_supported_format_is_recognised_with_its_size(fmt, expected):
    found = inspect(io.BytesIO(encoded(fmt)), max_pixels=1000)

    assert (found.format, found.width, found.height) == (expected, 20, 10)
    assert len(found.sha256) == 64


@pytest.mark.parametrize(
    "head",
    [b"", b"<svg xmlns=", b"GIF88a", b"RIFF\0\0\0\0WAVE", b"BM\0\0", b"\xff\xd8", b"II*\0", b"%PDF-1.7"],
)
def test_other_signatures_are_not_recognised(head):
    assert sniff(head) is None


def test_animated_gif_and_webp_are_accepted():
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "green", "blue")]
    for fmt in ("GIF", "WEBP"):
        buffer = io.BytesIO()
        frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)

        assert inspect(io.BytesIO(buffer.getvalue()), max_pixels=1000).width == 16


def test_a_progressive_jpeg_and_a_palette_png_and_a_grey_jpeg_are_accepted():
    for data in (encoded("JPEG", progressive=True), encoded("PNG", mode="P"), encoded("JPEG", mode="L")):
        assert inspect(io.BytesIO(data), max_pixels=1000).height == 10


def test_the_pixel_limit_is_checked_before_decoding():
    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(encoded("PNG", size=(100, 100))), max_pixels=9999)

    assert (refused.value.reason, refused.value.status) == ("too_many_pixels", 422)


def test_an_image_at_the_pixel_limit_is_accepted():
    assert inspect(io.BytesIO(encoded("PNG", size=(100, 100))), max_pixels=10_000).width == 100


def test_a_cut_off_animation_is_invalid():
    frames = [Image.effect_noise((64, 64), 90).convert("RGB") for _ in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()

    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(data[: len(data) * 3 // 4]), max_pixels=10_000)

    assert refused.value.reason == "invalid_image"


def test_a_file_with_a_valid_signature_and_garbage_after_it_is_invalid():
    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(b"\xff\xd8\xff\xe0" + b"\x00" * 200), max_pixels=1000)

    assert (refused.value.reason, refused.value.status) == ("invalid_image", 400)


def test_the_hash_covers_every_byte_and_leaves_the_stream_at_its_start():
    data = encoded("PNG")
    stream = io.BytesIO(data)

    found = inspect(stream, max_pixels=1000)

    assert found.sha256 == hashlib.sha256(data).hexdigest()
    assert stream.tell() == 0
