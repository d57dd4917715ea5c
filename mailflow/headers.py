"""Cheap, total extraction of the few headers intake needs before full parsing.

Pure and never raises: the input is whatever arrived on the wire, including malformed MIME,
8-bit garbage, NUL bytes and lone surrogates. Text is made safe for every database column type
(PostgreSQL ``text`` rejects NUL).
"""

from __future__ import annotations

import email.header
import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

MAX_HEADER_CHARS = 998 * 4
MAX_HEADER_BLOCK = 256 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,990}>")


@dataclass(frozen=True)
class BasicHeaders:
    message_id: str | None
    subject: str | None
    from_address: str | None
    date: datetime | None


def clean_text(text: str, limit: int = MAX_HEADER_CHARS) -> str:
    """Drop control characters and lone surrogates; cap the length."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", text)[:limit].strip()


def header_block(raw: bytes) -> bytes:
    """The bytes up to the first empty line: the parser need not walk a 30 MB body."""
    end = raw.find(b"\r\n\r\n")
    bare = raw.find(b"\n\n", 0, end if end >= 0 else len(raw))  # a bare-LF message
    end = bare if bare >= 0 else end if end >= 0 else len(raw)
    return raw[: min(end, MAX_HEADER_BLOCK)]


_MESSAGE_ID_FIELD = re.compile(
    rb"^message-id[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE
)


def quick_message_id(raw: bytes) -> str | None:
    """The Message-ID alone, without a full header parse: intake's hot path needs only this."""
    found = _MESSAGE_ID_FIELD.search(header_block(raw))
    if found is None:
        return None
    value = re.sub(rb"\r?\n[ \t]", b" ", found.group(1)).decode("utf-8", "replace")
    return _message_id(value)


def basic_headers(raw: bytes) -> BasicHeaders:
    try:
        message = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))
    except Exception:
        return BasicHeaders(None, None, None, None)
    return BasicHeaders(
        message_id=message_id_of(message),
        subject=_decoded(message, "Subject"),
        from_address=_address(message),
        date=_date(message),
    )


def message_id_of(message: Message) -> str | None:
    value = _raw_value(message, "Message-ID")
    return None if value is None else _message_id(value)


def _message_id(value: str) -> str | None:
    """The <...> token of a Message-ID field (else the whole value), clean and capped."""
    match = _MESSAGE_ID.search(value)
    text = clean_text(match.group(0) if match else value, 998)
    # Indexed column: cap by bytes too (PostgreSQL btree entries must stay well under 2.7 KB).
    return text.encode("utf-8")[:998].decode("utf-8", "ignore") or None


def _raw_value(message: Message, name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    return clean_text(str(value))


def _decoded(message: Message, name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    try:
        text = str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:
        text = str(value)
    return clean_text(text) or None


def _address(message: Message) -> str | None:
    value = _raw_value(message, "From")
    if not value:
        return None
    try:
        _name, address = email.utils.parseaddr(value)
    except Exception:
        return None
    return clean_text(address.lower(), 320) or None


def _date(message: Message) -> datetime | None:
    value = _raw_value(message, "Date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000" means the zone is unknown; UTC is the least wrong reading.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
