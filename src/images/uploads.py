"""Receiving an upload without ever holding it in memory whole.

The request body is refused up front when its declared length is too big. Otherwise the
multipart parser writes the file part into a spooled temporary file (memory for the first
MiB, then a file under /tmp) that counts what it is given and stops the request with a 413
the moment the part grows past the limit, so an undeclared or lying body is cut off too.
"""

from __future__ import annotations

import tempfile
from typing import IO

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge

SPOOL_IN_MEMORY_BYTES = 1024 * 1024
# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MAX_UPLOAD_CONFIG = "IMAGES_MAX_UPLOAD_BYTES"


class CountingSpooledFile(tempfile.SpooledTemporaryFile):
    """A spooled temporary file that refuses to grow past ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(max_size=SPOOL_IN_MEMORY_BYTES, mode="w+b", dir=tempfile.gettempdir())
        self.limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self.limit:
            raise RequestEntityTooLarge()
        return super().write(data)


class UploadRequest(Request):
    """Flask's request, with file parts received into CountingSpooledFile."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return CountingSpooledFile(limit=current_app.config[MAX_UPLOAD_CONFIG])


def request_body_limit(max_upload_bytes: int) -> int:
    """MAX_CONTENT_LENGTH for the app: the largest file plus its multipart framing."""
    return max_upload_bytes + MULTIPART_OVERHEAD_BYTES
