"""Deciding what an upload is from its bytes (images.inspection), without any server."""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import time
import zlib

import pytest
from PIL import Image

from images import inspection
from images.budget import DecodeBudget, DecodeBusy
from images.inspection import Rejected, inspect, sniff

MIB = 1024 * 1024
BUDGET = DecodeBudget(limit_bytes=64 * MIB, wait_seconds=0)


def encoded(fmt: str, size=(20, 10), mode="RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "teal").save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("JPEG", inspection.JPEG), ("PNG", inspection.PNG), ("GIF", inspection.GIF), ("WEBP", inspection.WEBP)],
)
def test_each_supported_format_is_recognised_with_its_size(fmt, expected):
    found = inspect(io.BytesIO(encoded(fmt)), max_pixels=1000, budget=BUDGET)

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

        assert inspect(io.BytesIO(buffer.getvalue()), max_pixels=1000, budget=BUDGET).width == 16


def test_a_progressive_jpeg_and_a_palette_png_and_a_grey_jpeg_are_accepted():
    for data in (encoded("JPEG", progressive=True), encoded("PNG", mode="P"), encoded("JPEG", mode="L")):
        assert inspect(io.BytesIO(data), max_pixels=1000, budget=BUDGET).height == 10


def test_the_pixel_limit_is_checked_before_decoding():
    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(encoded("PNG", size=(100, 100))), max_pixels=9999, budget=BUDGET)

    assert (refused.value.reason, refused.value.status) == ("too_many_pixels", 422)


def test_an_image_at_the_pixel_limit_is_accepted():
    assert inspect(io.BytesIO(encoded("PNG", size=(100, 100))), max_pixels=10_000, budget=BUDGET).width == 100


