"""Keeping a worker's memory flat under concurrent uploads.

Each upload briefly holds a few buffers of up to 1 MiB (the in-memory part of the spool, the
hashing reads, botocore's payload signing). glibc serves such blocks with mmap and gives them
back when freed, but it also raises its mmap threshold each time one is freed; from then on
they come from per-thread arenas that keep the memory. Measured under gunicorn: a worker
taking four 10 MB uploads at once grew 23 MiB and stayed there with the default, and 9 MiB,
back to idle afterwards, with a fixed threshold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
LARGE_BLOCK_BYTES = 256 * 1024


def return_large_blocks_to_the_system() -> None:
    """Fix glibc's mmap threshold, so blocks above it are always returned when freed."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        applied = libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    if applied != 1:
        log.warning("mallopt(M_MMAP_THRESHOLD) was refused")
