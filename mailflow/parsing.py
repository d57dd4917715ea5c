"""MIME parsing stage (mail-parser).

For now this stage only proves the message parses: a message mail-parser cannot handle
(malformed MIME, hostile nesting) is quarantined with the reason instead of failing later.
The understanding work (issue #4) records what the parse finds: text, attachments, defects.
"""

from __future__ import annotations

from collections.abc import Callable

import mailparser
from sqlalchemy.orm import Session

from mailflow.errors import MessageError
from mailflow.store.models import Message


def parse_mime(raw: bytes) -> Callable[[Session, Message], None]:
    try:
        mailparser.parse_from_bytes(raw)
    except Exception as exc:
        # mail-parser lets stdlib ValueError/TypeError/RecursionError escape on malformed MIME.
        raise MessageError(f"MIME parsing failed: {type(exc).__name__}: {exc}") from None
    return _nothing_to_record


def _nothing_to_record(session: Session, message: Message) -> None:
    """Issue #4 records the parse's findings (text, attachments, defects) here."""
