"""Queries behind `mailflow quarantine`: what is quarantined, and everything about one message.

Listing reads only the first bytes of each raw message (enough for its headers), so a
quarantine full of large attachments still lists quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, LargeBinary, func, select
from sqlalchemy.orm import Session

from mailflow.headers import basic_headers
from mailflow.store.models import Blob, Message, MessageSource

HEAD_BYTES = 16 * 1024


@dataclass(frozen=True)
class Quarantined:
    id: int
    received_at: datetime
    size: int
    error: str | None
    subject: str | None


@dataclass(frozen=True)
class Detail:
    """One message, its arrivals and the start of its raw bytes (detached: read-only)."""

    message: Message
    size: int
    sources: tuple[MessageSource, ...]
    head: bytes


def quarantined(session: Session) -> list[Quarantined]:
    """Every quarantined message, oldest first."""
    rows = session.execute(
        select(
            Message.id,
            Message.first_received_at,
            Blob.size,
            Message.error,
            Message.subject,
            _head(),
        )
        .join(Blob, Blob.sha256 == Message.sha256)
        .where(Message.status == "quarantined")
        .order_by(Message.id)
        # Fetched in slices, each head dropped once its subject is read: a quarantine of
        # thousands of messages never holds all their heads at once.
        .execution_options(yield_per=500)
    )
    return [
        # A failing stage rolls back what the stages wrote, the subject included: read it
        # from the raw headers instead.
        Quarantined(pk, received, size, error, subject or basic_headers(bytes(head)).subject)
        for pk, received, size, error, subject, head in rows
    ]


def quarantined_ids(session: Session) -> list[int]:
    query = select(Message.id).where(Message.status == "quarantined").order_by(Message.id)
    return list(session.scalars(query))


def status_of(session: Session, message_pk: int) -> str | None:
    return session.scalar(select(Message.status).where(Message.id == message_pk))


def detail(session: Session, message_pk: int) -> Detail | None:
    message = session.get(Message, message_pk)
    if message is None:
        return None
    size, head = session.execute(
        select(Blob.size, _head()).where(Blob.sha256 == message.sha256)
    ).one()
    sources = session.scalars(
        select(MessageSource)
        .where(MessageSource.message_pk == message_pk)
        .order_by(MessageSource.id)
    ).all()
    return Detail(message, size, tuple(sources), bytes(head))


def raw_bytes(session: Session, message_pk: int) -> bytes | None:
    data = session.scalar(
        select(Blob.data)
        .join(Message, Message.sha256 == Blob.sha256)
        .where(Message.id == message_pk)
    )
    return None if data is None else bytes(data)


def _head() -> ColumnElement[bytes]:
    # substr() counts bytes on a BLOB (SQLite) and on a bytea (PostgreSQL), from 1.
    return func.substr(Blob.data, 1, HEAD_BYTES, type_=LargeBinary)
