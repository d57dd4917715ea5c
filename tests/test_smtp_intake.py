"""SMTP/LMTP intake against a running service: 250 only after commit, 451 when it cannot."""

from __future__ import annotations

import smtplib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text

from mailflow.service import App
from mailflow.store.models import Message, MessageSource
from tests.servers.ports import wait_until
from tests.support import message_count, migrated_app, running, send, settings_for

RAW = b"From: r@example.org\r\nSubject: threat\r\nMessage-ID: <s1@example.org>\r\n\r\nhelp\r\n"


def test_message_is_stored_with_envelope_provenance(tmp_path: Path, db_url: str) -> None:
    settings = settings_for(tmp_path, db_url, recipients=("Report@Example.org",))
    with migrated_app(settings) as app, running(app):
        assert send(settings, RAW, to="report@example.org") == {}
        with app.sessions() as session:
            source = session.scalars(select(MessageSource)).one()
            assert source.channel == "smtp"
            assert source.envelope_from == "sender@example.org"
            assert source.envelope_to == '["report@example.org"]'
            assert source.smtp_peer is not None and source.smtp_peer.startswith("127.0.0.1:")


def test_unknown_recipient_gets_550(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"sqlite:///{tmp_path}/m.db", recipients=("report@x.org",))
    with migrated_app(settings) as app, running(app):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            send(settings, RAW, to="someone@x.org")
        [(code, _)] = caught.value.recipients.values()
        assert code == 550
        assert message_count(app) == 0


def test_oversize_message_gets_552(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"sqlite:///{tmp_path}/m.db", max_message_bytes=10_000)
    with migrated_app(settings) as app, running(app):
        with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) as caught:
            send(settings, RAW + b"x" * 20_000)
        assert caught.value.smtp_code == 552
        assert message_count(app) == 0


def test_store_refusing_writes_gives_451_then_retry_delivers(tmp_path: Path, db_url: str) -> None:
    settings = settings_for(tmp_path, db_url)
    with migrated_app(settings) as app, running(app):
        with _writes_refused(db_url, app.engine.dispose):
            with pytest.raises(smtplib.SMTPDataError) as caught:
                send(settings, RAW)
            assert caught.value.smtp_code == 451
        assert message_count(app) == 0
        assert send(settings, RAW) == {}  # the sender's retry
        assert message_count(app) == 1


def test_lmtp_answers_once_per_recipient(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"sqlite:///{tmp_path}/m.db", protocol="lmtp")
    with migrated_app(settings) as app, running(app):
        client = smtplib.LMTP(settings.smtp_intake.host, settings.smtp_intake.port)
        with client:
            # smtplib reads only the first of LMTP's per-recipient DATA replies (RFC 2033);
            # read the second ourselves, so QUIT then gets its own 221.
            refused = client.sendmail("s@example.org", ["a@localhost", "b@localhost"], RAW)
            code, reply = client.getreply()
        assert refused == {}
        assert code == 250 and reply.startswith(b"2.0.0 OK: stored as")
        # Processing runs after the 250, in the background.
        assert wait_until(lambda: _status(app) == "processed", timeout=10)
        with app.sessions() as session:
            source = session.scalars(select(MessageSource)).one()
            assert source.channel == "lmtp"


def _status(app: App) -> str:
    with app.sessions() as session:
        return session.scalars(select(Message.status)).one()


class _writes_refused:
    """Make the database refuse writes the way production ones do: locked, or read-only."""

    def __init__(self, db_url: str, reset_pool: object) -> None:
        self.url = make_url(db_url)
        self.reset_pool = reset_pool
        self.lock: sqlite3.Connection | None = None

    def __enter__(self) -> None:
        if self.url.get_backend_name() == "sqlite":
            self.lock = sqlite3.connect(self.url.database or "", isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")
        else:
            self._read_only(True)

    def __exit__(self, *exc: object) -> None:
        if self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
        else:
            self._read_only(False)

    def _read_only(self, on: bool) -> None:
        engine = create_engine(self.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(
                text(
                    f'ALTER DATABASE "{self.url.database}" SET default_transaction_read_only = '
                    + ("on" if on else "off")
                )
            )
        engine.dispose()
        assert callable(self.reset_pool)
        self.reset_pool()  # new connections pick the setting up
