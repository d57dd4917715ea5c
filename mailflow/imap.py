"""IMAP adapter (imapclient): connect, secure and log in, translating failures to ImapError.

TLS is the default. With security = "starttls" a server that does not offer STARTTLS, or a
failed handshake, is an error: there is never a silent fallback to plaintext.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import imapclient
from imapclient.exceptions import IMAPClientError

from mailflow.errors import ImapError, SecretError
from mailflow.settings import ImapAccountSettings

TIMEOUT_SECONDS = 30.0


def connect(
    account: ImapAccountSettings, ssl_context: ssl.SSLContext | None = None
) -> imapclient.IMAPClient:
    """A logged-in client. The caller logs out (see ``session``)."""
    where = f"IMAP account {account.name!r} ({account.host}:{account.port})"
    context = ssl_context or ssl.create_default_context()
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
            f"{where}: cannot connect: {_reason(exc)}", hint="check host, port and security"
        ) from None
    try:
        if account.security == "starttls":
            client.starttls(context)
        _login(client, account)
    except SecretError:
        _close(client)
        raise
    except (OSError, IMAPClientError, ssl.SSLError) as exc:
        _close(client)
        raise ImapError(f"{where}: {_reason(exc)}", hint=_hint(exc)) from None
    return client


@contextmanager
def session(account: ImapAccountSettings) -> Iterator[imapclient.IMAPClient]:
    client = connect(account)
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
    if isinstance(exc, ssl.SSLError):
        return "the server's certificate or TLS setup was refused"
    if "STARTTLS" in str(exc).upper():
        return "the server does not offer STARTTLS; use security = 'tls' on port 993"
    return None
