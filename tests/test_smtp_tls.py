"""STARTTLS and AUTH on the SMTP/LMTP intake: real TLS on loopback with a throwaway CA."""

from __future__ import annotations

import base64
import logging
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailflow import config
from mailflow.errors import ConfigError
from mailflow.secret import Secret
from mailflow.settings import Settings
from mailflow.smtp_in import server_tls_context
from mailflow.store.models import MessageSource
from tests.servers.tls import TlsFiles, throwaway_tls
from tests.support import message_count, migrated_app, running, settings_for

RAW = b"From: r@example.org\r\nSubject: threat\r\nMessage-ID: <t1@example.org>\r\n\r\nhelp\r\n"
USER = "webform"
PASSWORD = "correct-Horse-7"
WRONG = "hunter2-Wrong-Guess"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return throwaway_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mailflow.db'}"


def client_context(tls: TlsFiles) -> ssl.SSLContext:
    """What a careful sending MTA does: verify the chain and the name (here 127.0.0.1)."""
    return ssl.create_default_context(cafile=tls.ca)


def connect(settings: Settings) -> smtplib.SMTP:
    intake = settings.smtp_intake
    if intake.protocol == "lmtp":
        return smtplib.LMTP(intake.host, intake.port, timeout=10)
    return smtplib.SMTP(intake.host, intake.port, timeout=10)


def with_tls(settings: Settings, tls: TlsFiles, **changes: Any) -> Settings:
    intake = replace(settings.smtp_intake, tls_cert=tls.cert, tls_key=tls.key, **changes)
    return replace(settings, smtp_intake=intake)


# -- STARTTLS ------------------------------------------------------------------------------------


def test_starttls_with_verified_certificate_stores_message(
    tmp_path: Path, sqlite_url: str, tls: TlsFiles
) -> None:
    settings = with_tls(settings_for(tmp_path, sqlite_url), tls)
    with migrated_app(settings) as app, running(app), connect(settings) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth"), "AUTH advertised although it cannot succeed"
        client.starttls(context=client_context(tls))
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        client.ehlo()
        assert not client.has_extn("auth"), "AUTH advertised although it cannot succeed"
        assert client.sendmail("sender@example.org", ["report@localhost"], RAW) == {}
        assert message_count(app) == 1


