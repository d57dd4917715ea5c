"""What parsing learns from one raw message: plain values, no I/O.

These frozen dataclasses are the contract between parsing (``mailflow.parse``) and everything
after it (classification, linking, recording). Text fields are always ``str`` (never None), so
rules can search them without checks; an absent part is the empty string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox from an address header, decoded (RFC 2047) and cleaned of CR/LF/NUL."""

    name: str  # display name, "" when absent
    email: str  # lower-cased domain; "" when the header held no parseable address

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment (or inline non-text part). `content` is kept so the store can keep it
    content-addressed; its type is sniffed from the bytes, never trusted from the name."""

    position: int  # order in the MIME tree, from 0
    filename: str  # sanitised: no path, no control or bidi characters; "" when none
    original_filename: str  # as declared (decoded), for display and audit
    declared_type: str  # Content-Type the sender claimed, lower case
    sniffed_type: str  # from the magic bytes, e.g. "application/pdf"
    size: int
    sha256: str
    content: bytes = field(repr=False)
    text: str = ""  # text extracted (PDF, text/*), bounded; "" when none
    note: str = ""  # why text was not extracted, or what was refused (zip bomb, too large)


@dataclass(frozen=True, slots=True)
class Forwarded:
    """A message forwarded inside this one: an inline "Fwd:" block or a message/rfc822 part."""

    origin: str  # "inline" or "rfc822"
    from_: Address | None
    subject: str
    date: datetime | None
    text: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Everything later stages read about a message."""

    message_id: str | None  # without angle brackets
    in_reply_to: str | None  # without angle brackets
    references: tuple[str, ...]  # without angle brackets, oldest first
    subject: str
    from_: Address | None
    sender: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None  # time-zone aware; None when absent or unparseable
    # Every header, decoded and cleaned, names lower-cased, in order (repeats kept).
    headers: tuple[tuple[str, str], ...]
    content_type: str  # top-level, lower case, e.g. "multipart/report"
    content_language: str  # Content-Language header, "" when absent
    text: str  # the human text: text/plain, else the HTML converted to text
    new_text: str  # `text` without quoted history and signature
    quoted_text: str  # the quoted history ("> ..." lines, "On ... wrote:" blocks)
    signature: str  # after "-- " or a recognised sign-off block
    html_converted: bool  # True when `text` came from HTML
    forwarded: tuple[Forwarded, ...]
    attachments: tuple[Attachment, ...]
    # Bounce material, verbatim text: the message/delivery-status part and the returned
    # headers (text/rfc822-headers or the message/rfc822 returned with a DSN); "" when none.
    delivery_status: str
    returned_headers: str
    defects: tuple[str, ...]  # parser defects, e.g. "CloseBoundaryNotFoundDefect at /1"

    def header(self, name: str) -> str:
        """The first value of header `name` (case-insensitive), "" when absent."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), "")

    def header_all(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key == wanted)
