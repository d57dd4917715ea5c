"""Sending over several relay connections at once, within rate limits, in rounds.

One thread drives every connection of a pass, in rounds of one message per connection:

1. each connection takes a claimed row and writes its envelope (MAIL, RCPT, DATA: one write
   when the relay offers PIPELINING);
2. the previous round's outcomes are committed, one transaction for all of them, while the
   relay reads those commands;
3. each connection reads its replies and hands its message over (text and final dot);
4. each reads the relay's verdict: this round's outcomes, committed in the next round's step 2.

A final dot is written only after every earlier outcome of its connection is committed, so a
crash leaves at most one message per connection sent but not recorded (the one duplicate per
connection a crash can cause). One thread and one commit per round, instead of a thread per
connection waiting on a shared commit: the threads' hand-offs of the interpreter lock cost
more CPU than the sending itself (measured: 2 million futex calls for 20,000 messages).

Shared with the rest of the worker (feed.py):
- a `Feed` of claimed rows: one transaction claims a batch (ledger.claim_due) and gives back
  the rows a domain's rate limit deferred, so claims cost a commit per batch, not per row;
- the `Limits`: a global token bucket (the round waits for each message's token) and one per
  recipient domain (a row over its domain's limit goes back to the queue, due when its token
  will be).

Rows claimed but not sent when a pass ends (a stop, the relay down) are given back at once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import ledger
from mailflow.delivery.compose import return_path
from mailflow.delivery.feed import Clock, Feed, Limits
from mailflow.delivery.phases import Phases, phases_of
from mailflow.delivery.transport import Transport
from mailflow.errors import MailflowError
from mailflow.logs import fields
from mailflow.settings import OutboundSettings
from mailflow.store.engine import translate_db_errors

log = logging.getLogger(__name__)
# (claimed row, now, the relay's acceptance or the error) -> the outcome, and whether the
# transport cannot send at all (no relay connection, outbox not writable).
Judge = Callable[[ledger.Claimed, datetime, str | MailflowError], tuple[ledger.Outcome, bool]]


@dataclass(frozen=True)
class PassResult:
    """What one pass did, row by row."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0  # suppressed addresses, rows without a message
    deferred: int = 0  # over a domain's rate limit: back in the queue, due later
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
            deferred=self.deferred + other.deferred,
            stopped_early=other.stopped_early,
        )


def outcome_name(outcome: ledger.Outcome) -> str:
    if isinstance(outcome, ledger.Sent):
        return "sent"
    if isinstance(outcome, ledger.Retry) and outcome.retry_at is not None:
        return "retrying"
    return "failed"


class _Flight:
    """One message on one connection during a round, and what became of it."""

    def __init__(self, phases: Phases, claim: ledger.Claimed, envelope_from: str) -> None:
        self.phases = phases
        self.claim = claim
        self.envelope_from = envelope_from
        self.result: str | MailflowError | None = None

    @property
    def open(self) -> bool:
        return self.result is None

    def step(self, action: Callable[[], str | None]) -> None:
        """Run one phase unless an earlier one already decided the outcome."""
        if self.result is not None:
            return
        try:
            response = action()
        except MailflowError as exc:
            self.result = exc
        else:
            if response is not None:
                self.result = response


