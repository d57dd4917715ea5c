"""Delivery at scale: several relay connections, retries under a misbehaving relay, 5xx and
suppression, rate limits (pure token buckets, and deferral through the ledger), DKIM.

Real SMTP (the aiosmtpd sink); SQLite and PostgreSQL. Time is a value the test moves
(`Clock`), so backoff and rate limits are checked by value, never by waiting.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import Worker
from mailflow.delivery.feed import Limits
from mailflow.delivery.ratelimit import Bucket, idle_keys, per_minute, per_second, reserve_for
from mailflow.settings import OutboundSettings
from mailflow.store import make_engine, session_factory, upgrade
from mailflow.store.models import Delivery, Suppression
from tests.delivery_support import (
    T0,
    Clock,
    address,
    make_campaign,
    received_by_recipient,
    relay_settings,
    states,
)
from tests.servers.smtp_sink import SMTPSink


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def attempts_by_address(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {a: n for a, n in session.execute(select(Delivery.to_address, Delivery.attempts))}


# -- connections, retries, refusals ---------------------------------------------------------------


def test_connections_are_several_and_reused_across_messages(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    addresses = [address(n) for n in range(120)]
    make_campaign(sessions, addresses)
    settings = relay_settings(tmp_path, db_url, smtp_sink, connections=4, batch_size=10)
    result = Worker(sessions, settings, Clock()).send_due(threading.Event())
    assert (result.sent, result.claimed) == (120, 120)
    assert received_by_recipient(smtp_sink) == dict.fromkeys(addresses, 1)
    peers = {message.peer for message in smtp_sink.messages}
    assert 2 <= len(peers) <= 4  # the senders ran side by side, each on its one connection
    assert states(sessions) == {"sent": 120}


def test_greylisting_and_dropped_connections_end_with_each_recipient_once(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    addresses = [address(n) for n in range(200)]
    greylisted = set(addresses[::5])  # one recipient in five: 451 at the first attempt
    refused_once: set[str] = set()
    lock = threading.Lock()

    def first_attempt(rcpt: str) -> bool:
        with lock:
            if rcpt in greylisted and rcpt not in refused_once:
                refused_once.add(rcpt)
                return True
            return False

    smtp_sink.reply_for(first_attempt, "451 4.7.1 Greylisted, try again later")
    smtp_sink.drop_every(10)  # one DATA in ten: the relay hangs up without a reply
    make_campaign(sessions, addresses)
    settings = relay_settings(
        tmp_path, db_url, smtp_sink, connections=4, retry_initial_seconds=60, batch_size=20
    )
    clock = Clock()
    worker = Worker(sessions, settings, clock)
    for _ in range(12):
        worker.send_due(threading.Event())
        if states(sessions) == {"sent": 200}:
            break
        clock.advance(settings.outbound.retry_max_seconds)
    assert states(sessions) == {"sent": 200}
    assert received_by_recipient(smtp_sink) == dict.fromkeys(addresses, 1)
    assert refused_once == greylisted and smtp_sink.dropped > 0
    # Every attempt is in the ledger: one per recipient, plus one per 451 and per drop.
    attempts = attempts_by_address(sessions)
    assert sum(attempts.values()) == 200 + len(greylisted) + smtp_sink.dropped
    assert all(attempts[rcpt] >= 2 for rcpt in greylisted)


def test_550_fails_the_row_suppresses_the_address_and_a_later_enqueue_is_suppressed(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    addresses = [address(n) for n in range(30)]
    gone = addresses[7]
    smtp_sink.reply_for(lambda rcpt: rcpt == gone, "550 5.1.1 No such user")
    make_campaign(sessions, addresses)
    settings = relay_settings(tmp_path, db_url, smtp_sink, connections=3)
    worker = Worker(sessions, settings, Clock())
    result = worker.send_due(threading.Event())
    assert (result.sent, result.failed) == (29, 1)
    with sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.to_address == gone)).one()
        assert (row.state, row.smtp_response, row.next_attempt_at) == (
            "failed",
            "550 at RCPT",
            None,
        )
        suppression = session.get_one(Suppression, gone)
        assert suppression.reason == "hard_bounce" and "550" in (suppression.detail or "")

    # The next campaign to the same people: the suppressed address is queued as such, unsent.
    make_campaign(sessions, addresses, name="follow-up")
    smtp_sink.reset()
    assert worker.send_due(threading.Event()).sent == 29
    assert gone not in received_by_recipient(smtp_sink)
    assert states(sessions) == {"sent": 58, "failed": 1, "suppressed": 1}


def test_a_5xx_at_data_fails_the_row_without_suppressing_the_address(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    make_campaign(sessions, [address(n) for n in range(3)])
    smtp_sink.reply_on_data("554 5.6.0 Message content refused")
    settings = relay_settings(tmp_path, db_url, smtp_sink, connections=2)
    assert Worker(sessions, settings, Clock()).send_due(threading.Event()).failed == 3
    with sessions() as session:
        assert session.scalars(select(Suppression)).all() == []


# -- rate limits -------------------------------------------------------------------------------


def test_per_domain_limit_defers_to_later_and_drops_nothing(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    slow = [f"member{n}@slow.example" for n in range(4)]
    others = [f"member{n}@other{n}.example" for n in range(4)]
    make_campaign(sessions, slow + others)
    # 6 a minute: one every 10 s, bursts of one.
    settings = relay_settings(tmp_path, db_url, smtp_sink, connections=2, domain_rate_per_minute=6)
    clock = Clock()
    worker = Worker(sessions, settings, clock)
    first = worker.send_due(threading.Event())
    assert (first.sent, first.deferred) == (5, 3)
    assert set(received_by_recipient(smtp_sink)) == {*others, slow[0]}
    with sessions() as session:
        waiting = session.execute(
            select(Delivery.next_attempt_at, Delivery.attempts, Delivery.state)
            .where(Delivery.state != "sent")
            .order_by(Delivery.next_attempt_at)
        ).all()
    # Each deferred row has its own time, one token apart; no attempt was counted.
    assert [(at - T0).total_seconds() for at, _, _ in waiting] == [10.0, 20.0, 30.0]
    assert {(attempts, state) for _, attempts, state in waiting} == {(0, "pending")}

    for _ in range(3):
        assert worker.send_due(threading.Event()).sent == 0  # not due yet
        clock.advance(10)
        assert worker.send_due(threading.Event()).sent == 1
    assert received_by_recipient(smtp_sink) == dict.fromkeys(slow + others, 1)
    assert set(attempts_by_address(sessions).values()) == {1}


def test_bucket_allows_a_burst_then_one_token_per_interval() -> None:
    bucket = Bucket.full(rate=2.0, burst=3.0, now=100.0)
    taken = []
    for _ in range(4):
        bucket, ok = bucket.take(100.0)
        taken.append(ok)
    assert taken == [True, True, True, False]
    assert bucket.wait(100.0) == pytest.approx(0.5)
    assert bucket.take(100.4)[1] is False
    bucket, ok = bucket.take(100.5)
    assert ok and bucket.wait(100.5) == pytest.approx(0.5)
    # Refilling stops at the burst: an idle hour buys three messages, not 7,200.
    assert [bucket.take(4000.0)[0].tokens for _ in range(1)] == [2.0]


def test_bucket_reservations_queue_up_one_interval_apart() -> None:
    bucket = Bucket.full(rate=0.1, burst=1.0, now=0.0)  # 6 a minute
    waits = []
    for _ in range(4):
        bucket, wait = bucket.reserve(0.0)
        waits.append(wait)
    assert waits == pytest.approx([0.0, 10.0, 20.0, 30.0])
    assert bucket.tokens == pytest.approx(-3.0)
    assert bucket.reserve(25.0)[1] == pytest.approx(15.0)  # after the three promised


def test_bucket_ignores_time_going_backwards_and_rejects_no_rate() -> None:
    bucket, _ = Bucket.full(rate=1.0, burst=1.0, now=10.0).take(10.0)
    assert bucket.refilled(5.0) == bucket  # no refund for a clock stepping back
    assert bucket.wait(10.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="positive"):
        Bucket.full(rate=0.0, burst=1.0, now=0.0)


def test_rate_templates_and_idle_domains() -> None:
    assert per_second(0) is None and per_minute(0) is None
    minute = per_minute(60)
    assert minute is not None and (minute.rate, minute.burst) == (1.0, 6.0)
    second = per_second(50)
    assert second is not None and (second.rate, second.burst) == (50.0, 50.0)
    buckets = {}
    for domain in ("a.example", "a.example", "b.example"):
        buckets[domain], _ = reserve_for(buckets, domain, minute, 0.0)
    assert buckets["a.example"].tokens == 4.0 and buckets["b.example"].tokens == 5.0
    assert idle_keys(buckets, 0.5) == []
    assert idle_keys(buckets, 1.0) == ["b.example"]  # full again: the same as a new bucket
    assert sorted(idle_keys(buckets, 2.0)) == ["a.example", "b.example"]


def test_global_limit_makes_senders_wait_their_turn() -> None:
    limits = Limits(OutboundSettings(rate_per_second=10))
    waits = [limits.global_wait(50.0) for _ in range(12)]
    assert waits[:10] == [0.0] * 10  # a second's worth at once
    assert waits[10:] == pytest.approx([0.1, 0.2])
    unlimited = Limits(OutboundSettings())
    assert unlimited.global_wait(0.0) == 0.0
    assert unlimited.domain_wait(1, "x.example", 0.0) == 0.0


def test_a_promised_token_is_used_once_by_its_row() -> None:
    limits = Limits(OutboundSettings(domain_rate_per_minute=6))
    assert limits.domain_wait(1, "slow.example", 0.0) == 0.0
    assert limits.domain_wait(2, "slow.example", 0.0) == pytest.approx(10.0)
    assert limits.domain_wait(2, "slow.example", 3.0) == pytest.approx(7.0)  # early: still 10
    assert limits.domain_wait(2, "slow.example", 10.0) == 0.0  # its token, no new one taken
    assert limits.domain_wait(3, "slow.example", 10.0) == pytest.approx(10.0)


# -- DKIM --------------------------------------------------------------------------------------


def test_dkim_signature_made_at_send_time_verifies(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    dkim = pytest.importorskip("dkim")
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout"], check=True, capture_output=True
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + b"".join(
        line for line in public.splitlines() if not line.startswith(b"-----")
    )
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        looked_up.append(name)
        return record if name == b"mf2026._domainkey.example.org." else None

    make_campaign(sessions, [address(n) for n in range(3)])
    settings = relay_settings(
        tmp_path, db_url, smtp_sink, dkim_key_file=key, dkim_selector="mf2026", connections=2
    )
    assert Worker(sessions, settings, Clock()).send_due(threading.Event()).sent == 3
    for message in smtp_sink.messages:
        assert message.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
        assert dkim.verify(message.data, dnsfunc=dns)
        tampered = message.data.replace(b"decision below", b"decision over")
        assert not dkim.verify(tampered, dnsfunc=dns)
    assert set(looked_up) == {b"mf2026._domainkey.example.org."}
    with sessions() as session:  # the ledger keeps the bytes as composed, unsigned
        assert all(d.state == "sent" for d in session.scalars(select(Delivery)))


def test_dkim_key_that_cannot_be_read_stops_the_worker_at_start(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    pytest.importorskip("dkim")
    from mailflow.errors import ConfigError

    settings = relay_settings(
        tmp_path, db_url, smtp_sink, dkim_key_file=tmp_path / "missing.pem", dkim_selector="s"
    )
    with pytest.raises(ConfigError, match="dkim_key_file"):
        Worker(sessions, settings, Clock())


def test_claimed_rows_are_given_back_when_the_relay_is_down(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    make_campaign(sessions, [address(n) for n in range(40)])
    settings = relay_settings(tmp_path, db_url, smtp_sink, connections=4, batch_size=40)
    smtp_sink.stop()
    result = Worker(sessions, settings, Clock()).send_due(threading.Event())
    assert result.stopped_early and result.sent == 0
    attempts = attempts_by_address(sessions)
    # One try per connection that found out; the rest were given back, due now, untried.
    assert 1 <= sum(attempts.values()) <= 4
    assert states(sessions) == {"pending": 40}
    with sessions() as session:
        untried = session.scalars(select(Delivery.next_attempt_at).where(Delivery.attempts == 0))
        assert set(untried) == {T0}
