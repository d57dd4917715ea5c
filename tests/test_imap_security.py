"""IMAP transport security and credentials against real Dovecot servers on loopback.

Three kinds of server: one with a certificate from a throwaway CA (IMAPS on one port, STARTTLS
on another), one that also validates OAuth2 JWTs locally (XOAUTH2), and one with ``ssl = no``
(no STARTTLS). A recording proxy shows what the client sent in clear, and Dovecot's own log
shows who logged in, how (method) and over what (TLS or not).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import shlex
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailflow import config, imap
from mailflow.errors import ImapError, MailflowError, SecretError
from mailflow.intake import utcnow
from mailflow.poller import ImapPoller
from mailflow.secret import Secret
from mailflow.settings import ImapAccountSettings
from mailflow.store.models import Message
from tests.servers import require
from tests.servers.dovecot import Credentials, DovecotServer, find_dovecot
from tests.servers.ports import LOOPBACK, wait_until
from tests.servers.tls import TlsFiles, throwaway_tls
from tests.support import migrated_app, settings_for

integration = pytest.mark.integration
LOG_WAIT = 10.0  # Dovecot writes its log through a separate process: poll for lines


# -- servers -------------------------------------------------------------------------------------


def _dovecot_binary() -> str:
    binary = find_dovecot()
    require(binary is not None, "dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    assert binary is not None
    return binary


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return throwaway_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def oauth2_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="module")
def dovecot_tls(tls_files: TlsFiles) -> Iterator[DovecotServer]:
    """IMAPS on ``imaps_port``, IMAP with STARTTLS on ``port``."""
    with DovecotServer(_dovecot_binary(), tls=tls_files) as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_oauth2(tls_files: TlsFiles, oauth2_key: bytes) -> Iterator[DovecotServer]:
    """Like dovecot_tls, plus XOAUTH2 checked against HS256 JWTs signed with ``oauth2_key``."""
    with DovecotServer(_dovecot_binary(), tls=tls_files, oauth2_key=oauth2_key) as server:
        yield server


@pytest.fixture
def dovecot_no_tls() -> Iterator[DovecotServer]:
    """``ssl = no``: STARTTLS is not offered. Per test, so its log holds only this test."""
    with DovecotServer(_dovecot_binary()) as server:
        yield server


@pytest.fixture
def trusting(tls_files: TlsFiles) -> ssl.SSLContext:
    """A client context that trusts the throwaway CA, and nothing else."""
    return imap.tls_context(tls_files.ca)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record, imapclient's protocol trace included, to look for secrets in."""
    caplog.set_level(logging.DEBUG)
    # An earlier in-process `mailflow` run (logs.configure) may have quietened imapclient's
    # own logger; caplog restores it after the test.
    caplog.set_level(logging.DEBUG, logger="imapclient")
    return caplog


# -- helpers -------------------------------------------------------------------------------------


def account(port: int, security: str, user: Credentials, **changes: object) -> ImapAccountSettings:
    values: dict[str, object] = dict(
        name="reports",
        host=LOOPBACK,
        port=port,
        security=security,
        username=user.username,
        password=Secret("test", user.password),
    )
    values.update(changes)
    return ImapAccountSettings(**values)  # type: ignore[arg-type]


def oauth2_config(tmp_path: Path, port: int, user: str, secret_line: str) -> Path:
    path = tmp_path / "mailflow.toml"
    path.write_text(
        f'[[imap_accounts]]\nname = "reports"\nhost = "{LOOPBACK}"\nport = {port}\n'
        f'security = "tls"\nusername = "{user}"\nauth = "oauth2"\n{secret_line}\n',
        encoding="utf-8",
    )
    return path


