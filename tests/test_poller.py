"""IMAP polling against a real Dovecot: by UID, BODY.PEEK[], checkpointed, re-runs are no-ops."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from mailflow import imap
from mailflow.errors import ImapError
from mailflow.intake import utcnow
from mailflow.poller import ImapPoller
from mailflow.secret import Secret
from mailflow.settings import ImapAccountSettings
from mailflow.store.models import ImapCheckpoint, Message, MessageSource
from tests.servers.dovecot import Credentials, DovecotServer
from tests.support import migrated_app, settings_for

pytestmark = pytest.mark.integration


def account(server: DovecotServer, user: Credentials, **changes: object) -> ImapAccountSettings:
    values: dict[str, object] = dict(
        name="reports",
        host=server.host,
        port=server.port,
        security="plain",
        username=user.username,
        password=Secret("test", user.password),
        batch_size=2,
    )
    values.update(changes)
    return ImapAccountSettings(**values)  # type: ignore[arg-type]


def mail(n: int) -> bytes:
    return (
        f"From: r{n}@example.org\r\nSubject: report {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()


def test_poll_stores_new_mail_once_and_never_sets_seen(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    for n in range(5):
        dovecot.append(imap_user.username, mail(n))
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        poller = ImapPoller(account(dovecot, imap_user), app.intake, utcnow)
        assert poller.poll_once() == 5
        assert poller.poll_once() == 0
        dovecot.append(imap_user.username, mail(5))
        assert poller.poll_once() == 1
        with app.sessions() as session:
            subjects = session.scalars(select(Message.subject).order_by(Message.id)).all()
            assert subjects == [f"report {n}" for n in range(6)]
            uids = session.scalars(select(MessageSource.uid).order_by(MessageSource.uid)).all()
            assert uids == [1, 2, 3, 4, 5, 6]
            mark = session.get_one(ImapCheckpoint, ("reports", "INBOX"))
            assert mark.last_uid == 6 and mark.last_error is None
    client = dovecot.client(imap_user.username)
    try:
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(client.search("ALL"))
    finally:
        client.logout()
    assert all(b"\\Seen" not in item for item in flags.values())


def test_protocol_trace_is_formatted_only_when_it_is_logged(
    dovecot: DovecotServer, imap_user: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    # imapclient turns imaplib's trace on, which formats every message body it receives.
    caplog.set_level(logging.WARNING, logger=imap.PROTOCOL_TRACE_LOGGER)
    with imap.session(account(dovecot, imap_user)) as client:
        assert client._imap.debug == 0
    caplog.set_level(logging.DEBUG, logger=imap.PROTOCOL_TRACE_LOGGER)
    with imap.session(account(dovecot, imap_user)) as client:
        assert client._imap.debug > 0


def test_uidvalidity_change_rescans_without_duplicates(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    user = imap_user.username
    dovecot.create_folder(user, "Reports")
    for n in range(3):
        dovecot.append(user, mail(n), folder="Reports")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        poller = ImapPoller(account(dovecot, imap_user, folders=("Reports",)), app.intake, utcnow)
        assert poller.poll_once() == 3
        client = dovecot.client(user)
        try:
            client.delete_folder("Reports")  # recreating gives a new UIDVALIDITY
        finally:
            client.logout()
        dovecot.create_folder(user, "Reports")
        for n in (0, 1, 2, 9):
            dovecot.append(user, mail(n), folder="Reports")
        assert poller.poll_once() == 1  # only message 9 is new
        with app.sessions() as session:
            assert len(session.scalars(select(Message.id)).all()) == 4


def test_flag_after_commit_marks_stored_messages(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    dovecot.append(imap_user.username, mail(1))
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        poller = ImapPoller(account(dovecot, imap_user, after_commit="flag"), app.intake, utcnow)
        assert poller.poll_once() == 1
    client = dovecot.client(imap_user.username)
    try:
        client.select_folder("INBOX", readonly=True)
        [flags] = client.get_flags(client.search("ALL")).values()
    finally:
        client.logout()
    assert b"$MailflowStored" in flags and b"\\Seen" not in flags


@pytest.mark.parametrize("after_commit", ["flag", "move"])
def test_flag_or_move_while_the_next_batch_is_already_requested(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials, after_commit: str
) -> None:
    # batch_size=2 over 5 messages: each STORE/MOVE goes out while the next FETCH is pending.
    user = imap_user.username
    dovecot.create_folder(user, "Stored")
    for n in range(5):
        dovecot.append(user, mail(n))
    acct = account(dovecot, imap_user, after_commit=after_commit, move_to="Stored")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        assert ImapPoller(acct, app.intake, utcnow).poll_once() == 5
        with app.sessions() as session:
            subjects = session.scalars(select(Message.subject).order_by(Message.id)).all()
    assert subjects == [f"report {n}" for n in range(5)]
    client = dovecot.client(user)
    try:
        inbox = client.select_folder("INBOX", readonly=True)[b"EXISTS"]
        flags = client.get_flags(client.search("ALL")) if inbox else {}
        moved = client.select_folder("Stored", readonly=True)[b"EXISTS"]
    finally:
        client.logout()
    if after_commit == "move":
        assert (inbox, moved) == (0, 5)
    else:
        assert (inbox, moved) == (5, 0)
        assert all(b"$MailflowStored" in item for item in flags.values())


def test_wrong_password_is_an_imap_error_recorded_for_status(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    bad = account(dovecot, imap_user, password=Secret("test", "wrong-pw-8812"))
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        with pytest.raises(ImapError) as caught:
            ImapPoller(bad, app.intake, utcnow).poll_once()
        assert "wrong-pw-8812" not in str(caught.value)
        with app.sessions() as session:
            mark = session.get_one(ImapCheckpoint, ("reports", "INBOX"))
            assert mark.last_error is not None and "AUTHENTICATIONFAILED" in mark.last_error.upper()


def _config(tmp_path: Path, server: DovecotServer, *accounts: tuple[str, str]) -> Path:
    text = '[service]\ndata_dir = "data"\n'
    for name, user in accounts:
        text += (
            f'\n[[imap_accounts]]\nname = "{name}"\nhost = "{server.host}"\n'
            f'port = {server.port}\nsecurity = "plain"\nusername = "{user}"\n'
        )
    path = tmp_path / "mailflow.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _cli(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailflow", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_poll_once_cli_one_failing_account_does_not_stop_the_other(
    tmp_path: Path, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    dovecot.append(imap_user.username, mail(1))
    config = _config(tmp_path, dovecot, ("broken", "nobody-here"), ("good", imap_user.username))
    env = {
        "PATH": "/usr/bin:/bin",
        "MAILFLOW_IMAP_BROKEN_PASSWORD": "nope-4471",
        "MAILFLOW_IMAP_GOOD_PASSWORD": imap_user.password,
    }
    result = _cli(config, env, "poll", "--once")
    assert result.returncode == 1
    assert "good: 1 new message(s)" in result.stdout
    assert "'broken'" in result.stderr and "nope-4471" not in result.stderr
    status = _cli(config, env, "status")
    assert "imap good/INBOX" in status.stdout and "last uid 1" in status.stdout
    assert "imap broken/INBOX" in status.stdout and "last error" in status.stdout


def test_config_check_connect_reports_each_server(
    tmp_path: Path, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    config = _config(tmp_path, dovecot, ("good", imap_user.username))
    env = {"PATH": "/usr/bin:/bin", "MAILFLOW_IMAP_GOOD_PASSWORD": imap_user.password}
    assert _cli(config, env, "db", "upgrade").returncode == 0
    ok = _cli(config, env, "config", "check", "--connect")
    assert ok.returncode == 0, ok.stderr
    assert "ok: imap good" in ok.stdout and "ok: database" in ok.stdout
    env["MAILFLOW_IMAP_GOOD_PASSWORD"] = "bad-pw-3390"
    bad = _cli(config, env, "config", "check", "--connect")
    assert bad.returncode == 1
    assert "failed: imap good" in bad.stderr and "bad-pw-3390" not in bad.stderr + bad.stdout


def test_serve_polls_configured_accounts_and_stops_cleanly(
    tmp_path: Path, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    import signal
    import sqlite3
    import time

    from tests.servers.ports import free_port, wait_until

    config = _config(tmp_path, dovecot, ("good", imap_user.username))
    env = {
        "PATH": "/usr/bin:/bin",
        "MAILFLOW_IMAP_GOOD_PASSWORD": imap_user.password,
        "MAILFLOW_SMTP_INTAKE_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailflow", "--config", str(config), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = tmp_path / "data" / "mailflow.db"

    def stored() -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(db) as conn:
            try:
                return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
            except sqlite3.OperationalError:
                return 0  # schema not created yet

    try:
        dovecot.append(imap_user.username, mail(1))
        assert wait_until(lambda: stored() == 1, timeout=30)
        time.sleep(0.5)  # now idling
        dovecot.append(imap_user.username, mail(2))  # IDLE wakes the poller
        assert wait_until(lambda: stored() == 2, timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "event=stopped" in stderr
    assert imap_user.password not in stderr
