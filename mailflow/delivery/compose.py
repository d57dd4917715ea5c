"""Composing outbound messages: plain values in, RFC 5322 bytes out. Pure.

Every header value is stripped of CR, LF, NUL and other control characters before it reaches
`email`, so no caller-supplied text (a subject taken from an incoming report, a contact's
name) can add a header or end the header block. Addresses are parsed, not pasted.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from mailflow.delivery import mime
from mailflow.delivery.errors import InvalidOutbound

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MESSAGE_ID = re.compile(r"<?([^<>\s]{1,250})>?")
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*"
)
MAX_SUBJECT_CHARS = 250
MAX_REFERENCES = 20
MAX_FILENAME_CHARS = 200
_MEDIA_TYPE = re.compile(r"([a-z0-9][a-z0-9!#$&^_.+-]{0,63})/([a-z0-9][a-z0-9!#$&^_.+-]{0,63})")


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message (a decision's PDF). The name is cleaned like a header."""

    filename: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class OutboundMessage:
    """One message to one recipient, as plain values. No reporter data beyond the address.

    `in_reply_to` and `references` are Message-IDs with or without angle brackets; invalid
    ones are dropped. `extra_headers` is for headers a purpose needs (e.g. List-Unsubscribe
    for campaigns, see `list_headers`); their values are cleaned like every other header.
    """

    purpose: str
    to_address: str
    from_address: str
    subject: str
    text: str
    language: str = "en"
    html: str | None = None
    to_name: str = ""
    from_name: str = ""
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Identity:
    """What mailflow makes for each recipient: tokens and the Message-ID built from one."""

    message_id: str
    verp_token: str
    reply_token: str


