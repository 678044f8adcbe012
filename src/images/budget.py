"""A per-process bound on the memory that image decodes hold at once.

Checking an upload decodes it, and a decode's memory follows the image's pixel count, not
its file size: a 1.5 KB WebP of 6300x6300 takes 610 MiB. Each decode first reserves what it
will take (inspection.decode_cost) from this budget; while the budget is spent, it waits a
little for others to finish, then gives up with DecodeBusy (a 503 the client may retry).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class DecodeBusy(Exception):
    """The decode budget stayed spent for the whole wait."""


class DecodeBudget:
    def __init__(self, limit_bytes: int, wait_seconds: float) -> None:
        self.limit_bytes = limit_bytes
        self.wait_seconds = wait_seconds
        self.reserved_bytes = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` (at most the whole budget) for the duration of the block."""
        if nbytes > self.limit_bytes:
            raise ValueError(f"{nbytes} bytes is more than the whole budget")
        with self._changed:
            if not self._changed.wait_for(
                lambda: self.reserved_bytes + nbytes <= self.limit_bytes, timeout=self.wait_seconds
            ):
                raise DecodeBusy()
            self.reserved_bytes += nbytes
        try:
            yield
        finally:
            with self._changed:
                self.reserved_bytes -= nbytes
                self._changed.notify_all()
