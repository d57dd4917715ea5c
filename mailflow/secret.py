"""Secrets that cannot leak by accident: their repr and str name the source, never the value."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from mailflow.errors import SecretError

COMMAND_TIMEOUT_SECONDS = 30


@dataclass(frozen=True, repr=False)
class Secret:
    """A password or token. ``source`` is safe to print ("env X", "file /p", "command")."""

    source: str
    _value: str | None = field(default=None, compare=False)
    command: tuple[str, ...] | None = field(default=None, compare=False)

    def reveal(self) -> str:
        """The value, running the command again each time (OAuth tokens expire)."""
        if self.command is None:
            return self._value or ""
        return _run(self.command, self.source)

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    __str__ = __repr__


def _run(command: tuple[str, ...], source: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - the operator configured this command
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SecretError(f"secret {source} could not run: {type(exc).__name__}") from None
    if done.returncode != 0:
        # stderr may echo the token on some tools; report only the exit status.
        raise SecretError(f"secret {source} exited with status {done.returncode}")
    value = done.stdout.strip()
    if not value:
        raise SecretError(f"secret {source} printed nothing")
    return value
