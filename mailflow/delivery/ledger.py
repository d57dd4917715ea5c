"""The delivery ledger: one `deliveries` row per recipient, written before any SMTP transaction.

Every function here works inside the caller's transaction; the worker (worker.py) decides
where transactions begin and end, because the order of commits is what makes sending safe:
the row is `sending` and committed before the relay is contacted, and its outcome is
committed after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailflow.delivery.compose import OutboundMessage, domain_of, new_identity, render
from mailflow.delivery.errors import SendRefused
from mailflow.store.models import Blob, Campaign, Delivery, Suppression, normalise_email
from mailflow.store.models_outreach import ACTIVE_SQL

# How long a claimed row belongs to the worker that claimed it. A row still `sending` after
# this was abandoned (the worker crashed or lost the database mid-send) and is claimed again:
# one SMTP transaction takes seconds, and smtplib times out each command after 30 s.
SENDING_LEASE = timedelta(minutes=10)
MAX_ERROR_CHARS = 2000


_TABLE_NAME = Delivery.__tablename__
# Literal text, not bound parameters, so that the planners use the partial indexes (see
# models_outreach.ACTIVE_SQL): SQLite matches an index's WHERE against the query's text.
_ACTIVE = text(f"{_TABLE_NAME}.{ACTIVE_SQL}")
_TABLE = Delivery.__table__
_BLOBS = Blob.__table__
assert isinstance(_TABLE, Table)
assert isinstance(_BLOBS, Table)
_INSERT_BLOBS, _INSERT_DELIVERIES = _BLOBS.insert(), _TABLE.insert()  # enqueue_many's
# Built once, in Core: it runs for every message sent, and building the statement (and its
# cache key) or the ORM's per-row bookkeeping each time would cost more than executing it.
_MARK_SENT = (
    _TABLE.update()
    .where(_TABLE.c.id == bindparam("b_id"))
    .values(
        state="sent",
        sent_at=bindparam("b_at"),
        smtp_response=bindparam("b_response"),
        last_error=None,
        next_attempt_at=None,
        updated_at=bindparam("b_at"),
    )
)


@dataclass(frozen=True)
class Claimed:
    """A row this worker now owns (committed as `sending`) and the bytes to send."""

    id: int
    to_address: str
    verp_token: str
    raw: bytes
    attempts: int
    created_at: datetime
    lease_until: datetime  # after this, another worker may take the row: do not send it


@dataclass(frozen=True)
class Sent:
    """The relay accepted the message."""

    delivery_id: int
    response: str
    at: datetime


@dataclass(frozen=True)
class Refused:
    """A permanent refusal (5xx)."""

    delivery_id: int
    refusal: SendRefused
    at: datetime


@dataclass(frozen=True)
class Retry:
    """A temporary failure: due again at `retry_at`, or given up (failed) when that is None."""

    delivery_id: int
    error: str
    at: datetime
    retry_at: datetime | None


Outcome = Sent | Refused | Retry


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
    to_address = normalise_email(message.to_address)
    suppressed = session.get(Suppression, to_address) is not None
    blob, values = _prepared(message, now, suppressed=suppressed)
    session.add(Blob(**blob))
    row = Delivery(
        **values,
        campaign_id=campaign_id,
        contact_id=contact_id,
        in_reply_to_message_pk=in_reply_to_message_pk,
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class Queued:
    """One message of a batch for `enqueue_many`, with what its ledger row records."""

    message: OutboundMessage
    contact_id: int | None = None
    unsubscribe_token: str | None = None
    round: int = 0


def enqueue_many(
    session: Session, items: Sequence[Queued], *, now: datetime, campaign_id: int | None = None
) -> None:
    """Queue a batch (a campaign's `batch_size`) as `enqueue` queues each message, in the
    caller's transaction, but with one suppression query and two multi-row INSERTs (blobs,
    then deliveries) for the batch: an ORM flush per row was a quarter of a campaign's
    enqueue. Raises InvalidOutbound as `enqueue` does, before anything is written."""
    if not items:
        return
    addresses = {normalise_email(item.message.to_address) for item in items}
    held = set(session.scalars(select(Suppression.email).where(Suppression.email.in_(addresses))))
    blobs, rows = [], []
    for item in items:
        suppressed = normalise_email(item.message.to_address) in held
        blob, values = _prepared(item.message, now, suppressed=suppressed)
        blobs.append(blob)
        rows.append(
            values
            | {
                "campaign_id": campaign_id,
                "contact_id": item.contact_id,
                "in_reply_to_message_pk": None,
                "unsubscribe_token": item.unsubscribe_token,
                "round": item.round,
            }
        )
    session.execute(_INSERT_BLOBS, blobs)
    session.execute(_INSERT_DELIVERIES, rows)


def _prepared(
    message: OutboundMessage, now: datetime, *, suppressed: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The blob's and the ledger row's values for one message, rendered with fresh tokens.
    No lookup of the blob first: the bytes hold a fresh random Message-ID, so they are never
    stored already, and two writers never race to insert the same blob."""
    identity = new_identity(domain_of(message.from_address))
    raw = render(message, identity, now)
    digest = hashlib.sha256(raw).hexdigest()
    blob = {"sha256": digest, "size": len(raw), "data": raw, "created_at": now}
    values = {
        "purpose": message.purpose,
        "to_address": normalise_email(message.to_address),
        "language": message.language,
        "message_id": identity.message_id,
        "verp_token": identity.verp_token,
        "reply_token": identity.reply_token,
        "state": "suppressed" if suppressed else "pending",
        "attempts": 0,
        "next_attempt_at": None if suppressed else now,
        "created_at": now,
        "updated_at": now,
        "body_sha256": digest,
    }
    return blob, values


