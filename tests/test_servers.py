"""The test-server layer works: real Dovecot, SMTP sink and PostgreSQL, and the CI guards."""

from __future__ import annotations

import os
import re
import smtplib
import socket
import subprocess
import sys
import textwrap
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers import free_port
from tests.servers.dovecot import Credentials, DovecotServer
from tests.servers.postgres import create_database, drop_database, normalize_url
from tests.servers.smtp_sink import SMTPSink

REPO_ROOT = Path(__file__).resolve().parent.parent
SENDER = "outreach@example.org"


def make_message(subject: str, body: str = "Hello.\r\n") -> bytes:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = "case@example.org"
    message["Subject"] = subject
    message.set_content(body)
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def maildir_contents(folder: Path) -> list[bytes]:
    """The messages stored in a Maildir folder, with CRLF line ends (Dovecot stores LF)."""
    files = [path for sub in ("new", "cur") for path in (folder / sub).iterdir()]
    return [path.read_bytes().replace(b"\n", b"\r\n") for path in files]


# -- ports ---------------------------------------------------------------------------------------


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


# -- Dovecot -------------------------------------------------------------------------------------


@pytest.mark.integration
def test_dovecot_login_append_and_fetch_by_uid(
    dovecot: DovecotServer, imap_user: Credentials
) -> None:
    raw = make_message("appended")
    uid = dovecot.append(imap_user.username, raw, flags=[b"\\Seen"])

    client = dovecot.client(imap_user.username)
    try:
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        fetched = client.fetch([uid], ["RFC822", "FLAGS"])
    finally:
        client.logout()

    assert uids == [uid]
    assert fetched[uid][b"RFC822"] == raw
    assert b"\\Seen" in fetched[uid][b"FLAGS"]


@pytest.mark.integration
def test_dovecot_offers_idle_uidplus_and_move(
    dovecot: DovecotServer, imap_user: Credentials
) -> None:
    client = dovecot.client(imap_user.username)
    try:
        capabilities = set(client.capabilities())
    finally:
        client.logout()
    assert {b"IDLE", b"UIDPLUS", b"MOVE"} <= capabilities


@pytest.mark.integration
def test_dovecot_folders_move_and_maildir(dovecot: DovecotServer, imap_user: Credentials) -> None:
    user = imap_user.username
    raw = make_message("to be archived")
    dovecot.create_folder(user, "Archive")
    uid = dovecot.append(user, raw)

    client = dovecot.client(user)
    try:
        client.select_folder("INBOX")
        client.move([uid], "Archive")
        inbox_after = client.search("ALL")
        client.select_folder("Archive", readonly=True)
        archived = client.fetch(client.search("ALL"), ["RFC822"])
    finally:
        client.logout()

    assert inbox_after == []
    assert [data[b"RFC822"] for data in archived.values()] == [raw]
    # Maildir++ keeps folder "Archive" in the subdirectory ".Archive".
    assert maildir_contents(dovecot.maildir(user) / ".Archive") == [raw]


@pytest.mark.integration
def test_dovecot_append_into_named_folder(dovecot: DovecotServer, imap_user: Credentials) -> None:
    user = imap_user.username
    dovecot.create_folder(user, "Cases")
    raw = make_message("filed")
    uid = dovecot.append(user, raw, folder="Cases")

    client = dovecot.client(user)
    try:
        inbox = client.select_folder("INBOX", readonly=True)
        client.select_folder("Cases", readonly=True)
        fetched = client.fetch([uid], ["RFC822"])
    finally:
        client.logout()

    assert inbox[b"EXISTS"] == 0
    assert fetched[uid][b"RFC822"] == raw


@pytest.mark.integration
def test_new_users_can_log_in_at_once(dovecot: DovecotServer) -> None:
    # Back to back: a shared passwd-file would refuse some of these for up to a second.
    for _ in range(5):
        username, password = dovecot.new_user()
        client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
        client.login(username, password)
        client.logout()


