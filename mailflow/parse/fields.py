"""Header fields: RFC 2047 decoding, addresses, dates and message ids, cleaned for storage.

Values are read from the parsed message's raw header list, so an 8-bit header (which the
stdlib keeps as surrogate-escaped bytes) is decoded by our charset fallback rather than
replaced wholesale, and an encoded word that hides CR/LF cannot split a header.
"""

from __future__ import annotations

import email.header
import email.utils
import re
from datetime import UTC, datetime, tzinfo
from email.message import Message

from mailflow.parse.model import Address
from mailflow.parse.text import clean_line, decode_bytes

_MESSAGE_ID = re.compile(r"<([^<>\s]{1,990})>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
MAX_REFERENCES = 500


def raw_items(message: Message) -> list[tuple[str, str]]:
    """(name, undecoded value) pairs, in order, repeats kept."""
    # raw_items, unlike items(), leaves 8-bit bytes surrogate-escaped for our own decoding.
    return [(str(name), str(value)) for name, value in message.raw_items()]


def raw_value(message: Message, name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in raw_items(message) if k.lower() == wanted), None)


def decode_value(value: str, notes: list[str] | None = None) -> str:
    """Unfold, decode 8-bit bytes and RFC 2047 encoded words; one clean line."""
    unfolded = _FOLD.sub("", value)
    text = _from_8bit(unfolded, notes)
    if "=?" in text:
        text = _decode_words(text, notes)
    return clean_line(text)


def _from_8bit(value: str, notes: list[str] | None) -> str:
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        data = value.encode("utf-8", "surrogateescape")
        text, note = decode_bytes(data, None)
        if note and notes is not None:
            notes.append(f"raw 8-bit header: {note}")
        return text
    return value


def _decode_words(text: str, notes: list[str] | None) -> str:
    try:
        chunks = email.header.decode_header(text)
    except Exception:  # a broken encoded word is kept as written
        return text
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        if charset is None:
            # decode_header hands back unencoded runs as raw-unicode-escape bytes.
            out.append(chunk.decode("raw-unicode-escape", "replace"))
            continue
        decoded, note = decode_bytes(chunk, charset)
        if note and notes is not None:
            notes.append(f"encoded word: {note}")
        out.append(decoded)
    return "".join(out)


def addresses(value: str | None, notes: list[str] | None = None) -> tuple[Address, ...]:
    """Mailboxes of an address header; display names decoded after splitting, so an encoded
    comma or angle bracket in a name cannot forge a second address."""
    if value is None:
        return ()
    unfolded = _from_8bit(_FOLD.sub("", value), notes)
    try:
        pairs = email.utils.getaddresses([unfolded])
    except Exception:
        pairs = []
    found = tuple(
        Address(decode_value(name, notes), normal_email(mail))
        for name, mail in pairs
        if "@" in mail  # a bare word is a phrase that lost its address, not a mailbox
    )
    if found:
        return found
    # Keep what was written so a rule can still see it, with no usable address.
    text = decode_value(unfolded, notes)
    return (Address(text, ""),) if text else ()


def normal_email(mail: str) -> str:
    mail = clean_line(mail, 320).replace(" ", "")
    local, at, domain = mail.rpartition("@")
    return f"{local}@{domain.lower()}" if at else mail


def first_address(message: Message, name: str, notes: list[str]) -> Address | None:
    found = addresses(raw_value(message, name), notes)
    return found[0] if found else None


def parse_date(value: str | None, default_zone: tzinfo | None = UTC) -> datetime | None:
    """A tz-aware datetime, or None. A date without a zone ("-0000", or none at all) gets
    `default_zone`; None then means "give up"."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(clean_line(value))
    except Exception:  # any malformed date is simply unknown
        return None
    if parsed.tzinfo is None:
        if default_zone is None:
            return None
        parsed = parsed.replace(tzinfo=default_zone)
    return parsed


def message_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(clean_line(m, 998) for m in _MESSAGE_ID.findall(value)[:MAX_REFERENCES])


def message_id(value: str | None) -> str | None:
    """The id without angle brackets; a bracketless id is kept as written."""
    if value is None:
        return None
    found = message_ids(value)
    if found:
        return found[0]
    return clean_line(value, 998).strip("<>") or None
