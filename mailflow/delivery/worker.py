"""The delivery worker: send what is due and record each outcome in the ledger.

For each row: claim it (state `sending`, attempts + 1) and COMMIT, then run the SMTP
transaction outside any database transaction, then record the outcome and commit it before
that connection hands over its next message. A crash between the two commits leaves the row
`sending`; once its lease (outbound.sending_lease_seconds) has run out, a worker sends it
again. If the relay had in fact accepted it, the recipient gets it twice: SMTP has no way to
ask "did you get this?", so at most one duplicate per connection per crash is the price of
never losing a message. Several connections driven in rounds, batched claims, one commit
per round and rate limits: senders.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import ledger
from mailflow.delivery.errors import ConnectionLost, InvalidOutbound, SendRefused
from mailflow.delivery.senders import PassResult, Senders
from mailflow.delivery.signing import load_signer
from mailflow.delivery.transport import Transport, make_transport
from mailflow.errors import MailflowError
from mailflow.logs import fields
from mailflow.settings import OutboundSettings, Settings
from mailflow.store.engine import translate_db_errors

log = logging.getLogger(__name__)
MIN_IDLE_SECONDS = 0.25  # between passes, however soon the next row falls due

__all__ = [
    "PassResult",
    "Worker",
    "deliver_due",
    "judge",
    "retry_at",
    "retry_delay",
    "run_delivery",
]


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


def judge(
    claim: ledger.Claimed, now: datetime, result: str | MailflowError, settings: Settings
) -> tuple[ledger.Outcome, bool]:
    """What became of one claimed row, given the relay's acceptance or the error its hand-over
    raised; and whether the transport cannot send at all (the pass then stops)."""
    if isinstance(result, str):
        _log_outcome(claim, "sent", result)
        return ledger.Sent(claim.id, result, now), False
    unavailable = False
    if isinstance(result, SendRefused) and result.permanent:
        _log_outcome(claim, "failed", str(result))
        return ledger.Refused(claim.id, result, now), False
    if isinstance(result, InvalidOutbound):  # no retry can cure this row; the others go on
        _log_outcome(claim, "failed", str(result))
        return ledger.Retry(claim.id, str(result), now, None), False
    if not isinstance(result, SendRefused | ConnectionLost):
        unavailable = True  # no relay connection, outbox not writable, signing
    when = retry_at(claim, now, settings.outbound)
    _log_outcome(claim, "retrying" if when is not None else "failed", str(result))
    return ledger.Retry(claim.id, str(result), now, when), unavailable


def _log_outcome(claim: ledger.Claimed, outcome: str, detail: str) -> None:
    # The delivery id, never the address: it may be a reporter's.
    level = logging.INFO if outcome == "sent" else logging.WARNING
    if log.isEnabledFor(level):
        log.log(
            level,
            f"delivery {outcome}",
            extra=fields(delivery=claim.id, attempt=claim.attempts, detail=detail),
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


class Worker:
    """A delivery worker: `outbound.connections` relay connections and the rate limits,
    which live as long as the worker so that a deferral made in one pass holds in the next."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = session_factory
        self.settings = settings
        self.clock = clock
        self.senders = Senders(
            session_factory,
            settings.outbound,
            lambda claim, now, result: judge(claim, now, result, settings),
            clock,
            settings.bounce_domain,
        )
        self.signer = load_signer(settings)  # once: a bad key stops the start

    def send_due(self, stop: threading.Event, limit: int | None = None) -> PassResult:
        """One pass over fresh connections, closed at its end: no idle connection is kept."""
        connections = max(1, self.settings.outbound.connections)
        if not self.settings.outbound.relay_host:
            connections = 1  # the Maildir outbox: one writer is plenty
        transports = [make_transport(self.settings, signer=self.signer) for _ in range(connections)]
        try:
            return self.senders.run(transports, stop, limit)
        finally:
            for transport in transports:
                transport.close()

    def idle_seconds(self, result: PassResult) -> float:
        """How long to wait before the next pass: until the next row falls due (a retry, a
        deferral, an expired lease), at most send_interval_seconds."""
        interval = float(self.settings.outbound.send_interval_seconds)
        if result.stopped_early:
            return interval
        with translate_db_errors(), self.sessions() as session:
            due = ledger.next_due_at(session)
        if due is None:
            return interval
        wait = (due - self.clock()).total_seconds()
        return min(interval, max(MIN_IDLE_SECONDS, wait))


def deliver_due(
    session_factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    now: datetime,
    limit: int = 50,
) -> PassResult:
    """Send up to `limit` due rows through one `transport` at the time `now`.

    Safe to run in several threads or processes at once: each row is claimed by one worker.
    A transport that cannot send at all (relay down, outbox not writable) ends the pass after
    the row that found out; the other rows are given back untouched and stay due.
    """
    senders = Senders(
        session_factory,
        settings.outbound,
        lambda claim, at, result: judge(claim, at, result, settings),
        lambda: now,
        settings.bounce_domain,
    )
    return senders.run([transport], threading.Event(), limit)


def run_delivery(
    session_factory: sessionmaker[Session],
    settings: Settings,
    stop: threading.Event,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """The delivery loop of the service and of `mailflow send`: passes until `stop` is set,
    each as soon as something falls due (at most send_interval_seconds apart)."""
    try:
        worker = Worker(session_factory, settings, clock)
    except MailflowError as exc:  # a DKIM key that cannot be used: nothing is sent unsigned
        log.error("delivery worker not started", extra=fields(error=str(exc)))
        return
    while not stop.is_set():
        result = PassResult(stopped_early=True)
        try:
            result = worker.send_due(stop)
            wait = worker.idle_seconds(result)
        except MailflowError as exc:
            log.error("delivery pass failed", extra=fields(error=str(exc)))
            wait = float(settings.outbound.send_interval_seconds)
        if result.claimed:
            log.info(
                "delivery pass",
                extra=fields(sent=result.sent, retrying=result.retrying, failed=result.failed),
            )
        stop.wait(wait)
