"""What an uploaded file really is, decided from its bytes alone.

The client's Content-Type and file name are never consulted. The first bytes must carry the
signature of JPEG, PNG, GIF or WebP (anything else, SVG included, is unsupported); then
Pillow, restricted to that one format, reads the header, and the pixel count is checked
*before* any decoding so a small file declaring a huge image (a decompression bomb) costs
nothing. Only then is the image verified and decoded once, which finds truncated or corrupt
data.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

# Our own pixel check runs first and refuses; Pillow's warning would only repeat it.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

HASH_CHUNK_BYTES = 256 * 1024


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


def inspect(stream: IO[bytes], max_pixels: int) -> Inspected:
    """Check that ``stream`` (seekable) holds one acceptable image; raise Rejected if not."""
    stream.seek(0)
    found = sniff(stream.read(16))
    if found is None:
        raise Rejected("unsupported_type", 415, "Only JPEG, PNG, GIF and WebP images are accepted.")
    try:
        width, height = _verified_size(stream, found, max_pixels)
        _decode(stream, found)
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
        MemoryError,
    ) as exc:
        raise Rejected(
            "invalid_image", 400, f"The file is not a complete, valid {found.pillow_name} image ({exc})."
        ) from None
    return Inspected(format=found, width=width, height=height, sha256=_sha256(stream))


def _verified_size(stream: IO[bytes], found: Format, max_pixels: int) -> tuple[int, int]:
    stream.seek(0)
    with Image.open(stream, formats=[found.pillow_name]) as image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ValueError("the image has no pixels")
        if width * height > max_pixels:
            raise _too_many_pixels(max_pixels)
        # Structure and checksums, without decoding pixels.
        image.verify()
    return width, height


def _decode(stream: IO[bytes], found: Format) -> None:
    """Decode the image once (verify() leaves the file unusable), so truncation shows."""
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


def _too_many_pixels(max_pixels: int) -> Rejected:
    return Rejected("too_many_pixels", 422, f"The image has more than {max_pixels} pixels.")


def _sha256(stream: IO[bytes]) -> str:
    stream.seek(0)
    digest = hashlib.sha256()
    while chunk := stream.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()
