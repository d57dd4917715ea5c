"""The rows a worker sends and the pace it sends them at.

- `Feed`: claimed rows handed out one at a time. One transaction claims a batch
  (ledger.claim_due) and gives back the rows a domain's rate limit deferred, so claims cost a
  commit per batch, not per row. Rows held too long are given back before their lease ends.
- `Limits`: the global token bucket (the sender waits for each message's token) and one per
  recipient domain (a row over its domain's limit goes back to the queue, due when its token
  will be, and that token is promised to it). It lives as long as the worker, across passes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import ledger, ratelimit
from mailflow.delivery.compose import domain_of
from mailflow.settings import OutboundSettings
from mailflow.store.engine import translate_db_errors

Clock = Callable[[], datetime]
PROMISE_SLACK_SECONDS = 1.0  # a deferred row claimed this early still uses its promised token
PRUNE_EVERY = 1024


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