def oauth2_account_from_config(
    tmp_path: Path, port: int, user: str, secret_line: str
) -> ImapAccountSettings:
    """Through the real loader, so the file/command wiring of config.py is what is tested."""
    [loaded] = config.load(oauth2_config(tmp_path, port, user, secret_line), {}).imap_accounts
    return loaded


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt(key: bytes, subject: str, *, expires_in: int) -> str:
    """An HS256 JWT as an identity provider would issue it; negative expires_in: expired."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    # jti makes every token distinct, so a test can tell which one the server saw.
    claims = {
        "sub": subject,
        "iat": now - 600,
        "exp": now + expires_in,
        "jti": secrets.token_hex(8),
    }
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def logins(server: DovecotServer, user: str) -> list[str]:
    """Dovecot's "Login:" lines for ``user`` ("method=XOAUTH2, ..., TLS, session=...")."""
    text = server.log_path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if f"Login: user=<{user}>," in line]


def wait_for_logins(server: DovecotServer, user: str, count: int) -> list[str]:
    assert wait_until(lambda: len(logins(server, user)) >= count, timeout=LOG_WAIT), (
        f"Dovecot logged {len(logins(server, user))} login(s) for {user}, expected {count}"
    )
    return logins(server, user)


def over_tls(line: str) -> bool:
    # Dovecot marks a TLS connection "TLS", a plaintext one from loopback "secured".
    return re.search(r", TLS(, |$)", line) is not None


def assert_never_shown(
    secret: str, logs: pytest.LogCaptureFixture, *errors: MailflowError | None
) -> None:
    """Neither the secret nor its XOAUTH2 encoding in exception texts, hints or any log record."""
    sasl = base64.b64encode(f"\1auth=Bearer {secret}\1".encode()).decode()
    assert any(record.name.startswith("imapclient") for record in logs.records), (
        "imapclient's protocol log was not captured: the log assertion would prove nothing"
    )
    for error in errors:
        if error is not None:
            for text in (str(error), repr(error), error.hint or ""):
                assert secret not in text
    for record in logs.records:
        assert secret not in record.getMessage()
    assert secret not in logs.text and sasl[8:40] not in logs.text


def mail(n: int) -> bytes:
    return (
        f"From: r{n}@example.org\r\nSubject: report {n}\r\n"
        f"Message-ID: <sec{n}-{secrets.token_hex(4)}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()


def stored_subjects(sessions: sessionmaker[Session]) -> list[str | None]:
    with sessions() as session:
        return list(session.scalars(select(Message.subject).order_by(Message.id)).all())


class RecordingProxy:
    """Forwards 127.0.0.1:port to a server and keeps what each client sent, per connection.

    The client's bytes are recorded before they are forwarded, so once a connection is closed
    its recording is complete: what is not in it never left the client.
    """

    def __init__(self, target_port: int) -> None:
        self.target = (LOOPBACK, target_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sent: list[bytearray] = []
        self._closed: list[threading.Event] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)

    def sent(self, connection: int) -> bytes:
        """Everything the client sent on connection number ``connection``, once it is closed."""
        with self._lock:
            sent, closed = self._sent[connection], self._closed[connection]
        assert closed.wait(LOG_WAIT), "the client did not close the connection"
        return bytes(sent)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sent)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            record, closed = bytearray(), threading.Event()
            with self._lock:
                self._sent.append(record)
                self._closed.append(closed)
            up = (client, server, record, closed)
            threading.Thread(target=self._pump, args=up, daemon=True).start()
            down = (server, client, None, None)
            threading.Thread(target=self._pump, args=down, daemon=True).start()

    @staticmethod
    def _pump(
        source: socket.socket,
        sink: socket.socket,
        record: bytearray | None,
        closed: threading.Event | None,
    ) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    record += data
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if closed is not None:
            closed.set()


# -- TLS -----------------------------------------------------------------------------------------


@integration
def test_imaps_with_the_ca_logs_in_over_tls(
    dovecot_tls: DovecotServer, trusting: ssl.SSLContext, debug_logs: pytest.LogCaptureFixture
) -> None:
    user = dovecot_tls.new_user()
    client = imap.connect(account(dovecot_tls.imaps_port, "tls", user), ssl_context=trusting)
    try:
        assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0
    finally:
        client.logout()
    [line] = wait_for_logins(dovecot_tls, user.username, 1)
    assert "method=PLAIN" in line and over_tls(line), line
    assert_never_shown(user.password, debug_logs)


