"""Store raw messages and their provenance: the first, durable step of intake.

Keys: the sha256 of the bytes (the same bytes are one message however often they arrive) and,
for IMAP, (account, mailbox, UIDVALIDITY, UID), so fetching the same UID again is a no-op; for
files, the path (see mailflow.backfill), so ingesting the same file again is a no-op too.
A different message reusing a Message-ID is a different row: Message-ID is indexed, not unique.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from mailflow.headers import clean_text, quick_message_id
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
    """Add one message and its arrival to the session's transaction; the caller commits."""
    [stored] = store_many(session, [(raw, arrival)], now)
    return stored


def store_many(
    session: Session, items: Sequence[tuple[bytes, Arrival]], now: datetime
) -> list[Stored]:
    """Add messages and their arrivals to the session's transaction; the caller commits.

    New messages are written with a few multi-row statements rather than one ORM flush each:
    durable intake must keep up with a mailbox of thousands of messages. Two writers storing
    the same new bytes at once make one commit fail on the unique sha256; the caller retries
    in a new transaction, which then takes the repeat path.
    """
    digests = [sha256_of(raw) for raw, _ in items]
    known: dict[str, int] = {
        digest: pk
        for digest, pk in session.execute(
            select(Message.sha256, Message.id).where(Message.sha256.in_(set(digests)))
        )
    }
    first: dict[str, int] = {}  # digest -> index of its first new occurrence in this batch
    for index, digest in enumerate(digests):
        if digest not in known and digest not in first:
            first[digest] = index
    known.update(_insert_new(session, [(items[i][0], digests[i]) for i in first.values()], now))
    fresh = [(index, items[index][1]) for index in first.values()]
    if fresh:
        session.execute(
            insert(MessageSource),
            [_source(known[digests[i]], arrival, now) for i, arrival in fresh],
        )
    # Repeats after the new arrivals are written, so the same UID or file twice in one batch
    # is recognised as already seen.
    for index, (_, arrival) in enumerate(items):
        if first.get(digests[index]) != index:
            _repeat(session, known[digests[index]], arrival, now)
    return [
        Stored(known[digest], digest, new=first.get(digest) == index)
        for index, digest in enumerate(digests)
    ]


def _insert_new(session: Session, new: list[tuple[bytes, str]], now: datetime) -> dict[str, int]:
    if not new:
        return {}
    digests = [digest for _, digest in new]
    # An attachment or decision document may already hold these bytes.
    present = set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(digests))))
    blobs = [
        {"sha256": digest, "size": len(raw), "data": raw, "created_at": now}
        for raw, digest in new
        if digest not in present
    ]
    if blobs:
        session.execute(insert(Blob), blobs)
    rows = [
        {
            "sha256": digest,
            "message_id": quick_message_id(raw),
            "status": "received",
            "first_received_at": now,
            "last_received_at": now,
            "times_received": 1,
        }
        for raw, digest in new
    ]
    created = session.execute(insert(Message).returning(Message.sha256, Message.id), rows)
    return {digest: pk for digest, pk in created}


def _repeat(session: Session, message_pk: int, arrival: Arrival, now: datetime) -> None:
    """The same bytes again: count the arrival, unless it is the same UID or file again."""
    if _seen_uid(session, arrival) or _seen_path(session, arrival, message_pk):
        return
    # One UPDATE, not read-modify-write: concurrent repeats must not lose a count.
    session.execute(
        update(Message)
        .where(Message.id == message_pk)
        .values(times_received=Message.times_received + 1, last_received_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(insert(MessageSource), [_source(message_pk, arrival, now)])


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


def _seen_path(session: Session, arrival: Arrival, message_pk: int) -> bool:
    """These bytes were already ingested from this file (a backfill run again).

    Keyed on the message too: a file whose content changed is a different arrival.
    """
    if arrival.channel != "file" or arrival.path is None:
        return False
    found = session.scalar(
        select(MessageSource.id)
        .where(
            MessageSource.message_pk == message_pk,
            MessageSource.channel == "file",
            MessageSource.path == arrival.path,
        )
        .limit(1)
    )
    return found is not None


def _source(message_pk: int, arrival: Arrival, now: datetime) -> dict[str, Any]:
    return {
        "message_pk": message_pk,
        "channel": arrival.channel,
        "account": arrival.account,
        "mailbox": arrival.mailbox,
        "uidvalidity": arrival.uidvalidity,
        "uid": arrival.uid,
        "smtp_session": arrival.smtp_session,
        "smtp_peer": arrival.smtp_peer,
        "envelope_from": _clean_optional(arrival.envelope_from),
        "envelope_to": json.dumps([clean_text(to, 320) for to in arrival.envelope_to])
        if arrival.envelope_to
        else None,
        "path": arrival.path,
        "received_at": now,
    }


def _clean_optional(text: str | None) -> str | None:
    return clean_text(text, 320) if text else None
