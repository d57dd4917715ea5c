"""The delivery ledger: one `deliveries` row per recipient, written before any SMTP transaction.

Every function here works inside the caller's transaction; the worker (worker.py) decides
where transactions begin and end, because the order of commits is what makes sending safe:
the row is `sending` and committed before the relay is contacted, and its outcome is
committed after.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailflow.delivery.compose import OutboundMessage, domain_of, new_identity, render
from mailflow.delivery.errors import SendRefused
from mailflow.store.models import Blob, Delivery, Suppression, normalise_email

# How long a claimed row belongs to the worker that claimed it. A row still `sending` after
# this was abandoned (the worker crashed or lost the database mid-send) and is claimed again:
# one SMTP transaction takes seconds, and smtplib times out each command after 30 s.
SENDING_LEASE = timedelta(minutes=10)
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Claimed:
    """A row this worker now owns (committed as `sending`) and the bytes to send."""

    id: int
    to_address: str
    verp_token: str
    raw: bytes
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class Skipped:
    """A due row that was not sent: its address is suppressed, or it has no message."""

    id: int
    state: str


def enqueue(
    session: Session,
    message: OutboundMessage,
    *,
    now: datetime,
    in_reply_to_message_pk: int | None = None,
    campaign_id: int | None = None,
    contact_id: int | None = None,
) -> Delivery:
    """Queue one message for one recipient: the ledger row and its rendered bytes.

    Adds to the caller's transaction (nothing is sent until it commits and the worker runs).
    The row is `pending` and due now, or `suppressed` if the address is on the suppression
    list. Raises InvalidOutbound for an address or header that cannot be composed.
    """
    identity = new_identity(domain_of(message.from_address))
    raw = render(message, identity, now)
    to_address = normalise_email(message.to_address)
    suppressed = session.get(Suppression, to_address) is not None
    row = Delivery(
        campaign_id=campaign_id,
        contact_id=contact_id,
        in_reply_to_message_pk=in_reply_to_message_pk,
        purpose=message.purpose,
        to_address=to_address,
        language=message.language,
        message_id=identity.message_id,
        verp_token=identity.verp_token,
        reply_token=identity.reply_token,
        state="suppressed" if suppressed else "pending",
        attempts=0,
        next_attempt_at=None if suppressed else now,
        created_at=now,
        updated_at=now,
        body_sha256=_store_blob(session, raw, now),
    )
    session.add(row)
    session.flush()
    return row


def _store_blob(session: Session, raw: bytes, now: datetime) -> str:
    # The bytes hold a fresh Message-ID, so two writers never race to insert the same blob.
    digest = hashlib.sha256(raw).hexdigest()
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(raw), data=raw, created_at=now))
    return digest


def claim_next(session: Session, now: datetime) -> Claimed | Skipped | None:
    """Take the oldest due row: `pending` and due, or `sending` with an expired lease.

    On PostgreSQL, FOR UPDATE SKIP LOCKED lets concurrent workers each take a different row
    without waiting for one another; SQLite has no row locks, but mailflow's engines BEGIN
    IMMEDIATE, so claims run one at a time there. The caller commits before sending.
    """
    due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)
    row = session.scalars(
        select(Delivery)
        .where(Delivery.state.in_(("pending", "sending")), due)
        .order_by(Delivery.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    if row.body_sha256 is None or session.get(Suppression, row.to_address) is not None:
        row.state = "failed" if row.body_sha256 is None else "suppressed"
        row.last_error = "no message body" if row.body_sha256 is None else row.last_error
        row.next_attempt_at = None
        row.updated_at = now
        return Skipped(row.id, row.state)
    blob = session.get_one(Blob, row.body_sha256)
    row.state = "sending"
    row.attempts += 1  # counted at claim: a crash mid-send is an attempt too
    row.next_attempt_at = now + SENDING_LEASE
    row.updated_at = now
    return Claimed(row.id, row.to_address, row.verp_token, blob.data, row.attempts, row.created_at)


def record_sent(session: Session, delivery_id: int, response: str, now: datetime) -> None:
    row = session.get_one(Delivery, delivery_id)
    row.state = "sent"
    row.sent_at = now
    row.smtp_response = response[:MAX_ERROR_CHARS]
    row.last_error = None
    row.next_attempt_at = None
    row.updated_at = now


def record_refused(session: Session, delivery_id: int, refusal: SendRefused, now: datetime) -> None:
    """A permanent refusal: failed, and a refused recipient is never mailed again."""
    row = session.get_one(Delivery, delivery_id)
    row.state = "failed"
    row.smtp_response = f"{refusal.code} at {refusal.stage.upper()}"
    row.last_error = str(refusal)[:MAX_ERROR_CHARS]
    row.next_attempt_at = None
    row.updated_at = now
    if refusal.about_recipient:
        suppress(session, row.to_address, "hard_bounce", str(refusal), now)


def record_retry(
    session: Session, delivery_id: int, error: str, now: datetime, retry_at: datetime | None
) -> None:
    """A temporary failure: due again at `retry_at`, or failed when that is None (given up)."""
    row = session.get_one(Delivery, delivery_id)
    row.state = "pending" if retry_at is not None else "failed"
    row.last_error = error[:MAX_ERROR_CHARS]
    row.next_attempt_at = retry_at
    row.updated_at = now


def suppress(session: Session, address: str, reason: str, detail: str, now: datetime) -> None:
    """Add an address to the suppression list; an existing entry (any reason) is kept."""
    values = {
        "email": normalise_email(address),
        "reason": reason,
        "created_at": now,
        "detail": detail[:MAX_ERROR_CHARS],
    }
    # INSERT ... ON CONFLICT DO NOTHING: two workers may suppress the same address at once.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(Suppression).values(values).on_conflict_do_nothing())


def last_queued_at(session: Session, address: str, purpose: str) -> datetime | None:
    """When a message of `purpose` was last queued for `address` (any state), if ever."""
    return session.scalar(
        select(Delivery.created_at)
        .where(Delivery.to_address == normalise_email(address), Delivery.purpose == purpose)
        .order_by(Delivery.created_at.desc())
        .limit(1)
    )
