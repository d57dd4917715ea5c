"""Processing stages: what intake learns from a stored message, and how it is recorded.

A stage is split in two on purpose. ``stage(raw)`` is pure and may be slow (MIME parsing,
classification): it runs outside any database transaction, so parsing never holds a lock. It
returns a ``Record``, which writes its findings onto the message row inside the short
transaction that also marks the message processed.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from mailflow.headers import basic_headers
from mailflow.parsing import parse_mime
from mailflow.store.models import Message

Record = Callable[[Session, Message], None]
Stage = Callable[[bytes], Record]


def record_headers(raw: bytes) -> Record:
    """The headers triage needs to list a message. Total: never raises."""
    headers = basic_headers(raw)

    def record(session: Session, message: Message) -> None:
        message.subject = headers.subject
        message.from_address = headers.from_address
        message.date = headers.date

    return record


DEFAULT_STAGES: tuple[Stage, ...] = (record_headers, parse_mime)
