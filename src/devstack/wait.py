"""Waiting for a condition instead of sleeping for a guess, and the process plumbing around it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


class WaitAborted(RuntimeError):
    """Raised by a condition that can never become true (the process it waits for exited)."""


def wait_until(
    condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"
) -> T:
    """Call ``condition`` until it returns something truthy.

    Exceptions count as 'not yet', except WaitAborted, which ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except WaitAborted:
            raise
        except Exception as exc:  # the condition is still settling
            last_error = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"timed out after {timeout}s waiting for {message} (last error: {last_error!r})"
            )
        time.sleep(interval)


def terminate(process, log, *, grace_seconds: float) -> None:
    """SIGTERM a child process, SIGKILL it if it outlives the grace period, close its log."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if log is not None:
        log.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
