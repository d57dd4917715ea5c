"""The delivery worker: send what is due, one ledger row at a time, and record the outcome.

For each row: claim it (state `sending`, attempts + 1) and COMMIT, then run the SMTP
transaction outside any database transaction, then record the outcome and commit again. A
crash between the two commits leaves the row `sending`; once its lease (ledger.SENDING_LEASE)
has run out, a worker sends it again. If the relay had in fact accepted it, the recipient
gets it twice: SMTP has no way to ask "did you get this?", so at most one duplicate per crash
is the price of never losing a message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import ledger
from mailflow.delivery.compose import return_path
from mailflow.delivery.errors import ConnectionLost, SendRefused
from mailflow.delivery.transport import Transport, make_transport
from mailflow.errors import MailflowError
from mailflow.logs import fields
from mailflow.settings import OutboundSettings, Settings
from mailflow.store.engine import translate_db_errors

log = logging.getLogger(__name__)
OUTCOMES = ("sent", "retrying", "failed", "skipped")


@dataclass(frozen=True)
class PassResult:
    """What one pass did, row by row."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0  # suppressed addresses, rows without a message
    stopped_early: bool = False  # the transport was unavailable: the rest waits

    @property
    def claimed(self) -> int:
        return self.sent + self.retrying + self.failed + self.skipped

    def __add__(self, other: PassResult) -> PassResult:
        return PassResult(
            sent=self.sent + other.sent,
            retrying=self.retrying + other.retrying,
            failed=self.failed + other.failed,
            skipped=self.skipped + other.skipped,
            stopped_early=other.stopped_early,
        )


def retry_delay(attempts: int, settings: OutboundSettings) -> timedelta:
    """Exponential backoff: initial, 2 x initial, 4 x initial ... capped at the maximum."""
    seconds = settings.retry_initial_seconds * 2 ** min(max(attempts - 1, 0), 32)
    return timedelta(seconds=min(seconds, settings.retry_max_seconds))


def retry_at(claimed: ledger.Claimed, now: datetime, settings: OutboundSettings) -> datetime | None:
    """When to try again after a temporary failure, or None once the give-up period is over."""
    give_up_at = claimed.created_at + timedelta(hours=settings.retry_for_hours)
    if now >= give_up_at:
        return None
    return min(now + retry_delay(claimed.attempts, settings), give_up_at)


def deliver_due(
    session_factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    now: datetime,
    limit: int = 50,
) -> PassResult:
    """Send up to `limit` due rows through `transport`; each row's outcome is committed.

    Safe to run in several threads or processes at once: each row is claimed by one worker.
    A transport that cannot send at all (relay down, outbox not writable) ends the pass after
    the row that found out; the other rows are untouched and stay due.
    """
    counts = dict.fromkeys(OUTCOMES, 0)
    stopped_early = False
    for _ in range(limit):
        with translate_db_errors(), session_factory.begin() as session:
            claim = ledger.claim_next(session, now)
        if claim is None:
            break
        if isinstance(claim, ledger.Skipped):
            counts["skipped"] += 1
            continue
        outcome, stopped_early = _send_one(session_factory, settings, transport, claim, now)
        counts[outcome] += 1
        if stopped_early:
            break
    return PassResult(
        sent=counts["sent"],
        retrying=counts["retrying"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        stopped_early=stopped_early,
    )


def _send_one(
    session_factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    claim: ledger.Claimed,
    now: datetime,
) -> tuple[str, bool]:
    """Send one claimed row and commit its outcome; returns (outcome, stop the pass)."""
    envelope_from = return_path(claim.verp_token, settings.bounce_domain)
    stop = False
    try:
        response = transport.send(envelope_from, claim.to_address, claim.raw)
    except SendRefused as refusal:
        if refusal.permanent:
            with translate_db_errors(), session_factory.begin() as session:
                ledger.record_refused(session, claim.id, refusal, now)
            _log_outcome(claim, "failed", str(refusal))
            return "failed", False
        error: str = str(refusal)
    except ConnectionLost as lost:
        error = str(lost)  # the next row reconnects
    except MailflowError as unavailable:
        error, stop = str(unavailable), True
    else:
        with translate_db_errors(), session_factory.begin() as session:
            ledger.record_sent(session, claim.id, response, now)
        _log_outcome(claim, "sent", response)
        return "sent", False
    when = retry_at(claim, now, settings.outbound)
    with translate_db_errors(), session_factory.begin() as session:
        ledger.record_retry(session, claim.id, error, now, when)
    outcome = "retrying" if when is not None else "failed"
    _log_outcome(claim, outcome, error)
    return outcome, stop


def _log_outcome(claim: ledger.Claimed, outcome: str, detail: str) -> None:
    # The delivery id, never the address: it may be a reporter's.
    level = logging.INFO if outcome == "sent" else logging.WARNING
    log.log(
        level,
        f"delivery {outcome}",
        extra=fields(delivery=claim.id, attempt=claim.attempts, detail=detail),
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def run_delivery(
    session_factory: sessionmaker[Session],
    settings: Settings,
    stop: threading.Event,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """The service's delivery loop: passes every send_interval_seconds until `stop` is set.

    A full pass is followed at once by the next; the relay connection is let go after each
    pass that ends with nothing left to do, so no idle connection is held open.
    """
    transport = make_transport(settings)
    outbound = settings.outbound
    try:
        while not stop.is_set():
            result = PassResult()
            try:
                result = deliver_due(
                    session_factory, settings, transport, clock(), outbound.batch_size
                )
            except MailflowError as exc:
                log.error("delivery pass failed", extra=fields(error=str(exc)))
            if result.claimed < outbound.batch_size or result.stopped_early:
                transport.close()
                stop.wait(outbound.send_interval_seconds)
    finally:
        transport.close()
