"""Secrets that cannot leak by accident: their repr and str name the source, never the value."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mailflow.errors import SecretError

COMMAND_TIMEOUT_SECONDS = 30


@dataclass(frozen=True, repr=False)
class Secret:
    """A password or token. ``source`` is safe to print ("env X", "file /p", "command").

    A secret from a command or a file is fetched again at every ``reveal()``: OAuth2 access tokens
    expire within the hour, and the tool that refreshes them rewrites the file or prints a new
    one while the service keeps running.
    """

    source: str
    _value: str | None = field(default=None, compare=False)
    command: tuple[str, ...] | None = field(default=None, compare=False)
    path: Path | None = field(default=None, compare=False)

    def reveal(self) -> str:
        """The value, running the command or reading the file again each time."""
        if self.command is not None:
            return _run(self.command, self.source)
        if self.path is not None:
            return read_secret_file(self.path)
        return self._value or ""

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    __str__ = __repr__


def read_secret_file(path: Path) -> str:
    """The file's content without surrounding whitespace; SecretError if unreadable or empty."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(
            f"cannot read {path}: {exc.strerror}", hint="check that it exists and its permissions"
        ) from None
    except UnicodeDecodeError:
        # The exception's text quotes the offending bytes: part of the secret.
        raise SecretError(f"{path} is not UTF-8 text") from None
    if not value:
        raise SecretError(f"{path} is empty")
    return value


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