def test_a_cut_off_animation_is_invalid():
    frames = [Image.effect_noise((64, 64), 90).convert("RGB") for _ in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()

    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(data[: len(data) * 3 // 4]), max_pixels=10_000, budget=BUDGET)

    assert refused.value.reason == "invalid_image"


def test_a_file_with_a_valid_signature_and_garbage_after_it_is_invalid():
    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(b"\xff\xd8\xff\xe0" + b"\x00" * 200), max_pixels=1000, budget=BUDGET)

    assert (refused.value.reason, refused.value.status) == ("invalid_image", 400)


def test_the_hash_covers_every_byte_and_leaves_the_stream_at_its_start():
    data = encoded("PNG")
    stream = io.BytesIO(data)

    found = inspect(stream, max_pixels=1000, budget=BUDGET)

    assert found.sha256 == hashlib.sha256(data).hexdigest()
    assert stream.tell() == 0


# -- checking the pixel data within the decode budget --------------------------------------
def png_file(width: int, height: int, scanlines: bytes, *, colour_type=0, depth=8, interlace=0) -> bytes:
    """A PNG whose every chunk has a correct CRC, holding ``scanlines`` as its raw image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )


def rewritten_png(data: bytes, cut: int) -> bytes:
    """``data`` (a PNG of one IDAT) rewritten with the last ``cut`` bytes of its scanlines gone."""
    width, height, depth, colour_type, interlace = struct.unpack(">IIBBxxB", data[16:29])
    start = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[start - 4 : start])
    scanlines = zlib.decompress(data[start + 4 : start + 4 + length])
    return png_file(
        width,
        height,
        scanlines[: len(scanlines) - cut],
        colour_type=colour_type,
        depth=depth,
        interlace=interlace,
    )


def test_a_png_made_of_valid_chunks_is_accepted():
    rows = b"".join(bytes([filter_type]) + bytes(range(4)) for filter_type in (0, 1, 2, 3, 4))

    assert inspect(io.BytesIO(png_file(4, 5, rows)), max_pixels=1000, budget=BUDGET).height == 5


def test_a_png_whose_image_data_stops_early_is_invalid_though_every_crc_is_right():
    rows = b"".join(b"\x00" + bytes(4) for _ in range(4))  # 4 of the 5 rows

    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(png_file(4, 5, rows)), max_pixels=1000, budget=BUDGET)

    assert refused.value.reason == "invalid_image"


def test_a_png_row_with_an_unknown_filter_is_invalid():
    rows = b"".join(bytes([filter_type]) + bytes(4) for filter_type in (0, 1, 5, 0, 0))

    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(png_file(4, 5, rows)), max_pixels=1000, budget=BUDGET)

    assert "filter" in refused.value.detail


def test_a_png_with_corrupt_compressed_data_is_invalid():
    data = png_file(4, 5, bytes(25)).replace(zlib.compress(bytes(25)), b"\x78\x9c\xff\xff\xff\xff")
    data = bytearray(data)  # CRC of the changed IDAT, so only the inflating can notice
    start = data.index(b"IDAT")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    data[start + 4 + length : start + 8 + length] = struct.pack(
        ">I", zlib.crc32(data[start : start + 4 + length])
    )

    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(bytes(data)), max_pixels=1000, budget=BUDGET)

    assert refused.value.reason == "invalid_image"


@pytest.mark.parametrize(
    ("mode", "options"),
    [("RGBA", {}), ("LA", {}), ("1", {}), ("P", {"bits": 2}), ("I;16", {}), ("RGB", {"interlace": 1})],
)
def test_pngs_of_every_layout_pass_the_streamed_check_and_fail_it_one_byte_short(mode, options):
    picture = Image.effect_noise((37, 23), 60).convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", compress_level=1, **options)

    assert (
        inspect(io.BytesIO(rewritten_png(buffer.getvalue(), cut=0)), max_pixels=1000, budget=BUDGET).width
        == 37
    )
    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(rewritten_png(buffer.getvalue(), cut=1)), max_pixels=1000, budget=BUDGET)
    assert refused.value.reason == "invalid_image"


def test_a_large_png_is_checked_without_any_decode_memory():
    no_budget = DecodeBudget(limit_bytes=0, wait_seconds=0)

    found = inspect(
        io.BytesIO(encoded("PNG", size=(3000, 2000), mode="RGBA")), max_pixels=10**7, budget=no_budget
    )

    assert (found.width, found.height) == (3000, 2000)


def test_decode_costs_follow_what_each_format_holds():
    def cost(data: bytes) -> int:
        stream = io.BytesIO(data)
        with Image.open(stream) as image:
            return inspection.decode_cost(image, sniff(data), stream)

    size = (800, 600)
    assert cost(encoded("PNG", size=size, mode="RGBA")) == 0
    assert cost(encoded("GIF", size=size)) == 800 * 600
    assert cost(encoded("WEBP", size=size)) == 800 * 600 * 16
    assert cost(encoded("JPEG", size=size)) < 800 * 600 // 8
    # Progressive, 4:2:0: the coefficients of Y at full size and of Cb and Cr at quarter size.
    assert 800 * 600 * 3 <= cost(encoded("JPEG", size=size, progressive=True)) < 800 * 600 * 3.2


def test_an_image_whose_decode_alone_exceeds_the_budget_is_refused_as_too_many_pixels():
    small_budget = DecodeBudget(limit_bytes=1000 * 1000 * 16 - 1, wait_seconds=0)

    with pytest.raises(Rejected) as refused:
        inspect(io.BytesIO(encoded("WEBP", size=(1000, 1000))), max_pixels=10**7, budget=small_budget)

    assert (refused.value.reason, refused.value.status) == ("too_many_pixels", 422)
    assert small_budget.reserved_bytes == 0


def test_a_decode_waits_for_the_budget_and_gives_up_when_it_stays_spent():
    budget = DecodeBudget(limit_bytes=1000 * 1000, wait_seconds=0.2)
    gif = encoded("GIF", size=(1000, 1000))

    with budget.reserve(1):
        started = time.monotonic()
        with pytest.raises(DecodeBusy):
            inspect(io.BytesIO(gif), max_pixels=10**7, budget=budget)
        assert time.monotonic() - started >= 0.2

    assert inspect(io.BytesIO(gif), max_pixels=10**7, budget=budget).width == 1000
    assert budget.reserved_bytes == 0


def test_a_waiting_decode_proceeds_as_soon_as_the_budget_is_released():
    budget = DecodeBudget(limit_bytes=100, wait_seconds=10)
    entered = []

    def second():
        with budget.reserve(60):
            entered.append(time.monotonic())

    with budget.reserve(60):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.1)
        assert not entered
        released = time.monotonic()
    waiter.join(timeout=5)

    assert entered and entered[0] - released < 1
    assert budget.reserved_bytes == 0
