"""What an uploaded file really is, decided from its bytes alone.

The client's Content-Type and file name are never consulted. The first bytes must carry the
signature of JPEG, PNG, GIF or WebP (anything else, SVG included, is unsupported); then
Pillow, restricted to that one format, reads the header, and the pixel count is checked
*before* any decoding so a small file declaring a huge image (a decompression bomb) costs
nothing. Only then are the pixel data checked, which finds truncated or corrupt data.

Checking the pixel data is the costly step, and what it costs depends on the format
(measured with Pillow 13, in bytes per pixel): PNG is checked without decoding (see
_check_png_data), so almost nothing; GIF's first frame, 1; JPEG is decoded at 1/8 scale,
1/16, but a progressive (or multi-scan) JPEG makes libjpeg hold every coefficient at full
size, about 3 for colour; WebP, 16 (libwebp's two canvases, the copy Pillow receives and
the image it builds). Every decode reserves its cost from the process's DecodeBudget first;
an image whose decode alone would exceed the budget is refused like one with too many pixels.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

from images.budget import DecodeBudget

# Our own pixel check runs first and refuses; Pillow's warning would only repeat it.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

HASH_CHUNK_BYTES = 256 * 1024
PNG_PIECE_BYTES = 64 * 1024
MIB = 1024 * 1024
# The PNG row filters (none, sub, up, average, paeth); any other filter byte is corrupt data.
PNG_LAST_FILTER = 4
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
# Adam7 passes: first column, first row, column step, row step.
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
WEBP_BYTES_PER_PIXEL = 16


@dataclass(frozen=True)
class Format:
    pillow_name: str
    content_type: str
    extension: str


JPEG = Format("JPEG", "image/jpeg", "jpg")
PNG = Format("PNG", "image/png", "png")
GIF = Format("GIF", "image/gif", "gif")
WEBP = Format("WEBP", "image/webp", "webp")
FORMATS = (JPEG, PNG, GIF, WEBP)
CONTENT_TYPES = tuple(f.content_type for f in FORMATS)
EXTENSIONS = tuple(f.extension for f in FORMATS)


class Rejected(Exception):
    """The upload is not an acceptable image; ``reason`` is the metric label."""

    def __init__(self, reason: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Inspected:
    format: Format
    width: int
    height: int
    sha256: str


def sniff(head: bytes) -> Format | None:
    """The format whose signature starts ``head``, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def inspect(stream: IO[bytes], max_pixels: int, budget: DecodeBudget) -> Inspected:
    """Check that ``stream`` (seekable) holds one acceptable image; raise Rejected if not.

    Raises budget.DecodeBusy when the decode budget stays spent while it waits.
    """
    stream.seek(0)
    found = sniff(stream.read(16))
    if found is None:
        raise Rejected("unsupported_type", 415, "Only JPEG, PNG, GIF and WebP images are accepted.")
    try:
        width, height, cost = _verified_size(stream, found, max_pixels)
        if cost > budget.limit_bytes:
            raise Rejected(
                "too_many_pixels",
                422,
                f"Checking this {width}x{height} {found.pillow_name} image would take {cost // MIB} MiB "
                f"of memory, more than the {budget.limit_bytes // MIB} MiB allowed.",
            )
        with budget.reserve(cost):
            _check_data(stream, found)
    except Rejected:
        raise
    except Image.DecompressionBombError:
        raise _too_many_pixels(max_pixels) from None
    # Pillow reports damaged data with any of these, depending on the format and the damage.
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        IndexError,
        struct.error,
        zlib.error,
        MemoryError,
    ) as exc:
        raise Rejected(
            "invalid_image", 400, f"The file is not a complete, valid {found.pillow_name} image ({exc})."
        ) from None
    return Inspected(format=found, width=width, height=height, sha256=_sha256(stream))


def _verified_size(stream: IO[bytes], found: Format, max_pixels: int) -> tuple[int, int, int]:
    """Width, height and the bytes checking the pixel data will take."""
    stream.seek(0)
    with Image.open(stream, formats=[found.pillow_name]) as image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ValueError("the image has no pixels")
        if width * height > max_pixels:
            raise _too_many_pixels(max_pixels)
        cost = decode_cost(image, found, stream)
        # Structure and checksums, without decoding pixels.
        image.verify()
    return width, height, cost


