"""`parse_message`: raw bytes in, a `ParsedMessage` out, and only `MessageError` raised."""

from __future__ import annotations

import email.parser
import io
import logging
from email.message import Message
from email.policy import compat32

import mailparser

from mailflow.errors import MessageError
from mailflow.parse import fields
from mailflow.parse.forward import inline_forwards
from mailflow.parse.limits import ParseLimitExceeded, ParseLimits, check_size, check_structure
from mailflow.parse.mime import Tree, walk
from mailflow.parse.model import Address, ParsedMessage
from mailflow.parse.quotes import split_text
from mailflow.parse.text import bounded, clean_line

# mail-parser logs every part type it does not render and every header it cannot decode; we
# handle those parts ourselves and record what matters in `defects`.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)


def parse_message(raw: bytes, limits: ParseLimits = ParseLimits()) -> ParsedMessage:  # noqa: B008
    """Parse one raw message. Raises `ParseLimitExceeded` when a limit is exceeded and
    `MessageError` for anything the parsers cannot handle; never any other exception."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MessageError(f"MIME parsing failed: expected bytes, got {type(raw).__name__}")
    try:
        check_size(raw, limits)
        check_structure(raw, limits)
        return _build(_parse_tree(bytes(raw)), limits)
    except MessageError:
        raise
    except RecursionError:
        # check_structure should have refused this first; the interpreter stack is the backstop.
        raise ParseLimitExceeded(
            "max_depth", limits.max_depth, "nesting too deep for the interpreter"
        ) from None
    except Exception as exc:  # mail-parser and the stdlib let many kinds escape
        raise MessageError(f"MIME parsing failed: {type(exc).__name__}: {exc}") from None


def _parse_tree(raw: bytes) -> Message:
    """The stdlib tree, checked by mail-parser's own walk (which raises on what it cannot
    handle). We build the tree ourselves: `email.message_from_bytes`, which
    `mailparser.parse_from_bytes` uses, copies the whole message into a StringIO (four bytes
    a character), about 8x the message size at peak; reading through a TextIOWrapper stays
    near 3x. newline="" keeps CR bytes of binary parts as sent."""
    stream = io.TextIOWrapper(
        io.BytesIO(raw), encoding="ascii", errors="surrogateescape", newline=""
    )
    message = email.parser.Parser(policy=compat32).parse(stream)
    mailparser.MailParser(message)
    return message


def _build(message: Message, limits: ParseLimits) -> ParsedMessage:
    notes: list[str] = []
    tree = Tree(limits)
    walk(message, tree)
    text, from_html = tree.text()
    text = bounded(text, limits.max_text_chars, "text", notes)
    subject = fields.decode_value(fields.raw_value(message, "Subject") or "", notes)
    date = fields.parse_date(fields.raw_value(message, "Date"))
    forwards = inline_forwards(text, subject, date.tzinfo if date else None)
    split = split_text(text, subject)
    headers = _headers(message, notes)
    _duplicates(headers, notes)
    return ParsedMessage(
        message_id=fields.message_id(fields.raw_value(message, "Message-ID")),
        in_reply_to=fields.message_id(fields.raw_value(message, "In-Reply-To")),
        references=fields.message_ids(fields.raw_value(message, "References")),
        subject=subject,
        from_=fields.first_address(message, "From", notes),
        sender=fields.first_address(message, "Sender", notes),
        reply_to=fields.addresses(fields.raw_value(message, "Reply-To"), notes),
        to=_all_addresses(message, "To", notes),
        cc=_all_addresses(message, "Cc", notes),
        date=date,
        headers=headers,
        content_type=message.get_content_type().lower(),
        content_language=clean_line(fields.raw_value(message, "Content-Language") or ""),
        text=text,
        new_text=split.new_text,
        quoted_text=split.quoted_text,
        signature=split.signature,
        html_converted=from_html,
        forwarded=tuple(forwards) + tuple(tree.forwarded),
        attachments=tuple(tree.attachments),
        delivery_status="\n\n".join(tree.delivery_status),
        returned_headers="\n\n".join(tree.returned_headers),
        defects=tuple(tree.defects) + tuple(dict.fromkeys(notes)),
    )


def _headers(message: Message, notes: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (clean_line(name, 200).lower(), fields.decode_value(value, notes))
        for name, value in fields.raw_items(message)
    )


def _all_addresses(message: Message, name: str, notes: list[str]) -> tuple[Address, ...]:
    found: list[Address] = []
    for key, value in fields.raw_items(message):
        if key.lower() == name.lower():
            found.extend(fields.addresses(value, notes))
    return tuple(found)


def _duplicates(headers: tuple[tuple[str, str], ...], notes: list[str]) -> None:
    """RFC 5322 allows one of each; a second From or Subject is how spoofing often looks."""
    for name in ("from", "sender", "subject", "date", "message-id", "to", "cc", "reply-to"):
        count = sum(1 for key, _value in headers if key == name)
        if count > 1:
            notes.append(f"duplicate {name} header ({count}); the first is used")
