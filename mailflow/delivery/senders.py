"""Sending over several relay connections at once, within rate limits, one commit per message.

A pass runs one sender per connection (a thread each when there are several). They share:

- a `Feed` of claimed rows: one transaction claims a batch (ledger.claim_due) and gives back
  the rows a domain's rate limit deferred, so claims cost a commit per batch, not per row;
- a `Recorder` that commits outcomes: a sender waits until its outcome is committed before
  it starts its next SMTP transaction, so a crash leaves at most one message per connection
  sent but not recorded (the one duplicate per connection a crash can cause). Whoever finds
  no commit running commits every outcome waiting, so N connections share one fsync;
- the `Limits`: a global token bucket (a sender waits for its token) and one per recipient
  domain (a row over its domain's limit goes back to the queue, due when its token will be).

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
from mailflow.delivery.compose import domain_of
from mailflow.delivery.transport import Gate, GatedSend, Transport, gated_send
from mailflow.errors import MailflowError, StorageUnavailable
from mailflow.logs import fields
from mailflow.settings import OutboundSettings
from mailflow.store.engine import translate_db_errors

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
# (send, claimed row, now, gate) -> the outcome, and whether the transport cannot send at
# all. The gate is to be called just before the message is handed over for good.
Attempt = Callable[[GatedSend, ledger.Claimed, datetime, Gate], tuple[ledger.Outcome, bool]]
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


class Recorder:
    """Commits outcomes in groups. `submit` queues one and returns its ticket; `wait(ticket)`
    returns once that outcome (and every one before it) is committed, committing whatever is
    queued itself if no other thread is committing right now."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._cond = threading.Condition()
        self._waiting: list[ledger.Outcome] = []
        self._submitted = 0
        self._durable = 0
        self._busy = False
        self._broken = False

    def submit(self, outcome: ledger.Outcome) -> int:
        with self._cond:
            self._waiting.append(outcome)
            self._submitted += 1
            return self._submitted

    def wait(self, ticket: int) -> None:
        with self._cond:
            while self._durable < ticket:
                self._check()
                if not self._busy:
                    break
                self._cond.wait()
            else:
                return
            batch, self._waiting, upto, self._busy = self._waiting, [], self._submitted, True
        committed = False
        try:
            with translate_db_errors(), self._sessions.begin() as session:
                ledger.record_outcomes(session, batch)
            committed = True
        finally:
            with self._cond:
                self._busy = False
                self._broken = self._broken or not committed
                self._durable = upto if committed else self._durable
                self._cond.notify_all()

    def _check(self) -> None:
        if self._broken:
            # Those rows stay `sending` and are sent again after their lease.
            raise StorageUnavailable("recording delivery outcomes failed; the pass stops")


class Senders:
    """The sending side of a worker: runs passes over a set of transports."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbound: OutboundSettings,
        attempt: Attempt,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.outbound = outbound
        self.attempt = attempt
        self.clock = clock
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
        pass_ = _Pass(self, feed, Recorder(self.sessions), stop)
        try:
            pass_.run_all(transports)
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
    """The senders of one pass: their threads, their counts and the first error among them."""

    def __init__(
        self, senders: Senders, feed: Feed, recorder: Recorder, stop: threading.Event
    ) -> None:
        self.senders = senders
        self.feed = feed
        self.recorder = recorder
        self.stop = stop
        self.halt = threading.Event()  # the relay is down, or one sender failed
        self.counts: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def run_all(self, transports: Sequence[Transport]) -> None:
        if len(transports) == 1:
            self.send_loop(transports[0])
            return
        threads = [
            threading.Thread(target=self.guarded, args=(t,), name=f"sender-{n}", daemon=True)
            for n, t in enumerate(transports)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:
            self.halt.set()  # each sender finishes its message in flight, then stops
            for thread in threads:
                thread.join()
            raise
        if self.errors:
            raise self.errors[0]

    def guarded(self, transport: Transport) -> None:
        try:
            self.send_loop(transport)
        except BaseException as exc:  # re-raised by run_all in the calling thread
            with self._lock:
                self.errors.append(exc)
            self.halt.set()

    def send_loop(self, transport: Transport) -> None:
        """Send until the feed is dry. The gate makes each message's final dot wait for the
        previous outcome's commit, so at most one message per connection is ever sent and
        not yet recorded, while the rest of its transaction overlaps that commit."""
        ticket = 0
        send = gated_send(transport)
        try:
            while not (self.stop.is_set() or self.halt.is_set()):
                claim = self.feed.next()
                if claim is None:
                    break
                if not self._paced(claim):
                    break
                gate = partial(self.recorder.wait, ticket)
                outcome, unavailable = self.senders.attempt(send, claim, self.senders.clock(), gate)
                ticket = self.recorder.submit(outcome)
                self._count(outcome_name(outcome), unavailable)
        except BaseException:
            with suppress(MailflowError):  # record what was sent, if the database lets us
                self.recorder.wait(ticket)
            raise
        self.recorder.wait(ticket)

    def _paced(self, claim: ledger.Claimed) -> bool:
        """Wait for the global limit's token; False (and the row given back) on a stop."""
        wait = self.senders.limits.global_wait(self.senders.clock().timestamp())
        if wait > 0 and (self.stop.wait(wait) or self.halt.is_set()):
            self.feed.give_back(claim)
            return False
        return True

    def _count(self, outcome: str, unavailable: bool) -> None:
        with self._lock:
            self.counts[outcome] += 1
        if unavailable:
            self.halt.set()
            with self._lock:
                self.counts["stopped_early"] = 1

    def result(self, feed: Feed) -> PassResult:
        return PassResult(
            sent=self.counts["sent"],
            retrying=self.counts["retrying"],
            failed=self.counts["failed"],
            skipped=feed.skipped,
            deferred=feed.deferred,
            stopped_early=bool(self.counts["stopped_early"]),
        )