class Senders:
    """The sending side of a worker: runs passes over a set of transports."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbound: OutboundSettings,
        judge: Judge,
        clock: Clock,
        bounce_domain: str,
    ) -> None:
        self.sessions = sessions
        self.outbound = outbound
        self.judge = judge
        self.clock = clock
        self.bounce_domain = bounce_domain
        self.limits = Limits(outbound)
        self.lease = timedelta(seconds=max(1, outbound.sending_lease_seconds))

    def run(
        self, transports: Sequence[Transport], stop: threading.Event, limit: int | None = None
    ) -> PassResult:
        """One pass: send until nothing is due now (or `limit` rows were taken, or `stop`)."""
        feed = Feed(
            self.sessions,
            self.clock,
            self.limits,
            claim_size=self._claim_size(),
            lease=self.lease,
            limit=limit,
        )
        pass_ = _Pass(self, feed, stop)
        try:
            pass_.run([phases_of(t) for t in transports])
        except BaseException:
            try:
                feed.close()
            except MailflowError as exc:  # the database is what failed: the leases will do
                log.warning("giving back claimed rows failed", extra=fields(error=str(exc)))
            raise
        feed.close()
        return pass_.result(feed)

    def _claim_size(self) -> int:
        size = max(1, self.outbound.batch_size)
        if self.limits.global_rate:
            # What the global rate sends in a quarter of the lease, so held rows go in time.
            size = min(size, max(1, int(self.limits.global_rate * self.lease.total_seconds() / 4)))
        return size


class _Pass:
    """The rounds of one pass, their counts, and the outcomes not yet committed."""

    def __init__(self, senders: Senders, feed: Feed, stop: threading.Event) -> None:
        self.senders = senders
        self.feed = feed
        self.stop = stop
        self.halt = threading.Event()  # the relay is down, an interrupt, or a failure
        self.counts: Counter[str] = Counter()
        self.unrecorded: list[ledger.Outcome] = []
        self.errors: list[BaseException] = []

    def run(self, connections: Sequence[Phases]) -> None:
        """The rounds, in a thread of their own: an interrupt (Ctrl-C, SIGTERM) reaches the
        calling thread, which lets the round in flight finish and its outcomes be recorded."""
        thread = threading.Thread(target=self._guarded, args=(connections,), name="sender")
        thread.start()
        try:
            thread.join()
        except KeyboardInterrupt:
            self.halt.set()
            thread.join()
            raise
        if self.errors:
            raise self.errors[0]

    def _guarded(self, connections: Sequence[Phases]) -> None:
        try:
            self._rounds(connections)
        except BaseException as exc:  # re-raised by run() in the calling thread
            self.errors.append(exc)

    def _rounds(self, connections: Sequence[Phases]) -> None:
        # One session on one held connection for the whole pass: a round's commit is then
        # only BEGIN, UPDATE, COMMIT. A session and a pool checkout per round cost a third.
        engine = self.senders.sessions.kw["bind"]
        with (
            translate_db_errors(),
            engine.connect() as held,
            self.senders.sessions(bind=held) as session,
        ):
            try:
                while not (self.stop.is_set() or self.halt.is_set()):
                    if not self._round(connections, session):
                        break
            except BaseException:
                with suppress(MailflowError):  # record what was sent, if the database lets us
                    self._record(session)
                raise
            self._record(session)

    def _round(self, connections: Sequence[Phases], session: Session) -> bool:
        """One message per connection; False once nothing more is due (or a stop)."""
        flights = self._board(connections)
        if not flights:
            return False
        for flight in flights:
            claim = flight.claim
            flight.step(
                partial(flight.phases.start, flight.envelope_from, claim.to_address, claim.raw)
            )
        try:
            self._record(session)  # the gate: no final dot before earlier outcomes are durable
        except BaseException:
            for flight in flights:  # abandoned before their final dots: nothing was sent
                flight.phases.abort()
            raise
        for flight in flights:
            flight.step(flight.phases.hand_over)
        for flight in flights:
            flight.step(flight.phases.finish)
        for flight in flights:
            self._judge(flight)
        return len(flights) == len(connections)

    def _board(self, connections: Sequence[Phases]) -> list[_Flight]:
        flights: list[_Flight] = []
        for phases in connections:
            if self.stop.is_set() or self.halt.is_set():
                break
            claim = self.feed.next()
            if claim is None or not self._paced(claim):
                break
            sender = return_path(claim.verp_token, self.senders.bounce_domain)
            flights.append(_Flight(phases, claim, sender))
        return flights

    def _judge(self, flight: _Flight) -> None:
        result = flight.result
        assert result is not None, "every phase ran"
        outcome, unavailable = self.senders.judge(flight.claim, self.senders.clock(), result)
        self.unrecorded.append(outcome)
        self.counts[outcome_name(outcome)] += 1
        if unavailable:
            self.halt.set()
            self.counts["stopped_early"] = 1

    def _record(self, session: Session) -> None:
        """Commit every outcome not yet committed, in one transaction."""
        if not self.unrecorded:
            return
        with translate_db_errors(), session.begin():
            ledger.record_outcomes(session, self.unrecorded)
        self.unrecorded = []

    def _paced(self, claim: ledger.Claimed) -> bool:
        """Wait for the global limit's token; False (and the row given back) on a stop."""
        wait = self.senders.limits.global_wait(self.senders.clock().timestamp())
        if wait > 0 and (self.stop.wait(wait) or self.halt.is_set()):
            self.feed.give_back(claim)
            return False
        return True

    def result(self, feed: Feed) -> PassResult:
        return PassResult(
            sent=self.counts["sent"],
            retrying=self.counts["retrying"],
            failed=self.counts["failed"],
            skipped=feed.skipped,
            deferred=feed.deferred,
            stopped_early=bool(self.counts["stopped_early"]),
        )