def claimable(now: datetime) -> ColumnElement[bool]:
    """The one condition for a row a worker may take: `pending` and due, or `sending` with an
    expired lease. Every claim goes through here, so a filter added here (e.g. rows of a
    paused campaign) holds for every worker."""
    due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)
    return and_(_ACTIVE, due, ~_held_by_campaign())


# -- campaigns (#5): rows of a paused or cancelled campaign wait; `resume` releases them ------
HELD_CAMPAIGN_STATUSES = ("paused", "cancelled")


def _held_by_campaign() -> ColumnElement[bool]:
    held = select(Campaign.id).where(
        Campaign.id == Delivery.campaign_id, Campaign.status.in_(HELD_CAMPAIGN_STATUSES)
    )
    return held.exists()


# -- end of campaigns (#5) ----------------------------------------------------------------------


def claim_due(
    session: Session, now: datetime, limit: int, lease: timedelta = SENDING_LEASE
) -> list[Claimed | Skipped]:
    """Take up to `limit` of the oldest claimable rows: `sending`, attempts + 1, leased.

    On PostgreSQL, FOR UPDATE SKIP LOCKED lets concurrent workers each take different rows
    without waiting for one another; SQLite has no row locks, but mailflow's engines BEGIN
    IMMEDIATE, so claims run one at a time there. The caller commits before sending. Rows
    of suppressed addresses and rows without a message are settled here, never sent.
    """
    found = session.execute(
        select(Delivery.id, Delivery.body_sha256, Suppression.email)
        .outerjoin(Suppression, Suppression.email == Delivery.to_address)
        .where(claimable(now))
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(of=Delivery, skip_locked=True)
    ).all()
    skipped = [
        _settle(session, row.id, row.body_sha256 is None, now)
        for row in found
        if row.body_sha256 is None or row.email is not None
    ]
    ids = [row.id for row in found if row.body_sha256 is not None and row.email is None]
    if not ids:
        return list(skipped)
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        # Counted at claim: a crash mid-send is an attempt too (release() gives it back).
        .values(
            state="sending",
            attempts=Delivery.attempts + 1,
            next_attempt_at=now + lease,
            updated_at=now,
        )
    )
    claimed: list[Claimed | Skipped] = list(_claimed(session, ids, now + lease))
    return claimed + skipped


def _claimed(session: Session, ids: list[int], lease_until: datetime) -> list[Claimed]:
    """The rows just claimed, with the bytes to send, oldest first."""
    rows = session.execute(
        select(
            Delivery.id,
            Delivery.to_address,
            Delivery.verp_token,
            Delivery.attempts,
            Delivery.created_at,
            Blob.data,
        )
        .join(Blob, Blob.sha256 == Delivery.body_sha256)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
    )
    return [
        Claimed(r.id, r.to_address, r.verp_token, r.data, r.attempts, r.created_at, lease_until)
        for r in rows
    ]


def claim_next(
    session: Session, now: datetime, lease: timedelta = SENDING_LEASE
) -> Claimed | Skipped | None:
    """Take the oldest claimable row (see claim_due), or None if nothing is due."""
    claims = claim_due(session, now, 1, lease)
    return claims[0] if claims else None


def _settle(session: Session, delivery_id: int, no_body: bool, now: datetime) -> Skipped:
    row = session.get_one(Delivery, delivery_id)
    row.state = "failed" if no_body else "suppressed"
    row.last_error = "no message body" if no_body else row.last_error
    row.next_attempt_at = None
    row.updated_at = now
    return Skipped(row.id, row.state)


def release(session: Session, due_at: Mapping[int, datetime], now: datetime) -> None:
    """Give back claimed rows that were not sent (a rate limit, a stop): `pending` again, due
    at the given time, and the attempt counted at claim taken back, as none was made."""
    if not due_at:
        return
    session.execute(
        update(Delivery),
        [
            {"id": delivery_id, "state": "pending", "next_attempt_at": at, "updated_at": now}
            for delivery_id, at in due_at.items()
        ],
    )
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(list(due_at)), Delivery.attempts > 0)
        .values(attempts=Delivery.attempts - 1)
    )


def next_due_at(session: Session) -> datetime | None:
    """When the earliest waiting row falls due (a retry, a deferral, a lease running out)."""
    return session.scalar(select(func.min(Delivery.next_attempt_at)).where(_ACTIVE))


def record_sent_many(session: Session, sent: Sequence[tuple[int, str, datetime]]) -> None:
    """Mark rows sent, one executemany for all: (id, the relay's reply, when)."""
    if sent:
        session.execute(
            _MARK_SENT,
            [
                {"b_id": delivery_id, "b_at": at, "b_response": response[:MAX_ERROR_CHARS]}
                for delivery_id, response, at in sent
            ],
        )


def record_outcomes(session: Session, outcomes: Sequence[Outcome]) -> None:
    """Write what became of each row, the common case (sent) in one statement."""
    record_sent_many(
        session, [(o.delivery_id, o.response, o.at) for o in outcomes if isinstance(o, Sent)]
    )
    for outcome in outcomes:
        if isinstance(outcome, Refused):
            record_refused(session, outcome.delivery_id, outcome.refusal, outcome.at)
        elif isinstance(outcome, Retry):
            record_retry(session, outcome.delivery_id, outcome.error, outcome.at, outcome.retry_at)


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
