"""SMTP relay adapter (smtplib): the outbound side's one connection to the world.

Issue-level delivery logic (ledger, retries, rate limits) lives above this module; here we
only connect, secure, log in and translate smtplib's errors into SmtpError.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from mailflow.errors import SmtpError
from mailflow.settings import OutboundSettings

TIMEOUT_SECONDS = 30.0


@contextmanager
def relay_session(
    settings: OutboundSettings, ssl_context: ssl.SSLContext | None = None
) -> Iterator[smtplib.SMTP]:
    where = f"SMTP relay {settings.relay_host}:{settings.relay_port}"
    context = ssl_context or ssl.create_default_context()
    try:
        client = _open(settings, context)
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpError(
            f"{where}: cannot connect: {_reason(exc)}",
            hint="check outbound.relay_host, relay_port and relay_security",
        ) from None
    try:
        _secure_and_login(client, settings, context)
        yield client
    except smtplib.SMTPAuthenticationError:
        raise SmtpError(
            f"{where}: login refused", hint="check outbound.relay_username and the password"
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise SmtpError(
            f"{where}: {_reason(exc)}",
            hint="the relay does not offer STARTTLS; use relay_security = 'tls'",
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpError(f"{where}: {_reason(exc)}") from None
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _open(settings: OutboundSettings, context: ssl.SSLContext) -> smtplib.SMTP:
    if settings.relay_security == "tls":
        return smtplib.SMTP_SSL(
            settings.relay_host, settings.relay_port, context=context, timeout=TIMEOUT_SECONDS
        )
    return smtplib.SMTP(settings.relay_host, settings.relay_port, timeout=TIMEOUT_SECONDS)


def _secure_and_login(
    client: smtplib.SMTP, settings: OutboundSettings, context: ssl.SSLContext
) -> None:
    client.ehlo()
    if settings.relay_security == "starttls":
        client.starttls(context=context)  # raises if not offered: never a silent fallback
        client.ehlo()
    if settings.relay_username:
        password = settings.relay_password.reveal() if settings.relay_password else ""
        client.login(settings.relay_username, password)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return f"{exc.smtp_code} {text}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