def decode_cost(image: Image.Image, found: Format, stream: IO[bytes]) -> int:
    """Bytes _check_data holds for ``image`` (opened, not loaded), as the module doc says."""
    pixels = image.width * image.height
    if found is PNG:
        return 0  # a few pieces of PNG_PIECE_BYTES
    if found is WEBP:
        return pixels * WEBP_BYTES_PER_PIXEL
    if found is GIF:
        return pixels * _pixel_bytes(image.mode)
    cost = (pixels // 64 + image.width // 8 + image.height // 8 + 1) * _pixel_bytes(image.mode)
    if image.info.get("progressive") or _jpeg_first_scan_components(stream) < len(image.layer):
        # libjpeg's whole-image coefficient arrays: 64 coefficients of 2 bytes per 8x8 block
        # of each component, in whole MCUs.
        widest = max(h for _, h, _, _ in image.layer)
        tallest = max(v for _, _, v, _ in image.layer)
        mcu_columns = -(-image.width // (8 * widest))
        mcu_rows = -(-image.height // (8 * tallest))
        blocks = sum(mcu_columns * h * mcu_rows * v for _, h, v, _ in image.layer)
        cost += blocks * 64 * 2
    return cost


def _pixel_bytes(mode: str) -> int:
    """Bytes per pixel of a Pillow image in ``mode`` (3-band modes are stored in 4 bytes)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _jpeg_first_scan_components(stream: IO[bytes]) -> int:
    """How many components the first scan (SOS) codes; fewer than all makes libjpeg buffer
    the whole image. Pillow has already parsed these header segments."""
    stream.seek(2)
    while True:
        if stream.read(1) != b"\xff":
            raise SyntaxError("a JPEG marker was expected")
        marker = stream.read(1)
        while marker == b"\xff":  # fill bytes
            marker = stream.read(1)
        (length,) = struct.unpack(">H", stream.read(2))
        if marker == b"\xda":
            return stream.read(1)[0]
        stream.seek(length - 2, os.SEEK_CUR)


def _check_data(stream: IO[bytes], found: Format) -> None:
    """Check the pixel data (verify() leaves the file unusable), so truncation shows."""
    if found is PNG:
        _check_png_data(stream)
        return
    if found is GIF:
        # Only the first frame is decoded; a GIF cut off in a later frame lacks its trailer.
        stream.seek(-1, os.SEEK_END)
        if stream.read(1) != b";":
            raise ValueError("the GIF ends without its trailer")
    stream.seek(0)
    with Image.open(stream, formats=[found.pillow_name]) as image:
        if found is JPEG:
            # libjpeg still reads every byte but builds a 1/8-scale image: 1/64 of the memory.
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()


def _check_png_data(stream: IO[bytes]) -> None:
    """What decoding a PNG would find, without holding its pixels: the IDAT data inflate,
    without error, to at least every row of every pass, each row starting with a known filter
    byte. Like Pillow's decoder, nothing past the last row is inflated. (verify() has checked
    every chunk's CRC, and Pillow's open the header.)"""
    stream.seek(16)
    width, height, depth, colour_type, interlaced = struct.unpack(">IIBBxxB", stream.read(13))
    bits_per_pixel = depth * PNG_CHANNELS[colour_type]
    passes = ADAM7 if interlaced else ((0, 0, 1, 1),)
    inflated = _inflate(_idat_data(stream))
    piece = b""
    for first_column, first_row, column_step, row_step in passes:
        columns = -(-(width - first_column) // column_step) if width > first_column else 0
        rows = -(-(height - first_row) // row_step) if height > first_row else 0
        if not columns or not rows:
            continue  # an empty pass has no rows, not even filter bytes
        row_bytes = 1 + (columns * bits_per_pixel + 7) // 8
        remaining, position = row_bytes * rows, 0
        while remaining:
            piece = piece or next(inflated, b"")
            if not piece:
                raise EOFError("the PNG image data ends before its last row")
            taken, piece = piece[:remaining], piece[remaining:]
            filters = taken[-position % row_bytes :: row_bytes]
            if filters and max(filters) > PNG_LAST_FILTER:
                raise ValueError("a PNG row has an unknown filter")
            position += len(taken)
            remaining -= len(taken)


def _idat_data(stream: IO[bytes]) -> Iterator[bytes]:
    """The compressed image data: the first run of IDAT chunks, in pieces."""
    stream.seek(8)
    in_idat = False
    while len(header := stream.read(8)) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind != b"IDAT":
            if in_idat or kind == b"IEND":
                return
            stream.seek(length + 4, os.SEEK_CUR)
            continue
        in_idat = True
        while length and (data := stream.read(min(length, PNG_PIECE_BYTES))):
            length -= len(data)
            yield data
        stream.seek(4, os.SEEK_CUR)  # the CRC


def _inflate(compressed: Iterator[bytes]) -> Iterator[bytes]:
    """Inflated pieces of at most PNG_PIECE_BYTES, pulling compressed data only as needed."""
    inflater = zlib.decompressobj()
    for chunk in compressed:
        data = chunk
        while not inflater.eof:
            piece = inflater.decompress(data, PNG_PIECE_BYTES)
            if piece:
                yield piece
            data = inflater.unconsumed_tail
            if not data and len(piece) < PNG_PIECE_BYTES:
                break
        if inflater.eof:
            return


def _too_many_pixels(max_pixels: int) -> Rejected:
    return Rejected("too_many_pixels", 422, f"The image has more than {max_pixels} pixels.")


def _sha256(stream: IO[bytes]) -> str:
    stream.seek(0)
    digest = hashlib.sha256()
    while chunk := stream.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()
