"""Crash test: SIGKILL the poller at random moments; every message ends up stored exactly once."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailflow.service import build
from mailflow.settings import DatabaseSettings, Settings
from mailflow.store.engine import make_engine, session_factory
from mailflow.store.models import Message, MessageSource
from tests.servers.dovecot import Credentials, DovecotServer

pytestmark = pytest.mark.integration
MESSAGES = 2000
KILLS = 20


def _fill(dovecot: DovecotServer, user: str) -> None:
    client = dovecot.client(user)
    try:
        for start in range(0, MESSAGES, 100):
            client.multiappend(
                "INBOX",
                [
                    (
                        f"From: r{n}@example.org\r\nSubject: crash {n}\r\n"
                        f"Message-ID: <crash{n}@example.org>\r\n\r\n{'z' * (n % 3000)}\r\n"
                    ).encode()
                    for n in range(start, start + 100)
                ],
            )
    finally:
        client.logout()


def _stored(db_url: str) -> int:
    """Messages committed so far, read without taking a lock the poller would wait for."""
    if db_url.startswith("sqlite:///"):
        path = db_url.removeprefix("sqlite:///")
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
                return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
        except sqlite3.Error:  # no database or no schema yet
            return 0
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(Message)) or 0)
    except Exception:  # the schema may not exist yet if the first run died that early
        return 0
    finally:
        engine.dispose()


def _config(tmp_path: Path, dovecot: DovecotServer, user: Credentials, db_url: str) -> Path:
    path = tmp_path / "mailflow.toml"
    path.write_text(
        f'[service]\ndata_dir = "data"\nlog_level = "warning"\n[database]\nurl = "{db_url}"\n'
        f'[[imap_accounts]]\nname = "crash"\nhost = "{dovecot.host}"\nport = {dovecot.port}\n'
        f'security = "plain"\nusername = "{user.username}"\nbatch_size = 10\n',
        encoding="utf-8",
    )
    return path


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    _fill(dovecot, imap_user.username)
    config = _config(tmp_path, dovecot, imap_user, db_url)
    env = {**os.environ, "MAILFLOW_IMAP_CRASH_PASSWORD": imap_user.password}
    # Durable intake is what is killed; processing (slower, and restartable by design) runs
    # after the kills, as `poll` and `process` below.
    base = [sys.executable, "-m", "mailflow", "--config", str(config), "poll", "--once"]
    command = [*base, "--defer-processing"]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # A kill counts when it lands while the ingest is still incomplete; kills that land after
    # it finished (or on a process that already exited) do not.
    stored_after_kill: list[int] = []
    # Kills are aimed in progress, not in time, so they land inside the ingest however fast
    # this machine starts Python or fetches: each run is killed once the store holds a random
    # 1-40 messages more than when it started, plus a random few ms (mid-fetch, mid-commit).
    for _ in range(KILLS * 2):
        if len(stored_after_kill) >= KILLS:
            break
        target = _stored(db_url) + rng.randint(1, 40)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _stored(db_url) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            stored = _stored(db_url)
            if stored < MESSAGES:
                stored_after_kill.append(stored)
        proc.wait(30)
    print(f"seed {seed}: stored after each kill: {stored_after_kill}")
    assert len(stored_after_kill) >= KILLS, f"{stored_after_kill} (seed {seed})"
    # Progress between kills: they landed during the ingest, not all before it began.
    assert len(set(stored_after_kill)) >= 3, f"{stored_after_kill} (seed {seed})"
    final = subprocess.run(base, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    process = subprocess.run(
        [sys.executable, "-m", "mailflow", "--config", str(config), "process"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr

    app = build(Settings(database=DatabaseSettings(url=db_url)))
    try:
        with app.sessions() as session:
            statuses = dict(
                session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
            )
            uids = session.scalars(select(MessageSource.uid)).all()
            most = session.scalar(select(func.max(Message.times_received)))
    finally:
        app.close()
    assert statuses == {"processed": MESSAGES}, f"seed {seed}"
    assert sorted(uids) == list(range(1, MESSAGES + 1)), f"seed {seed}"
    assert most == 1, f"seed {seed}"