def test_client_that_does_not_trust_the_ca_cannot_complete_starttls(
    tmp_path: Path, sqlite_url: str, tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    # The counter-proof of the test above: verification really checks this certificate.
    settings = with_tls(settings_for(tmp_path, sqlite_url), tls)
    with migrated_app(settings) as app, running(app):
        with connect(settings) as client, pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=ssl.create_default_context())
        assert message_count(app) == 0
        # The server side notes it in one line (no traceback) and keeps serving.
        with connect(settings) as client:
            client.starttls(context=client_context(tls))
            assert client.sendmail("sender@example.org", ["report@localhost"], RAW) == {}
    [failed] = [r for r in caplog.records if r.getMessage() == "smtp starttls handshake failed"]
    assert failed.levelno == logging.WARNING
    assert failed.mailflow_fields == {"reason": "TLSV1_ALERT_UNKNOWN_CA"}  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_require_starttls_refuses_mail_in_clear_with_530(
    tmp_path: Path, sqlite_url: str, tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = with_tls(settings_for(tmp_path, sqlite_url), tls, require_starttls=True)
    with migrated_app(settings) as app, running(app):
        with connect(settings) as client:
            client.ehlo()
            code, reply = client.mail("sender@example.org")
            assert code == 530, reply
            with pytest.raises(smtplib.SMTPSenderRefused) as caught:
                client.sendmail("sender@example.org", ["report@localhost"], RAW)
            assert caught.value.smtp_code == 530
        assert message_count(app) == 0
        with connect(settings) as client:
            client.starttls(context=client_context(tls))
            assert client.sendmail("sender@example.org", ["report@localhost"], RAW) == {}
        assert message_count(app) == 1
    [started] = [r for r in caplog.records if r.getMessage() == "smtp intake transport"]
    assert started.mailflow_fields == {"starttls": "required", "auth": "off"}  # type: ignore[attr-defined]


# -- AUTH ----------------------------------------------------------------------------------------


def test_auth_required_refuses_unauthenticated_and_wrong_password_without_logging_it(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Loopback without TLS: the one place AUTH is offered in clear (a local web form).
    settings = settings_for(
        tmp_path, sqlite_url, auth_username=USER, auth_password=Secret("test", PASSWORD)
    )
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mail.log")  # aiosmtpd's own logger, at its chattiest
    with migrated_app(settings) as app, running(app):
        with connect(settings) as client:
            client.ehlo()
            assert client.has_extn("auth")
            assert client.mail("sender@example.org") == (530, b"5.7.0 Authentication required")
            client.rset()
            client.user, client.password = USER, WRONG
            for mechanism, answer in (("PLAIN", client.auth_plain), ("LOGIN", client.auth_login)):
                with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
                    client.auth(mechanism, answer)
                assert caught.value.smtp_code == 535, mechanism
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("sender@example.org", ["report@localhost"], RAW)
            assert refused.value.smtp_code == 530
        assert message_count(app) == 0
        for mechanism in ("PLAIN", "LOGIN"):
            with connect(settings) as client:
                client.ehlo()
                client.user, client.password = USER, PASSWORD
                answer = client.auth_plain if mechanism == "PLAIN" else client.auth_login
                assert client.auth(mechanism, answer)[0] == 235
                assert client.sendmail("sender@example.org", ["report@localhost"], RAW) == {}
        assert message_count(app) == 1  # the same bytes twice are one message

    failed = [r for r in caplog.records if r.getMessage() == "smtp auth failed"]
    assert len(failed) == 2
    assert all(r.levelno == logging.WARNING for r in failed)
    for record in failed:
        logged = record.mailflow_fields  # type: ignore[attr-defined]
        assert set(logged) == {"peer", "username"}
        assert logged["username"] == USER
        assert logged["peer"].startswith("127.0.0.1:")
    everything = caplog.text + "\n".join(repr(vars(record)) for record in caplog.records)
    for secret in _encodings(WRONG) + _encodings(PASSWORD):
        assert secret not in everything
    # aiosmtpd's per-connection and per-login warnings about choices made on purpose are muted.
    assert "auth_require_tls" not in everything
    assert "login_data is deprecated" not in everything


def test_lmtp_with_starttls_required_and_auth(
    tmp_path: Path, sqlite_url: str, tls: TlsFiles
) -> None:
    settings = with_tls(
        settings_for(tmp_path, sqlite_url, protocol="lmtp", auth_username=USER),
        tls,
        require_starttls=True,
        auth_password=Secret("test", PASSWORD),
    )
    with migrated_app(settings) as app, running(app):
        with connect(settings) as client:
            assert client.ehlo()[0] == 250  # LHLO: must be allowed before STARTTLS
            assert client.has_extn("starttls")
            # On loopback AUTH works in clear, so this 530 is the STARTTLS gate's own.
            assert client.login(USER, PASSWORD)[0] == 235
            code, reply = client.mail("sender@example.org")
            assert (code, b"STARTTLS" in reply) == (530, True)
            client.rset()
            client.starttls(context=client_context(tls))
            client.ehlo()
            # STARTTLS forgets the earlier AUTH (RFC 3207, 4.2).
            code, reply = client.mail("sender@example.org")
            assert (code, reply) == (530, b"5.7.0 Authentication required")
            client.rset()
            client.login(USER, PASSWORD)
            assert client.sendmail("sender@example.org", ["report@localhost"], RAW) == {}
        with app.sessions() as session:
            source = session.scalars(select(MessageSource)).one()
            assert source.channel == "lmtp"


def _encodings(password: str) -> list[str]:
    """The password as it crosses the wire too: raw, in AUTH PLAIN and in AUTH LOGIN."""
    plain = base64.b64encode(f"\0{USER}\0{password}".encode()).decode()
    return [password, plain, base64.b64encode(password.encode()).decode()]


# -- configuration -------------------------------------------------------------------------------


def write_config(tmp_path: Path, intake: str) -> Path:
    path = tmp_path / "mailflow.toml"
    path.write_text(f"[smtp_intake]\n{intake}", encoding="utf-8")
    return path


def error_keys(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    _, issues = config.check(path, environ or {})
    return [issue.key for issue in issues if issue.severity == "error"]


def test_config_check_names_a_missing_certificate_and_exits_2(
    tmp_path: Path, tls: TlsFiles
) -> None:
    missing = tmp_path / "absent.pem"
    path = write_config(tmp_path, f'tls_cert = "{missing}"\ntls_key = "{tls.key}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "mailflow", "--config", str(path), "config", "check"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"smtp_intake.tls_cert: cannot read {missing}" in result.stderr
    assert "smtp_intake.tls_key" not in result.stderr


@pytest.mark.parametrize(
    ("intake", "key"),
    [
        ('tls_cert = "{cert}"\n', "smtp_intake.tls_key"),
        ('tls_key = "{key}"\n', "smtp_intake.tls_cert"),
        ('tls_cert = "{key}"\ntls_key = "{key}"\n', "smtp_intake.tls_cert"),
        ('tls_cert = "{cert}"\ntls_key = "{cert}"\n', "smtp_intake.tls_key"),
        ('tls_cert = "{cert}"\ntls_key = "{other_key}"\n', "smtp_intake.tls_key"),
        ("require_starttls = true\n", "smtp_intake.require_starttls"),
        (f'auth_username = "{USER}"\n', "smtp_intake.auth_password"),
        (
            f'host = "192.0.2.1"\nauth_username = "{USER}"\nauth_password_file = "pw"\n',
            "smtp_intake.auth_username",
        ),
    ],
    ids=[
        "cert-without-key",
        "key-without-cert",
        "key-as-cert",
        "cert-as-key",
        "key-of-another-cert",
        "require-starttls-without-cert",
        "username-without-password",
        "auth-off-loopback-without-tls",
    ],
)
def test_incomplete_or_wrong_tls_and_auth_settings_are_errors(
    tmp_path: Path, tls: TlsFiles, other_tls: TlsFiles, intake: str, key: str
) -> None:
    (tmp_path / "pw").write_text(PASSWORD, encoding="utf-8")
    text = intake.format(cert=tls.cert, key=tls.key, other_key=other_tls.key)
    assert error_keys(write_config(tmp_path, text)) == [key]


def test_password_without_username_is_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    assert error_keys(path, {"MAILFLOW_SMTP_INTAKE_AUTH_PASSWORD": PASSWORD}) == [
        "smtp_intake.auth_username"
    ]


def test_complete_tls_and_auth_settings_are_valid(tmp_path: Path, tls: TlsFiles) -> None:
    (tmp_path / "intake.pw").write_text(PASSWORD + "\n", encoding="utf-8")
    path = write_config(
        tmp_path,
        f'host = "192.0.2.1"\ntls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\n'
        f'require_starttls = true\nauth_username = "{USER}"\nauth_password_file = "intake.pw"\n',
    )
    settings, issues = config.check(path, {})
    assert issues == []
    assert settings is not None and settings.smtp_intake.tls
    assert settings.smtp_intake.auth_password is not None
    assert settings.smtp_intake.auth_password.reveal() == PASSWORD


def test_require_starttls_without_certificate_refuses_to_start(
    tmp_path: Path, sqlite_url: str
) -> None:
    # For callers that build Settings without `config.load`: aiosmtpd alone would run open.
    settings = settings_for(tmp_path, sqlite_url, require_starttls=True)
    with migrated_app(settings) as app, pytest.raises(ConfigError) as caught, running(app):
        pass
    assert "smtp_intake.require_starttls" in str(caught.value)


def test_certificate_gone_after_check_is_a_config_error_at_start(
    tmp_path: Path, tls: TlsFiles
) -> None:
    settings = with_tls(settings_for(tmp_path, "sqlite://"), tls)
    assert server_tls_context(settings.smtp_intake) is not None
    gone = replace(settings.smtp_intake, tls_key=tmp_path / "deleted.key")
    with pytest.raises(ConfigError) as caught:
        server_tls_context(gone)
    assert "smtp_intake.tls_cert" in str(caught.value)
    assert str(tmp_path / "deleted.key") in str(caught.value)


@pytest.fixture(scope="module")
def other_tls(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[TlsFiles]:
    yield throwaway_tls(tmp_path_factory.mktemp("other-tls"))
