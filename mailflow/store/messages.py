"""Store raw messages and their provenance: the first, durable step of intake.

Keys: the sha256 of the bytes (the same bytes are one message however often they arrive) and,
for IMAP, (account, mailbox, UIDVALIDITY, UID), so fetching the same UID again is a no-op.
A different message reusing a Message-ID is a different row: Message-ID is indexed, not unique.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailflow.headers import basic_headers, clean_text
from mailflow.store.models import Blob, Message, MessageSource

Channel = Literal["imap", "smtp", "lmtp", "file"]


@dataclass(frozen=True)
class Arrival:
    """Where and how a message came in."""

    channel: Channel
    account: str | None = None
    mailbox: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    smtp_session: str | None = None
    smtp_peer: str | None = None
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] = ()
    path: str | None = None


@dataclass(frozen=True)
class Stored:
    message_pk: int
    sha256: str
    new: bool
    """False when these bytes were already stored (a repeat, or the same UID seen again)."""


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def store_raw(session: Session, raw: bytes, arrival: Arrival, now: datetime) -> Stored:
    """Add the message and its arrival to the session; the caller commits.

    Two writers storing the same new bytes at once make the second commit fail on the unique
    sha256; the caller retries in a new transaction and then takes the repeat path.
    """
    digest = sha256_of(raw)
    existing = session.scalar(select(Message).where(Message.sha256 == digest))
    if existing is not None:
        if not _seen_uid(session, arrival):
            # One UPDATE, not read-modify-write: concurrent repeats must not lose a count.
            session.execute(
                update(Message)
                .where(Message.id == existing.id)
                .values(times_received=Message.times_received + 1, last_received_at=now)
                .execution_options(synchronize_session=False)
            )
            session.add(_source(existing.id, arrival, now))
        return Stored(existing.id, digest, new=False)
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(raw), data=raw, created_at=now))
    message = Message(
        sha256=digest,
        message_id=basic_headers(raw).message_id,
        status="received",
        first_received_at=now,
        last_received_at=now,
        times_received=1,
    )
    session.add(message)
    session.flush()
    session.add(_source(message.id, arrival, now))
    return Stored(message.id, digest, new=True)


def _seen_uid(session: Session, arrival: Arrival) -> bool:
    if arrival.uid is None:
        return False
    found = session.scalar(
        select(MessageSource.id).where(
            MessageSource.account == arrival.account,
            MessageSource.mailbox == arrival.mailbox,
            MessageSource.uidvalidity == arrival.uidvalidity,
            MessageSource.uid == arrival.uid,
        )
    )
    return found is not None


def _source(message_pk: int, arrival: Arrival, now: datetime) -> MessageSource:
    return MessageSource(
        message_pk=message_pk,
        channel=arrival.channel,
        account=arrival.account,
        mailbox=arrival.mailbox,
        uidvalidity=arrival.uidvalidity,
        uid=arrival.uid,
        smtp_session=arrival.smtp_session,
        smtp_peer=arrival.smtp_peer,
        envelope_from=_clean_optional(arrival.envelope_from),
        envelope_to=json.dumps([clean_text(to, 320) for to in arrival.envelope_to])
        if arrival.envelope_to
        else None,
        path=arrival.path,
        received_at=now,
    )


def _clean_optional(text: str | None) -> str | None:
    return clean_text(text, 320) if text else None