@pytest.mark.integration
def test_new_users_are_isolated(dovecot: DovecotServer) -> None:
    alice, bob = dovecot.new_user(), dovecot.new_user()
    raw = make_message("for alice only")
    dovecot.append(alice.username, raw)

    client = dovecot.client(bob.username)
    try:
        bob_inbox = client.select_folder("INBOX", readonly=True)
    finally:
        client.logout()
    assert bob_inbox[b"EXISTS"] == 0

    stranger = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
    try:
        with pytest.raises(LoginError):
            stranger.login(bob.username, alice.password)
    finally:
        stranger.shutdown()

    assert maildir_contents(dovecot.maildir(alice.username)) == [raw]
    assert maildir_contents(dovecot.maildir(bob.username)) == []


@pytest.mark.integration
def test_dovecot_idle_reports_new_mail(dovecot: DovecotServer, imap_user: Credentials) -> None:
    watcher = dovecot.client(imap_user.username)
    try:
        watcher.select_folder("INBOX")
        watcher.idle()
        dovecot.append(imap_user.username, make_message("wake up"))
        exists = _idle_until_exists(watcher, timeout=10.0)
        watcher.idle_done()
    finally:
        watcher.logout()
    assert exists == 1


def _idle_until_exists(client: IMAPClient, timeout: float) -> int | None:
    """The message count from the first EXISTS push within ``timeout``, else None."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        for response in client.idle_check(timeout=remaining):
            if len(response) >= 2 and response[1] == b"EXISTS":
                return int(response[0])
    return None


def test_imap_fixtures_are_marked_integration_automatically(
    request: pytest.FixtureRequest, imap_user: Credentials
) -> None:
    # Deliberately not decorated: the conftest hook must have marked it.
    assert request.node.get_closest_marker("integration") is not None


# -- SMTP sink -----------------------------------------------------------------------------------


def send(sink: SMTPSink, raw: bytes, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        return client.sendmail(SENDER, recipients, raw)


def test_smtp_sink_records_accepted_message(smtp_sink: SMTPSink) -> None:
    # A body line starting with "." checks that dot-stuffing is undone.
    raw = make_message("recorded", body=".dotted line\r\nplain line\r\n")
    refused = send(smtp_sink, raw, ["a@example.org", "b@example.org"])

    assert refused == {}
    [message] = smtp_sink.messages
    assert message.envelope_from == SENDER
    assert message.rcpt_tos == ["a@example.org", "b@example.org"]
    assert message.data == raw
    assert message.peer[0] == "127.0.0.1"


def test_smtp_sink_messages_is_a_snapshot(smtp_sink: SMTPSink) -> None:
    send(smtp_sink, make_message("one"), ["a@example.org"])
    snapshot = smtp_sink.messages
    snapshot.clear()
    assert len(smtp_sink.messages) == 1


def test_smtp_sink_accepts_concurrent_clients(smtp_sink: SMTPSink) -> None:
    subjects = [f"thread {t} message {m}" for t in range(4) for m in range(5)]

    def send_batch(batch: list[str]) -> None:
        for subject in batch:
            send(smtp_sink, make_message(subject), ["a@example.org"])

    threads = [threading.Thread(target=send_batch, args=(subjects[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    received = smtp_sink.wait_for_messages(len(subjects), timeout=10)
    assert sorted(m.data for m in received) == sorted(make_message(s) for s in subjects)


def test_smtp_sink_wait_for_messages_times_out(smtp_sink: SMTPSink) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        smtp_sink.wait_for_messages(1, timeout=0.2)


def test_reply_for_defers_matching_recipients_only(smtp_sink: SMTPSink) -> None:
    smtp_sink.reply_for(lambda address: address.startswith("busy@"), "451 4.7.1 Try later")
    raw = make_message("partly deferred")

    refused = send(smtp_sink, raw, ["ok@example.org", "busy@example.org"])

    assert refused == {"busy@example.org": (451, b"4.7.1 Try later")}
    [message] = smtp_sink.messages
    assert message.rcpt_tos == ["ok@example.org"]


def test_reply_for_all_recipients_refuses_the_message(smtp_sink: SMTPSink) -> None:
    smtp_sink.reply_for(lambda address: True, "550 5.1.1 No such user")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp_sink, make_message("nobody"), ["gone@example.org"])
    assert refused.value.recipients == {"gone@example.org": (550, b"5.1.1 No such user")}
    assert smtp_sink.messages == []


def test_reply_on_data_rejects_the_message(smtp_sink: SMTPSink) -> None:
    smtp_sink.reply_on_data("554 5.0.0 no")
    with pytest.raises(smtplib.SMTPDataError) as rejected:
        send(smtp_sink, make_message("rejected"), ["a@example.org"])
    assert (rejected.value.smtp_code, rejected.value.smtp_error) == (554, b"5.0.0 no")
    assert smtp_sink.messages == []

    smtp_sink.reply_on_data(None)
    send(smtp_sink, make_message("accepted again"), ["a@example.org"])
    assert len(smtp_sink.messages) == 1


def test_drop_every_cuts_every_nth_data(smtp_sink: SMTPSink) -> None:
    smtp_sink.drop_every(2)
    raws = [make_message(f"message {i}") for i in range(4)]
    outcomes = []
    for raw in raws:
        try:
            send(smtp_sink, raw, ["a@example.org"])
            outcomes.append("sent")
        except smtplib.SMTPServerDisconnected:
            outcomes.append("dropped")

    assert outcomes == ["sent", "dropped", "sent", "dropped"]
    assert smtp_sink.dropped == 2
    assert [m.data for m in smtp_sink.messages] == [raws[0], raws[2]]


def test_dropped_connection_gets_no_reply_at_all(smtp_sink: SMTPSink) -> None:
    smtp_sink.drop_every(1)
    with socket.create_connection((smtp_sink.host, smtp_sink.port), timeout=10) as sock:
        replies = sock.makefile("rb")
        assert replies.readline().startswith(b"220")
        for command, code in [
            (b"HELO client", b"250"),
            (b"MAIL FROM:<a@example.org>", b"250"),
            (b"RCPT TO:<b@example.org>", b"250"),
            (b"DATA", b"354"),
        ]:
            sock.sendall(command + b"\r\n")
            assert replies.readline().startswith(code), command
        sock.sendall(make_message("cut off") + b".\r\n")
        # EOF, not a reply: the sink closed the connection without answering the DATA.
        assert replies.read() == b""
    assert smtp_sink.dropped == 1


def test_reset_clears_messages_and_misbehaviour(smtp_sink: SMTPSink) -> None:
    send(smtp_sink, make_message("before reset"), ["a@example.org"])
    smtp_sink.reply_for(lambda address: True, "451 4.7.1 Try later")
    smtp_sink.reply_on_data("554 5.0.0 no")
    smtp_sink.drop_every(1)

    smtp_sink.reset()

    assert (smtp_sink.messages, smtp_sink.dropped) == ([], 0)
    raw = make_message("after reset")
    assert send(smtp_sink, raw, ["a@example.org"]) == {}
    assert [m.data for m in smtp_sink.messages] == [raw]


# -- PostgreSQL ----------------------------------------------------------------------------------


def _roundtrip(url: str) -> list[str]:
    """Create a table, insert two rows and read them back through SQLAlchemy."""
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        notes = sa.Table("notes", metadata, sa.Column("body", sa.Text, nullable=False))
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(notes.insert(), [{"body": "first"}, {"body": "second"}])
        with engine.connect() as conn:
            return list(conn.scalars(sa.select(notes.c.body).order_by(notes.c.body)))
    finally:
        engine.dispose()


@pytest.mark.integration
def test_postgres_url_is_a_fresh_database(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            name = conn.scalar(sa.text("SELECT current_database()"))
            tables = sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
    assert name == sa.make_url(postgres_url).database
    assert name is not None and name.startswith("mailflow_test_")
    assert tables == []
    assert _roundtrip(postgres_url) == ["first", "second"]


@pytest.mark.integration
def test_postgres_database_is_dropped_despite_open_connections(postgres_server: str) -> None:
    url = create_database(postgres_server)
    name = sa.make_url(url).database
    lingering = sa.create_engine(url).connect()  # like a leaked connection in the code under test
    try:
        assert _database_exists(postgres_server, name)
        drop_database(postgres_server, url)
        assert not _database_exists(postgres_server, name)
    finally:
        lingering.invalidate()
        lingering.close()


def _database_exists(admin_url: str, name: str | None) -> bool:
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM pg_database WHERE datname = :name")
            count: int | None = conn.scalar(query, {"name": name})
    finally:
        engine.dispose()
    return count == 1


@pytest.mark.integration
def test_drop_database_refuses_databases_it_did_not_create(postgres_server: str) -> None:
    with pytest.raises(ValueError, match="refusing to drop 'postgres'"):
        drop_database(postgres_server, postgres_server)
    assert _database_exists(postgres_server, "postgres")


def test_normalize_url_selects_psycopg3() -> None:
    assert normalize_url("postgres://u:p@db:5433/x") == "postgresql+psycopg://u:p@db:5433/x"
    assert normalize_url("postgresql+psycopg2://u@db/x") == "postgresql+psycopg://u@db/x"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        normalize_url("sqlite:///x.db")


def test_db_url_serves_both_backends(db_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.id
    assert sa.make_url(db_url).get_backend_name() == backend
    # Only the PostgreSQL variant needs a server, so only it is an integration test.
    is_integration = request.node.get_closest_marker("integration") is not None
    assert is_integration == (backend == "postgresql")
    assert _roundtrip(db_url) == ["first", "second"]


# -- require() and the CI guard, in a separate pytest process ------------------------------------


def run_pytest(tmp_path: Path, source: str, *, ci: bool) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a test module in a fresh pytest, with or without ``CI=true``."""
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(source), encoding="utf-8")
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\nmarkers =\n    integration: real server\n", encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "CI" and not key.startswith("PYTEST_")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # Third-party plugins (hypothesis) are irrelevant here and cost most of the start-up time.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if ci:
        env["CI"] = "true"
    command = [sys.executable, "-m", "pytest", "-p", "tests.servers.ci_guard"]
    command += ["-p", "no:cacheprovider", "-c", str(ini), "--rootdir", str(tmp_path), "-rs"]
    return subprocess.run(
        [*command, "test_sample.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def outcomes(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """Counts from pytest's final line, e.g. {"passed": 1, "skipped": 2}."""
    last_line = result.stdout.strip().splitlines()[-1]
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", last_line)}


REQUIRE_SAMPLE = """
    from tests.servers import require

    def test_needs_a_server():
        require(False, "no such server here")
"""

GUARD_SAMPLE = """
    import pytest

    @pytest.mark.integration
    def test_real_server():
        pytest.skip("server unavailable")

    def test_unit_skip():
        pytest.skip("not relevant here")

    @pytest.fixture(params=[
        pytest.param("file", id="file"),
        pytest.param("server", id="server", marks=pytest.mark.integration),
    ])
    def backend(request):
        if request.param == "server":
            pytest.skip("backend server unavailable")
        return request.param

    def test_backend(backend):
        assert backend == "file"
"""


def test_require_skips_outside_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, REQUIRE_SAMPLE, ci=False)
    assert result.returncode == 0, result.stdout
    assert outcomes(result) == {"skipped": 1}
    assert "no such server here" in result.stdout


def test_require_fails_under_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, REQUIRE_SAMPLE, ci=True)
    assert result.returncode == 1, result.stdout
    assert outcomes(result) == {"failed": 1}
    assert "no such server here (CI=true" in result.stdout


def test_ci_guard_fails_session_on_skipped_integration_tests(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, GUARD_SAMPLE, ci=True)
    assert result.returncode == 1, result.stdout
    assert outcomes(result) == {"passed": 1, "skipped": 3}
    assert "CI=true: 2 integration test(s) were skipped, failing the run" in result.stdout
    guard_lines = [line for line in result.stdout.splitlines() if "SKIPPED integration" in line]
    assert guard_lines == [
        "SKIPPED integration test test_sample.py::test_real_server: server unavailable",
        "SKIPPED integration test test_sample.py::test_backend[server]: backend server unavailable",
    ]


def test_ci_guard_is_inactive_outside_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, GUARD_SAMPLE, ci=False)
    assert result.returncode == 0, result.stdout
    assert outcomes(result) == {"passed": 1, "skipped": 3}
    assert "SKIPPED integration" not in result.stdout