@integration
def test_poller_fetches_over_imaps_when_the_ca_is_trusted(
    tmp_path: Path, dovecot_tls: DovecotServer, tls_files: TlsFiles
) -> None:
    user = dovecot_tls.new_user()
    dovecot_tls.append(user.username, mail(1))
    reports = account(dovecot_tls.imaps_port, "tls", user)
    with migrated_app(settings_for(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")) as app:
        # Not trusted by the system's CAs: refused, nothing fetched.
        with pytest.raises(ImapError, match="TLS failed"):
            ImapPoller(reports, app.intake, utcnow).poll_once()
        trusting = replace(reports, tls_ca_file=tls_files.ca)  # the account's private CA
        assert ImapPoller(trusting, app.intake, utcnow).poll_once() == 1
        assert stored_subjects(app.sessions) == ["report 1"]
    appended, polled = wait_for_logins(dovecot_tls, user.username, 2)  # append() logs in too
    assert not over_tls(appended) and over_tls(polled), polled


@integration
def test_imaps_without_trusting_the_ca_is_refused_before_login(
    dovecot_tls: DovecotServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    user = dovecot_tls.new_user()
    with pytest.raises(ImapError) as caught:
        imap.connect(account(dovecot_tls.imaps_port, "tls", user))  # the system's CAs only
    error = caught.value
    assert "TLS failed" in str(error) and "certificate" in str(error)
    assert error.hint is not None and "certificate" in error.hint
    # A successful login afterwards is the sync point for the log: the refused one never came.
    imap.connect(account(dovecot_tls.port, "plain", user)).logout()
    [line] = wait_for_logins(dovecot_tls, user.username, 1)
    assert not over_tls(line)
    assert_never_shown(user.password, debug_logs, error)


@integration
def test_starttls_upgrades_before_login(
    dovecot_tls: DovecotServer, trusting: ssl.SSLContext, debug_logs: pytest.LogCaptureFixture
) -> None:
    user = dovecot_tls.new_user()
    with RecordingProxy(dovecot_tls.port) as proxy:
        client = imap.connect(account(proxy.port, "starttls", user), ssl_context=trusting)
        try:
            client.select_folder("INBOX", readonly=True)
        finally:
            client.logout()
        sent = proxy.sent(0)
    _, starttls, after = sent.partition(b"STARTTLS\r\n")
    assert starttls, sent  # the upgrade was asked for in clear...
    assert after[:1] == b"\x16", after[:20]  # ...and a TLS handshake record came next
    assert b"LOGIN" not in sent and user.password.encode() not in sent
    [line] = wait_for_logins(dovecot_tls, user.username, 1)
    assert "method=PLAIN" in line and over_tls(line), line
    assert_never_shown(user.password, debug_logs)


@integration
def test_starttls_with_an_untrusted_certificate_is_refused(dovecot_tls: DovecotServer) -> None:
    user = dovecot_tls.new_user()
    with RecordingProxy(dovecot_tls.port) as proxy:
        with pytest.raises(ImapError) as caught:
            imap.connect(account(proxy.port, "starttls", user))
        sent = proxy.sent(0)
    assert "TLS failed" in str(caught.value)
    assert caught.value.hint is not None and "certificate" in caught.value.hint
    assert b"STARTTLS" in sent and b"LOGIN" not in sent and user.password.encode() not in sent


@integration
def test_starttls_not_offered_is_an_error_and_nothing_is_sent_in_clear(
    dovecot_no_tls: DovecotServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    user = dovecot_no_tls.new_user()
    with RecordingProxy(dovecot_no_tls.port) as proxy:
        with pytest.raises(ImapError) as caught:
            imap.connect(account(proxy.port, "starttls", user))
        refused = proxy.sent(0)
        # Control: the same proxy and server, in clear on purpose. This server accepts a LOGIN
        # in clear, so had the STARTTLS attempt fallen back, Dovecot would have logged it too.
        imap.connect(account(proxy.port, "plain", user)).logout()
        control = proxy.sent(1)
    error = caught.value
    assert "does not offer STARTTLS" in str(error)
    assert error.hint is not None and "security = 'tls'" in error.hint
    assert b"LOGIN" not in refused and b"AUTHENTICATE" not in refused
    assert user.password.encode() not in refused and user.username.encode() not in refused
    assert b"LOGIN" in control and user.password.encode() in control  # the recorder does see it
    [line] = wait_for_logins(dovecot_no_tls, user.username, 1)  # the control's, and only it
    assert "method=PLAIN" in line and not over_tls(line)
    assert_never_shown(user.password, debug_logs, error)


@integration
def test_wrong_password_over_tls_never_shows_the_password(
    dovecot_tls: DovecotServer, trusting: ssl.SSLContext, debug_logs: pytest.LogCaptureFixture
) -> None:
    user = dovecot_tls.new_user()
    wrong = "wrong-" + secrets.token_urlsafe(12)
    bad = account(dovecot_tls.imaps_port, "tls", user, password=Secret("test", wrong))
    with pytest.raises(ImapError) as caught:
        imap.connect(bad, ssl_context=trusting)
    assert "AUTHENTICATIONFAILED" in str(caught.value).upper()
    assert_never_shown(wrong, debug_logs, caught.value)


# -- XOAUTH2 -------------------------------------------------------------------------------------


@integration
def test_xoauth2_token_file_is_read_again_at_each_connection(
    tmp_path: Path,
    dovecot_oauth2: DovecotServer,
    oauth2_key: bytes,
    trusting: ssl.SSLContext,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    user = dovecot_oauth2.new_user().username
    token_file = tmp_path / "token"
    first = jwt(oauth2_key, user, expires_in=300)
    token_file.write_text(first + "\n", encoding="utf-8")
    reports = oauth2_account_from_config(
        tmp_path, dovecot_oauth2.imaps_port, user, 'oauth2_token_file = "token"'
    )
    imap.connect(reports, ssl_context=trusting).logout()

    # Rewritten with tokens the server must refuse: an in-memory copy of the first would pass.
    expired = jwt(oauth2_key, user, expires_in=-60)
    forged = jwt(secrets.token_bytes(32), user, expires_in=300)
    failures: list[ImapError] = []
    for refused in (expired, forged):
        token_file.write_text(refused, encoding="utf-8")
        with pytest.raises(ImapError) as caught:
            imap.connect(reports, ssl_context=trusting)
        assert "AUTHENTICATIONFAILED" in str(caught.value).upper()
        failures.append(caught.value)

    second = jwt(oauth2_key, user, expires_in=300)
    token_file.write_text(second, encoding="utf-8")
    imap.connect(reports, ssl_context=trusting).logout()

    lines = wait_for_logins(dovecot_oauth2, user, 2)
    assert len(lines) == 2 and all("method=XOAUTH2" in line and over_tls(line) for line in lines)
    for token in (first, expired, forged, second):
        assert_never_shown(token, debug_logs, *failures)


@integration
def test_xoauth2_token_command_runs_at_every_connection(
    tmp_path: Path,
    dovecot_oauth2: DovecotServer,
    oauth2_key: bytes,
    tls_files: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    """Through the poller: an expired token fails the first poll; the next poll runs the command
    again, gets a fresh token and fetches the mail."""
    user = dovecot_oauth2.new_user().username
    dovecot_oauth2.append(user, mail(7))
    tokens = [jwt(oauth2_key, user, expires_in=-60)]
    tokens += [jwt(oauth2_key, user, expires_in=300) for _ in range(2)]
    token_list, runs = tmp_path / "tokens", tmp_path / "runs"
    token_list.write_text("\n".join(tokens), encoding="utf-8")
    script = tmp_path / "token-command.py"
    # Prints the next token of the list each time it runs, and counts its runs.
    script.write_text(
        "import pathlib, sys\n"
        "tokens, runs = map(pathlib.Path, sys.argv[1:3])\n"
        "n = int(runs.read_text()) if runs.exists() else 0\n"
        "runs.write_text(str(n + 1))\n"
        "print(tokens.read_text().split()[n])\n",
        encoding="utf-8",
    )
    command = shlex.join([sys.executable, str(script), str(token_list), str(runs)])
    reports = oauth2_account_from_config(
        tmp_path, dovecot_oauth2.imaps_port, user, f"oauth2_token_command = {json.dumps(command)}"
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca))
    with migrated_app(settings_for(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")) as app:
        poller = ImapPoller(reports, app.intake, utcnow)
        with pytest.raises(ImapError) as caught:
            poller.poll_once()
        assert "AUTHENTICATIONFAILED" in str(caught.value).upper()
        assert runs.read_text() == "1"
        assert poller.poll_once() == 1
        assert runs.read_text() == "2"
        assert poller.poll_once() == 0  # a new connection: the command runs again
        assert runs.read_text() == "3"
        assert stored_subjects(app.sessions) == ["report 7"]
    appended, *polled = wait_for_logins(dovecot_oauth2, user, 3)  # append() logs in too
    assert "method=PLAIN" in appended and len(polled) == 2
    assert all("method=XOAUTH2" in line and over_tls(line) for line in polled), polled
    for token in tokens:
        assert_never_shown(token, debug_logs, caught.value)


@integration
def test_xoauth2_with_a_password_instead_of_a_token_is_refused(
    dovecot_oauth2: DovecotServer, trusting: ssl.SSLContext
) -> None:
    """The oauth2 passdb really validates: the user's (valid) password is no token."""
    user = dovecot_oauth2.new_user()
    as_token = Secret("test", user.password)
    reports = account(dovecot_oauth2.imaps_port, "tls", user, auth="oauth2", oauth2_token=as_token)
    with pytest.raises(ImapError):
        imap.connect(reports, ssl_context=trusting)
    # ...while the same password through LOGIN works: the user exists and is usable.
    imap.connect(account(dovecot_oauth2.imaps_port, "tls", user), ssl_context=trusting).logout()


# -- secrets that fail ---------------------------------------------------------------------------

TOKEN_FILE_LINE = 'oauth2_token_file = "token"'


def test_token_file_missing_at_use_is_a_secret_error_naming_only_the_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token = "tok-" + secrets.token_hex(8)
    token_file.write_text(token, encoding="utf-8")
    reports = oauth2_account_from_config(tmp_path, 993, "u", TOKEN_FILE_LINE)
    assert reports.oauth2_token is not None
    token_file.unlink()
    with pytest.raises(SecretError, match="cannot read") as caught:
        reports.oauth2_token.reveal()
    assert str(token_file) in str(caught.value) and token not in str(caught.value)


def test_config_check_still_reports_a_missing_or_empty_token_file(tmp_path: Path) -> None:
    path = oauth2_config(tmp_path, 993, "u", TOKEN_FILE_LINE)
    for content, problem in ((None, "cannot read"), ("\n", "is empty")):
        if content is not None:
            (tmp_path / "token").write_text(content, encoding="utf-8")
        _, issues = config.check(path, {})
        # The file's problem, then (as for any unset secret) "missing secret" for the key.
        keys = [issue.key for issue in issues]
        assert keys == ["imap_accounts[0].oauth2_token_file", "imap_accounts[0].oauth2_token"]
        assert problem in issues[0].message


def test_token_command_that_echoes_its_token_on_failure_never_shows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "tok-" + secrets.token_hex(8)
    code = f"import sys; print({token!r}); print({token!r}, file=sys.stderr); sys.exit(3)"
    secret = Secret("command for test", command=(sys.executable, "-c", code))
    with pytest.raises(SecretError) as caught:
        secret.reveal()
    assert "status 3" in str(caught.value)
    assert token not in str(caught.value) and token not in caplog.text and token not in repr(secret)
