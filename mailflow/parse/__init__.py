"""Pure MIME parsing: `parse_message(raw)` turns the bytes of one e-mail into a
`ParsedMessage` (decoded headers, human text split into new/quoted/signature, forwarded
messages, sniffed attachments with their text, bounce parts, defects)."""

from __future__ import annotations

from mailflow.parse.limits import ParseLimitExceeded, ParseLimits
from mailflow.parse.message import parse_message
from mailflow.parse.model import Address, Attachment, Forwarded, ParsedMessage

__all__ = [
    "Address",
    "Attachment",
    "Forwarded",
    "ParseLimitExceeded",
    "ParseLimits",
    "ParsedMessage",
    "parse_message",
]
