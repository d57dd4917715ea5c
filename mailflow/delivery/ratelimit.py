"""Token buckets for outbound rate limits. Pure: the time is a value passed in, in seconds.

A bucket holds up to `burst` tokens and gains `rate` per second; each message takes one. Two
ways to take one:

- `take`: now or not at all (the caller tries again later);
- `reserve`: now, or a place in the queue of future tokens. The bucket may go below zero, by
  as many tokens as are promised; the answer is how long until the reserved token exists. So
  n messages reserved at once for a slow domain get n distinct times, `1 / rate` apart, and
  none of them has to ask again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Bucket:
    rate: float  # tokens per second, > 0
    burst: float  # most tokens held, >= 1
    tokens: float  # at `at`; negative: tokens promised but not yet made
    at: float  # the time `tokens` was counted, seconds

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> Bucket:
        if rate <= 0:
            raise ValueError(f"a bucket's rate must be positive, got {rate}")
        burst = max(1.0, burst)
        return cls(rate=rate, burst=burst, tokens=burst, at=now)

    def refilled(self, now: float) -> Bucket:
        """The bucket at `now`; a time earlier than the last one changes nothing (no refund)."""
        if now <= self.at:
            return self
        tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        return replace(self, tokens=tokens, at=now)

    def take(self, now: float) -> tuple[Bucket, bool]:
        """Take one token now if there is one: (the bucket after, whether one was taken)."""
        bucket = self.refilled(now)
        if bucket.tokens >= 1:
            return replace(bucket, tokens=bucket.tokens - 1), True
        return bucket, False

    def reserve(self, now: float) -> tuple[Bucket, float]:
        """Take one token, now or promised for later: (the bucket after, seconds to wait)."""
        bucket = self.refilled(now)
        tokens = bucket.tokens - 1
        wait = 0.0 if tokens >= 0 else -tokens / bucket.rate
        return replace(bucket, tokens=tokens), wait

    def wait(self, now: float) -> float:
        """Seconds until a token can be taken (0: now), taking nothing."""
        tokens = self.refilled(now).tokens
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def is_full(self, now: float) -> bool:
        """Whether the bucket is back to `burst`: then it is the same as a new one."""
        return self.refilled(now).tokens >= self.burst


def per_second(count: int) -> Bucket | None:
    """A bucket template for `count` messages per second (bursts of one second's worth)."""
    return Bucket.full(float(count), float(count), 0.0) if count > 0 else None


def per_minute(count: int) -> Bucket | None:
    """A bucket template for `count` messages per minute (bursts of a tenth of a minute's)."""
    return Bucket.full(count / 60.0, count / 10.0, 0.0) if count > 0 else None


def reserve_for(
    buckets: Mapping[str, Bucket], key: str, template: Bucket, now: float
) -> tuple[Bucket, float]:
    """Reserve from `key`'s bucket, starting from a full copy of `template` for a new key."""
    bucket = buckets.get(key) or replace(template, tokens=template.burst, at=now)
    return bucket.reserve(now)


def idle_keys(buckets: Mapping[str, Bucket], now: float) -> list[str]:
    """Keys whose bucket is full again: forgetting them changes no decision, and keeps the
    mapping as small as the set of domains mailed in the last few seconds."""
    return [key for key, bucket in buckets.items() if bucket.is_full(now)]
