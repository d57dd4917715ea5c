"""Loopback ports and polling helpers shared by the test servers."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0). Another process could still take it before our server
    binds, so the servers retry start-up with a fresh port when they hit "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
) -> bool:
    """Poll ``predicate`` until it returns True or ``timeout`` seconds pass; return the outcome.

    Tests should poll for the state they expect instead of sleeping a fixed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def greets(host: str, port: int, prefix: bytes, *, timeout: float = 1.0) -> bool:
    """True if a TCP connection to host:port succeeds and the server's first bytes match ``prefix``.

    A greeting is a stronger readiness signal than an accepted connection: it proves the process
    behind the listening socket is actually serving.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(len(prefix)).startswith(prefix)
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages ('' if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
