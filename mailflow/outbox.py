"""Local Maildir outbox: where outbound mail goes while no SMTP relay is configured.

A Maildir is written with the tmp/ then rename-into-new/ protocol, so a reader (a person with
mutt, or a later relay hand-off) never sees half a message, and a crash leaves at most a stray
file in tmp/.
"""

from __future__ import annotations

import mailbox
from pathlib import Path

from mailflow.errors import MailflowError


class MaildirOutbox:
    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> None:
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise MailflowError(
                f"cannot create the outbox Maildir {self.path}: {exc.strerror}",
                hint="set outbound.maildir to a writable directory",
            ) from None

    def deliver(self, raw: bytes) -> str:
        """Write one message; returns its Maildir key."""
        self.ensure()
        try:
            return mailbox.Maildir(self.path, create=False).add(raw)
        except OSError as exc:
            raise MailflowError(f"cannot write to the outbox {self.path}: {exc.strerror}") from None

    def count(self) -> int:
        if not (self.path / "new").is_dir():
            return 0
        return len(mailbox.Maildir(self.path, create=False))
