"""Crash tests for sending: SIGKILL `mailflow send` at random moments while it sends a campaign;
and three workers on one PostgreSQL queue.

Every recipient must get the message. A kill may cost duplicates, but only the messages in
flight: at most one per connection per kill, since each connection commits an outcome before
it starts its next message.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailflow.store import make_engine, session_factory, upgrade
from tests.delivery_support import address, make_campaign, received_by_recipient, states
from tests.servers.smtp_sink import SMTPSink

pytestmark = pytest.mark.integration
RECIPIENTS = 2000
CONNECTIONS = 4
KILLS = 12
LEASE_SECONDS = 2


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def write_config(tmp_path: Path, db_url: str, sink: SMTPSink, connections: int, lease: int) -> Path:
    path = tmp_path / "mailflow.toml"
    path.write_text(
        f'[service]\ndata_dir = "data"\nlog_level = "error"\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[outbound]\nfrom_address = "committee@example.org"\nrelay_host = "{sink.host}"\n'
        f'relay_port = {sink.port}\nrelay_security = "none"\nconnections = {connections}\n'
        f"batch_size = 10\nsending_lease_seconds = {lease}\nsend_interval_seconds = 1\n"
        f"retry_initial_seconds = 1\nretry_max_seconds = 2\n",
        encoding="utf-8",
    )
    return path


def just_now() -> datetime:
    """The workers run on the real clock: queue the campaign as due now."""
    return datetime.now(UTC) - timedelta(seconds=1)


def send_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mailflow", "--config", str(config), "send", *extra]


def wait_for_progress(sink: SMTPSink, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Until this process has sent something (it may still be starting up)."""
    before = len(sink.messages)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(sink.messages) > before:
            return True
        time.sleep(0.02)
    return False


def test_sigkill_while_sending_loses_nothing_and_duplicates_only_what_was_in_flight(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    addresses = [address(n, domains=200) for n in range(RECIPIENTS)]
    make_campaign(sessions, addresses, now=just_now())
    config = write_config(tmp_path, db_url, smtp_sink, CONNECTIONS, LEASE_SECONDS)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kills = mid_campaign = 0  # every SIGKILL, and those that landed while mail was due
    for _ in range(KILLS * 3):
        proc = subprocess.Popen(send_command(config), stdout=subprocess.DEVNULL)
        progressed = wait_for_progress(smtp_sink, proc, timeout=30)
        assert progressed or proc.poll() is not None, f"no progress in 30 s (seed {seed})"
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
            mid_campaign += progressed and len(received_by_recipient(smtp_sink)) < RECIPIENTS
        proc.wait(30)
        if mid_campaign >= KILLS:
            break
    assert mid_campaign >= 10, f"only {mid_campaign} kills landed while sending (seed {seed})"

    final = subprocess.Popen(send_command(config))
    try:
        deadline = time.monotonic() + 60
        while states(sessions).get("sent", 0) < RECIPIENTS and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        final.send_signal(signal.SIGINT)  # a clean stop: the message in flight, then exit
        final.wait(30)
    assert final.returncode == 130, f"seed {seed}"
    assert states(sessions) == {"sent": RECIPIENTS}, f"seed {seed}"
    received = received_by_recipient(smtp_sink)
    assert set(received) == set(addresses), f"seed {seed}"
    duplicates = sum(received.values()) - RECIPIENTS
    print(f"seed {seed}: {kills} kills ({mid_campaign} mid-campaign), {duplicates} duplicates")
    assert duplicates <= kills * CONNECTIONS, f"seed {seed}"


def test_three_workers_share_the_postgresql_queue_and_send_each_row_once(
    tmp_path: Path, postgres_url: str, smtp_sink: SMTPSink
) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = session_factory(engine)
    try:
        addresses = [address(n, domains=200) for n in range(1500)]
        make_campaign(sessions, addresses, now=just_now())
        # A long lease: no row is taken over from a live worker, so any duplicate would be
        # two workers claiming the same row.
        config = write_config(tmp_path, postgres_url, smtp_sink, connections=2, lease=600)
        workers = [
            subprocess.Popen(send_command(config, "--once"), stdout=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        outputs = [worker.communicate(timeout=120)[0] for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0, 0], outputs
        sent = [int(out.split("sent ")[1].split(",")[0]) for out in outputs]
        assert sum(sent) == 1500, outputs
        assert sum(1 for count in sent if count > 0) >= 2, outputs  # they did share the work
        assert received_by_recipient(smtp_sink) == dict.fromkeys(addresses, 1)
        assert states(sessions) == {"sent": 1500}
    finally:
        engine.dispose()
