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

Shared with the rest of the worker:
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
from collections import Counter, deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import ledger, ratelimit
from mailflow.delivery.compose import domain_of, return_path
from mailflow.delivery.phases import Phases, phases_of
from mailflow.delivery.transport import Transport
from mailflow.errors import MailflowError
from mailflow.logs import fields
from mailflow.settings import OutboundSettings
from mailflow.store.engine import translate_db_errors

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
# (claimed row, now, the relay's acceptance or the error) -> the outcome, and whether the
# transport cannot send at all (no relay connection, outbox not writable).
Judge = Callable[[ledger.Claimed, datetime, str | MailflowError], tuple[ledger.Outcome, bool]]
PROMISE_SLACK_SECONDS = 1.0  # a deferred row claimed this early still uses its promised token
PRUNE_EVERY = 1024


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


class Limits:
    """The worker's rate limits and the tokens promised to deferred rows. It lives as long as
    the worker (across passes), so a promise made in one pass is kept in the next."""

    def __init__(self, outbound: OutboundSettings) -> None:
        self._lock = threading.Lock()
        self._global_template = ratelimit.per_second(outbound.rate_per_second)
        self._global: ratelimit.Bucket | None = None
        self._domain_template = ratelimit.per_minute(outbound.domain_rate_per_minute)
        self._domains: dict[str, ratelimit.Bucket] = {}
        self._promised: dict[int, float] = {}  # delivery id -> when its token exists
        self._reservations = 0
        self._forget_after = float(outbound.sending_lease_seconds) + 3600.0

    @property
    def global_rate(self) -> int:
        return int(self._global_template.rate) if self._global_template else 0

    def global_wait(self, now: float) -> float:
        """Seconds this sender must wait for its token of the global limit (reserved)."""
        if self._global_template is None:
            return 0.0
        with self._lock:
            bucket = self._global or ratelimit.Bucket.full(
                self._global_template.rate, self._global_template.burst, now
            )
            self._global, wait = bucket.reserve(now)
            return wait

    def domain_wait(self, delivery_id: int, domain: str, now: float) -> float:
        """0 if the row may go now; else seconds until its token, which is promised to it."""
        if self._domain_template is None:
            return 0.0
        with self._lock:
            promised = self._promised.pop(delivery_id, None)
            if promised is not None:
                if promised <= now + PROMISE_SLACK_SECONDS:
                    return 0.0
                self._promised[delivery_id] = promised  # early (another worker's clock)
                return promised - now
            bucket, wait = ratelimit.reserve_for(self._domains, domain, self._domain_template, now)
            self._domains[domain] = bucket
            if wait > 0:
                self._promised[delivery_id] = now + wait
            self._prune(now)
            return wait

    def _prune(self, now: float) -> None:
        # Now and then, not per call: both sweeps walk their whole mapping.
        self._reservations += 1
        if self._reservations % PRUNE_EVERY:
            return
        for domain in ratelimit.idle_keys(self._domains, now):
            del self._domains[domain]
        stale = now - self._forget_after  # promised rows that another worker took
        self._promised = {key: at for key, at in self._promised.items() if at > stale}


class Feed:
    """Claimed rows handed to the senders one at a time; claims a batch when it runs dry."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        limits: Limits,
        *,
        claim_size: int,
        lease: timedelta,
        limit: int | None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._limits = limits
        self._claim_size = claim_size
        self._lease = lease
        self._remaining = limit
        self._lock = threading.Lock()
        self._held: deque[ledger.Claimed] = deque()
        self._give_back: dict[int, datetime] = {}
        self._dry = False
        self.skipped = 0
        self.deferred = 0

    def next(self) -> ledger.Claimed | None:
        """The next row to send now, or None when nothing (more) is due."""
        with self._lock:
            while True:
                if not self._held and not self._refill():
                    return None
                claim = self._held.popleft()
                now = self._clock()
                if now >= claim.lease_until - self._lease / 4:
                    # Held too long (a slow relay, a low global rate): send it only while no
                    # other worker can take it, so give it back before the lease runs out.
                    self._give_back[claim.id] = now
                    continue
                wait = self._limits.domain_wait(
                    claim.id, domain_of(claim.to_address), now.timestamp()
                )
                if wait <= 0:
                    return claim
                self._give_back[claim.id] = now + timedelta(seconds=wait)
                self.deferred += 1

    def give_back(self, claim: ledger.Claimed) -> None:
        with self._lock:
            self._give_back[claim.id] = self._clock()

    def close(self) -> None:
        """Give back every row claimed but not sent, and every deferred row, at once."""
        with self._lock:
            now = self._clock()
            for claim in self._held:
                self._give_back[claim.id] = now
            self._held.clear()
            self._dry = True
            self._commit_claims(0, now)

    def _refill(self) -> bool:
        """Claim until some row is to be sent, or nothing more is due; False then."""
        while not self._held:
            if self._dry or self._remaining == 0:
                return False
            size = self._claim_size
            if self._remaining is not None:
                size = min(size, self._remaining)
                self._remaining -= size
            claims = self._commit_claims(size, self._clock())
            self._dry = len(claims) < size
            for claim in claims:
                if isinstance(claim, ledger.Claimed):
                    self._held.append(claim)
                else:
                    self.skipped += 1
        return True

    def _commit_claims(self, size: int, now: datetime) -> list[ledger.Claimed | ledger.Skipped]:
        # Deferred rows go back in the same transaction as the next claim: one commit for both.
        give_back, self._give_back = self._give_back, {}
        if not give_back and size == 0:
            return []
        with translate_db_errors(), self._sessions.begin() as session:
            ledger.release(session, give_back, now)
            return ledger.claim_due(session, now, size, self._lease) if size else []


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
