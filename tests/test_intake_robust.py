"""Issue #3's intake failure modes, against real Dovecot and real databases."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailflow.errors import ImapError
from mailflow.intake import utcnow
from mailflow.poller import ImapPoller
from mailflow.secret import Secret
from mailflow.service import build
from mailflow.settings import DatabaseSettings, ImapAccountSettings, Settings
from mailflow.store.models import Blob, Message, MessageSource
from tests.servers.dovecot import Credentials, DovecotServer
from tests.servers.ports import wait_until
from tests.servers.proxy import CuttingProxy
from tests.support import migrated_app, settings_for

pytestmark = pytest.mark.integration


def account(host: str, port: int, user: Credentials, **changes: object) -> ImapAccountSettings:
    values: dict[str, object] = dict(
        name="reports",
        host=host,
        port=port,
        security="plain",
        username=user.username,
        password=Secret("test", user.password),
        batch_size=10,
        poll_interval_seconds=300,
    )
    values.update(changes)
    return ImapAccountSettings(**values)  # type: ignore[arg-type]


def mail(n: int, filler: int = 400) -> bytes:
    return (
        f"From: r{n}@example.org\r\nSubject: report {n}\r\nMessage-ID: <m{n}@example.org>\r\n"
        f"\r\n{'x' * filler}\r\n"
    ).encode()


def nested(depth: int) -> bytes:
    head = "From: p@example.org\r\nSubject: poison\r\nMIME-Version: 1.0\r\n"
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    closing = "".join(f"--b{i}--\r\n" for i in reversed(range(depth)))
    return (head + opening + "Content-Type: text/plain\r\n\r\nhi\r\n" + closing).encode()


def counts(settings: Settings) -> dict[str, int]:
    app = build(settings)
    try:
        with app.sessions() as session:
            rows = session.execute(select(Message.status, func.count()).group_by(Message.status))
            result = {str(status): int(n) for status, n in rows}
            result["sources"] = int(
                session.scalar(select(func.count()).select_from(MessageSource)) or 0
            )
            result["max_times"] = int(session.scalar(select(func.max(Message.times_received))) or 0)
            return result
    finally:
        app.close()


def test_new_mail_arriving_while_polling_is_picked_up_by_idle(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    settings = settings_for(tmp_path, db_url)
    with migrated_app(settings) as app:
        poller = ImapPoller(account(dovecot.host, dovecot.port, imap_user), app.intake, utcnow)
        stop = threading.Event()
        thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
        thread.start()
        try:
            for n in range(6):
                dovecot.append(imap_user.username, mail(n))
                time.sleep(0.2)
            # poll_interval is 300 s: only IDLE can bring these in within the timeout.
            assert wait_until(lambda: counts(settings).get("processed", 0) == 6, timeout=20)
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()


def test_two_pollers_on_the_same_folder_store_each_message_once(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    for n in range(120):
        dovecot.append(imap_user.username, mail(n))
    # SQLite runs writers one at a time: give each room to wait for the other's batch.
    settings = replace(settings_for(tmp_path, db_url), database=DatabaseSettings(db_url, 10_000))
    with migrated_app(settings):
        apps = [build(settings), build(settings)]  # as two processes would: separate pools
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(index: int) -> None:
            poller = ImapPoller(
                account(dovecot.host, dovecot.port, imap_user), apps[index].intake, utcnow
            )
            barrier.wait()
            try:
                poller.poll_once()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        for app in apps:
            app.close()
    assert errors == []
    assert counts(settings) == {"processed": 120, "sources": 120, "max_times": 1}


def test_connection_dropped_mid_batch_loses_and_duplicates_nothing(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    for n in range(60):
        dovecot.append(imap_user.username, mail(n, filler=2000))
    settings = settings_for(tmp_path, db_url)
    with migrated_app(settings) as app, CuttingProxy(dovecot.host, dovecot.port) as proxy:
        poller = ImapPoller(account(proxy.host, proxy.port, imap_user), app.intake, utcnow)
        proxy.cut_after(40_000)  # a few batches of ~22 KB get through, then the link dies
        with pytest.raises(ImapError):
            poller.poll_once()
        assert proxy.cuts == 1
        partial = counts(settings).get("processed", 0)
        assert 0 < partial < 60
        proxy.cut_after(None)
        assert poller.poll_once() == 60 - partial
    assert counts(settings) == {"processed": 60, "sources": 60, "max_times": 1}


def test_seen_set_by_another_client_does_not_hide_mail(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    dovecot.append(imap_user.username, mail(1), flags=[b"\\Seen"])
    dovecot.append(imap_user.username, mail(2))
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        poller = ImapPoller(account(dovecot.host, dovecot.port, imap_user), app.intake, utcnow)
        assert poller.poll_once() == 2


def test_one_poison_message_among_100_is_quarantined_and_the_rest_processed(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    for n in range(100):
        dovecot.append(imap_user.username, nested(2000) if n == 37 else mail(n))
    settings = settings_for(tmp_path, db_url)
    with migrated_app(settings) as app:
        poller = ImapPoller(account(dovecot.host, dovecot.port, imap_user), app.intake, utcnow)
        assert poller.poll_once() == 100
        with app.sessions() as session:
            poison = session.scalars(select(Message).where(Message.status == "quarantined")).one()
            assert poison.error is not None and "max_depth" in poison.error
            assert poison.subject == "poison"
    assert counts(settings) == {"processed": 99, "quarantined": 1, "sources": 100, "max_times": 1}


def test_durable_intake_defers_processing_until_process_pending(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    for n in range(5):
        dovecot.append(imap_user.username, mail(n))
    settings = settings_for(tmp_path, db_url)
    with migrated_app(settings) as app:
        acct = account(dovecot.host, dovecot.port, imap_user)
        poller = ImapPoller(acct, app.intake, utcnow, defer_processing=True)
        assert poller.poll_once() == 5
        assert counts(settings)["received"] == 5
        assert app.intake.process_pending() == 5
    assert counts(settings) == {"processed": 5, "sources": 5, "max_times": 1}


def test_large_message_is_fetched_in_chunks(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    big = mail(1, filler=0) + (b"y" * 998 + b"\r\n") * 10_000  # ~10 MB, over one batch budget
    dovecot.append(imap_user.username, big)
    dovecot.append(imap_user.username, mail(2))
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        acct = replace(account(dovecot.host, dovecot.port, imap_user), batch_size=100)
        assert ImapPoller(acct, app.intake, utcnow).poll_once() == 2
        with app.sessions() as session:
            stored = session.scalars(select(Blob.data).order_by(Blob.size.desc())).all()
    assert stored[0] == big  # every chunk, in order, nothing lost or repeated
    assert stored[1] == mail(2)


def test_large_message_between_pipelined_batches_keeps_uid_order(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    big = mail(3, filler=0) + (b"y" * 998 + b"\r\n") * 10_000  # over one batch's byte budget
    for n in range(1, 7):
        dovecot.append(imap_user.username, big if n == 3 else mail(n))
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        acct = replace(account(dovecot.host, dovecot.port, imap_user), batch_size=2)
        assert ImapPoller(acct, app.intake, utcnow).poll_once() == 6
        with app.sessions() as session:
            stored = session.execute(
                select(MessageSource.uid, Blob.data)
                .join(Message, Message.id == MessageSource.message_pk)
                .join(Blob, Blob.sha256 == Message.sha256)
                .order_by(Message.id)
            ).all()
    assert [uid for uid, _ in stored] == [1, 2, 3, 4, 5, 6]  # stored in UID order
    assert [data for _, data in stored] == [big if n == 3 else mail(n) for n in range(1, 7)]


def test_move_after_commit_moves_only_stored_messages(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    user = imap_user.username
    dovecot.create_folder(user, "Stored")
    for n in range(3):
        dovecot.append(user, mail(n))
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        acct = account(dovecot.host, dovecot.port, imap_user, after_commit="move", move_to="Stored")
        assert ImapPoller(acct, app.intake, utcnow).poll_once() == 3
    client = dovecot.client(user)
    try:
        inbox = client.select_folder("INBOX", readonly=True)[b"EXISTS"]
        stored = client.select_folder("Stored", readonly=True)[b"EXISTS"]
    finally:
        client.logout()
    assert (inbox, stored) == (0, 3)


def test_run_reconnects_after_the_link_drops_and_fetches_later_mail(
    tmp_path: Path, db_url: str, dovecot: DovecotServer, imap_user: Credentials
) -> None:
    settings = settings_for(tmp_path, db_url)
    with migrated_app(settings) as app, CuttingProxy(dovecot.host, dovecot.port) as proxy:
        acct = account(proxy.host, proxy.port, imap_user, poll_interval_seconds=1)
        poller = ImapPoller(acct, app.intake, utcnow)
        stop = threading.Event()
        thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
        thread.start()
        try:
            dovecot.append(imap_user.username, mail(1))
            assert wait_until(lambda: counts(settings).get("processed", 0) == 1, timeout=15)
            proxy.cut_after(0)  # the next bytes from the server kill the link
            dovecot.append(imap_user.username, mail(2))
            assert wait_until(lambda: proxy.cuts >= 1, timeout=15)
            proxy.cut_after(None)
            # Reconnected (after the first backoff) and caught up.
            assert wait_until(lambda: counts(settings).get("processed", 0) == 2, timeout=30)
        finally:
            stop.set()
            thread.join(15)
        assert not thread.is_alive()
    assert counts(settings) == {"processed": 2, "sources": 2, "max_times": 1}