def clean_header(value: str) -> str:
    """The value with control characters (CR, LF, NUL, TAB...) turned into single spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def is_plain_address(address: str) -> bool:
    """A bare ASCII addr-spec that SMTP without SMTPUTF8 can carry."""
    return _ADDRESS.fullmatch(address) is not None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


def new_identity(domain: str) -> Identity:
    """Fresh, unguessable tokens. Hex: some MTAs lower-case local parts on the way back."""
    reply_token = secrets.token_hex(16)
    return Identity(
        message_id=f"<mf.{reply_token}@{domain}>",
        verp_token=secrets.token_hex(16),
        reply_token=reply_token,
    )


def return_path(verp_token: str, bounce_domain: str) -> str:
    """The envelope sender: bounces come back to an address naming the delivery."""
    return f"bounces+{verp_token}@{bounce_domain}"


def message_id_token(value: str | None) -> str | None:
    """`<id>` from a Message-ID given with or without brackets; None if it is not one."""
    if not value:
        return None
    match = _MESSAGE_ID.fullmatch(clean_header(value))
    return f"<{match.group(1)}>" if match else None


def list_headers(
    list_id: str, unsubscribe: Sequence[str] = (), *, one_click: bool = False
) -> tuple[tuple[str, str], ...]:
    """List-Id (RFC 2919) and, for bulk mail, List-Unsubscribe (RFC 2369) with its RFC 8058
    one-click companion. `unsubscribe`: the https:// and mailto: URIs, best first; `one_click`
    only when an https URI is among them (RFC 8058 requires one)."""
    headers = [("List-Id", f"<{clean_header(list_id)}>")]
    uris = [clean_header(uri) for uri in unsubscribe if uri]
    if uris:
        # Angle brackets delimit the URIs: one inside a URI would end it early.
        if any(c in uri for uri in uris for c in "<>, "):
            raise InvalidOutbound("an unsubscribe URI may not contain <, >, comma or space")
        headers.append(("List-Unsubscribe", ", ".join(f"<{uri}>" for uri in uris)))
        if one_click and any(uri.startswith("https://") for uri in uris):
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return tuple(headers)


def render(message: OutboundMessage, identity: Identity, now: datetime) -> bytes:
    """The message as bytes to hand to the relay (CRLF line ends, 7-bit).

    Built directly (mime.py), not through `email.message.EmailMessage`: that was most of the
    cost of queuing a campaign. Each value is cleaned here, before it is encoded, so no
    caller-supplied text can add a header or end the header block."""
    head = [
        mime.header("From", _address(message.from_name, message.from_address)),
        mime.header("To", _address(message.to_name, message.to_address)),
    ]
    if message.reply_to:
        head.append(mime.header("Reply-To", _address("", message.reply_to)))
    subject = clean_header(message.subject)[:MAX_SUBJECT_CHARS]
    head.append(mime.header("Subject", mime.unstructured(subject)))
    head.append(f"Date: {format_datetime(now)}\r\nMessage-ID: {identity.message_id}\r\n".encode())
    head += _threading(message.in_reply_to, message.references)
    if message.auto_submitted:
        head.append(_unstructured("Auto-Submitted", message.auto_submitted))
    head += [_unstructured(_header_name(name), value) for name, value in message.extra_headers]
    head.append(b"MIME-Version: 1.0\r\n")
    head.append(_unstructured("Content-Language", message.language))
    return b"".join(head) + _body(message)


def _unstructured(name: str, value: str) -> bytes:
    return mime.header(name, mime.unstructured(clean_header(value)))


def _body(message: OutboundMessage) -> bytes:
    """The Content-* headers, blank line and body: text/plain alone, or in a
    multipart/alternative with the HTML, either of them first in a multipart/mixed with the
    attachments (the structure `EmailMessage.add_alternative`/`add_attachment` make)."""
    content = mime.text_part(message.text, "plain")
    if message.html is not None:
        html = mime.text_part(message.html, "html")
        head, body = mime.multipart("alternative", (content, html), mime.new_boundary())
        content = head + b"\r\n" + body
    if message.attachments:
        parts = [content, *(_attachment(a) for a in message.attachments)]
        head, body = mime.multipart("mixed", parts, mime.new_boundary())
        content = head + b"\r\n" + body
    return content


def _threading(in_reply_to: str | None, references: Sequence[str]) -> list[bytes]:
    """In-Reply-To and References (RFC 5322 3.6.4): the parent's references, then the parent.
    Non-ASCII Message-IDs (RFC 6532) are dropped: they cannot travel in a 7-bit header."""
    parent = _ascii_id(in_reply_to)
    chain = [token for ref in references if (token := _ascii_id(ref)) is not None]
    head = []
    if parent is not None:
        head.append(mime.header("In-Reply-To", [parent]))
        if parent not in chain:
            chain.append(parent)
    if chain:
        # Keep the thread's root and the most recent ones: long chains only grow headers.
        kept = chain if len(chain) <= MAX_REFERENCES else [chain[0], *chain[-MAX_REFERENCES:]]
        head.append(mime.header("References", kept))
    return head


def _ascii_id(value: str | None) -> str | None:
    token = message_id_token(value)
    return token if token is not None and token.isascii() else None


def _address(name: str, address: str) -> list[str]:
    spec = clean_header(address)
    if not is_plain_address(spec):
        raise InvalidOutbound(f"not a deliverable e-mail address: {spec[:80]!r}")
    return mime.address(clean_header(name), spec)


def _attachment(attachment: Attachment) -> bytes:
    match = _MEDIA_TYPE.fullmatch(attachment.media_type.strip().lower())
    maintype, subtype = match.groups() if match else ("application", "octet-stream")
    if maintype in ("multipart", "message"):  # containers, not files: send the bytes as such
        maintype, subtype = "application", "octet-stream"
    # The name becomes a header parameter: no control characters, no path.
    name = clean_header(attachment.filename).replace("/", "_").replace("\\", "_")
    return mime.attachment_part(
        name[-MAX_FILENAME_CHARS:] or "document", f"{maintype}/{subtype}", attachment.data
    )


def _header_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9-]{1,76}", name):
        raise InvalidOutbound(f"not a header name: {name[:80]!r}")
    return name
