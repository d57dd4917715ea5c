"""Real servers for the test suite: Dovecot (IMAP), an aiosmtpd sink (SMTP) and PostgreSQL.

Each server runs on loopback, on a free port, from a temporary configuration; the pytest
fixtures that start them live in ``tests/conftest.py``. Test modules import helpers from here as
``from . import require`` (pytest puts ``tests/`` on ``sys.path`` because it has no
``__init__.py``).

The server modules never skip or fail a test themselves: they report a missing binary by
returning None from their ``find_*`` function and raise :class:`ServerStartError` when a server
does not come up; the fixtures decide whether that is a skip or (under CI) a failure.
"""

from __future__ import annotations

import os

import pytest

from .ports import free_port

__all__ = ["ServerStartError", "free_port", "in_ci", "require"]

_TRUTHY = frozenset({"true", "1", "yes"})


class ServerStartError(RuntimeError):
    """A test server could not be started; the message carries the tail of its log."""


def in_ci() -> bool:
    """True when running under CI (``CI=true``, as GitHub Actions and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


def require(condition: bool, reason: str) -> None:
    """Skip the current test unless ``condition`` holds; under CI, fail it instead.

    A developer without Dovecot or PostgreSQL still gets a useful local run, but CI must never
    turn a missing server into a green build.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI=true: integration prerequisites are mandatory)", pytrace=False)
    pytest.skip(reason)
