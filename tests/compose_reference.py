"""The outbound composer as it was built on `email.message.EmailMessage`: the reference the
direct composer (mailflow/delivery/compose.py, mime.py) is compared with in test_mime.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from mailflow.delivery.compose import (
    MAX_FILENAME_CHARS,
    MAX_REFERENCES,
    MAX_SUBJECT_CHARS,
    Attachment,
    Identity,
    OutboundMessage,
    clean_header,
    message_id_token,
)

POLICY = policy.SMTP.clone(cte_type="7bit")


def render_reference(message: OutboundMessage, identity: Identity, now: datetime) -> bytes:
    mail = EmailMessage(policy=POLICY)
    mail["From"] = _address(message.from_name, message.from_address)
    mail["To"] = _address(message.to_name, message.to_address)
    if message.reply_to:
        mail["Reply-To"] = _address("", message.reply_to)
    mail["Subject"] = clean_header(message.subject)[:MAX_SUBJECT_CHARS]
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = identity.message_id
    _threading(mail, message.in_reply_to, message.references)
    if message.auto_submitted:
        mail["Auto-Submitted"] = clean_header(message.auto_submitted)
    for name, value in message.extra_headers:
        mail[name] = clean_header(value)
    mail.set_content(message.text, subtype="plain", charset="utf-8")
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html", charset="utf-8")
    for attachment in message.attachments:
        _attach(mail, attachment)
    mail["Content-Language"] = clean_header(message.language)
    return mail.as_bytes(policy=POLICY)


def _threading(mail: EmailMessage, in_reply_to: str | None, references: Sequence[str]) -> None:
    parent = message_id_token(in_reply_to)
    chain = [token for ref in references if (token := message_id_token(ref)) is not None]
    if parent is not None:
        mail["In-Reply-To"] = parent
        if parent not in chain:
            chain.append(parent)
    if chain:
        kept = chain if len(chain) <= MAX_REFERENCES else [chain[0], *chain[-MAX_REFERENCES:]]
        mail["References"] = " ".join(kept)


def _address(name: str, address: str) -> Address:
    local, _, domain = clean_header(address).rpartition("@")
    return Address(display_name=clean_header(name), username=local, domain=domain)


def _attach(mail: EmailMessage, attachment: Attachment) -> None:
    maintype, _, subtype = attachment.media_type.partition("/")
    if maintype in ("multipart", "message"):
        maintype, subtype = "application", "octet-stream"
    name = clean_header(attachment.filename).replace("/", "_").replace("\\", "_")
    mail.add_attachment(
        attachment.data,
        maintype=maintype,
        subtype=subtype,
        filename=name[-MAX_FILENAME_CHARS:] or "document",
    )
