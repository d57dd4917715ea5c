"""IMAP adapter (imapclient): connect, secure and log in, translating failures to ImapError.

TLS is the default. With security = "starttls" a server that does not offer STARTTLS, or a
failed handshake, is an error: there is never a silent fallback to plaintext. Certificates are
verified against the system's CAs, or against the context the caller passes (``tls_context``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imapclient
from imapclient.exceptions import IMAPClientError

from mailflow.errors import ConfigError, ImapError, SecretError
from mailflow.settings import ImapAccountSettings

TIMEOUT_SECONDS = 30.0
# imapclient routes imaplib's protocol trace to this logger, and turns the trace fully on.
PROTOCOL_TRACE_LOGGER = "imapclient.imaplib"


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only ``ca_file`` (a private CA)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load CA certificates from {ca_file}: {_reason(exc)}",
            hint="give a readable PEM file with the CA certificate(s)",
        ) from None


def _ca_file(account: ImapAccountSettings) -> Path | None:
    return account.tls_ca_file if str(account.tls_ca_file) not in ("", ".") else None


def connect(
    account: ImapAccountSettings, ssl_context: ssl.SSLContext | None = None
) -> imapclient.IMAPClient:
    """A logged-in client. The caller logs out (see ``session``)."""
    where = f"IMAP account {account.name!r} ({account.host}:{account.port})"
    context = ssl_context or tls_context(_ca_file(account))
    try:
        client = imapclient.IMAPClient(
            account.host,
            port=account.port,
            ssl=account.security == "tls",
            ssl_context=context,
            timeout=TIMEOUT_SECONDS,
        )
    except (OSError, IMAPClientError) as exc:
        raise ImapError(
            f"{where}: cannot connect: {_reason(exc)}",
            hint=_hint(exc) or "check host, port and security",
        ) from None
    _trace_only_when_logged(client)
    try:
        if account.security == "starttls":
            _starttls(client, context, where)
        _login(client, account)
    except (SecretError, ImapError):
        _close(client)
        raise
    except (OSError, IMAPClientError) as exc:  # ssl.SSLError is an OSError
        _close(client)
        raise ImapError(f"{where}: {_reason(exc)}", hint=_hint(exc)) from None
    return client


@contextmanager
def session(
    account: ImapAccountSettings, ssl_context: ssl.SSLContext | None = None
) -> Iterator[imapclient.IMAPClient]:
    client = connect(account, ssl_context)
    try:
        yield client
    finally:
        _close(client)


def check_folders(client: imapclient.IMAPClient, account: ImapAccountSettings) -> list[str]:
    """Names of configured folders that the server does not have."""
    try:
        return [folder for folder in account.folders if not client.folder_exists(folder)]
    except (OSError, IMAPClientError) as exc:
        raise ImapError(f"IMAP account {account.name!r}: {_reason(exc)}") from None


def _trace_only_when_logged(client: imapclient.IMAPClient) -> None:
    """Keep imaplib's protocol trace off unless its logger would actually record it.

    imapclient sets imaplib's debug level to 5 on every connection, and imaplib then formats
    the repr() of every response (whole message bodies, and each FETCH result list once more)
    before the logger discards it. That formatting was ~80% of the CPU time of a bulk FETCH.
    With the logger enabled for DEBUG the trace is kept, as imapclient intends.
    """
    if not logging.getLogger(PROTOCOL_TRACE_LOGGER).isEnabledFor(logging.DEBUG):
        client._imap.debug = 0


def _starttls(client: imapclient.IMAPClient, context: ssl.SSLContext, where: str) -> None:
    # Checked before anything else is sent: without STARTTLS the only way on would be to log
    # in in clear, which is exactly what an attacker stripping the capability wants.
    if b"STARTTLS" not in client.capabilities():
        raise ImapError(
            f"{where}: the server does not offer STARTTLS; not logging in without TLS",
            hint="use security = 'tls' (port 993), or enable STARTTLS on the server",
        )
    client.starttls(context)


def _login(client: imapclient.IMAPClient, account: ImapAccountSettings) -> None:
    if account.auth == "oauth2":
        if account.oauth2_token is None:
            raise SecretError(f"IMAP account {account.name!r}: no OAuth2 token configured")
        client.oauth2_login(account.username, account.oauth2_token.reveal())
        return
    if account.password is None:
        raise SecretError(f"IMAP account {account.name!r}: no password configured")
    client.login(account.username, account.password.reveal())


def _close(client: imapclient.IMAPClient) -> None:
    try:
        client.logout()
    except (OSError, IMAPClientError):
        with contextlib.suppress(OSError, IMAPClientError):
            client.shutdown()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS failed: certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    if isinstance(exc, bytes):
        text = exc.decode("utf-8", "replace")
    # Server texts like "[AUTHENTICATIONFAILED] Authentication failed." carry no secret.
    return text.strip("b'\" ") or type(exc).__name__


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, imapclient.exceptions.LoginError):
        return "check the username and the password (or token)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            "the server's certificate was refused: check the host name, and that the "
            "certificate is issued by a CA this host trusts (a private CA must be trusted)"
        )
    if isinstance(exc, ssl.SSLError):
        return "the TLS handshake failed: check port and security ('tls' is 993, 'starttls' 143)"
    return None
