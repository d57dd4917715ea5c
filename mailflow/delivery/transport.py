"""Transports: how the worker hands one message for one recipient to the world.

`SmtpTransport` keeps one relay connection (smtp_out.relay_session) for many messages and
reconnects when it was dropped; `MaildirTransport` writes to the local outbox while no relay
is configured. smtplib's exceptions are translated here, at the boundary, into the delivery
errors (errors.py), so the worker can tell a refused recipient from a lost connection.
"""

from __future__ import annotations

import smtplib
import ssl
from contextlib import ExitStack, suppress
from typing import Protocol

from mailflow.delivery.errors import ConnectionLost, RelayUnavailable, SendRefused, Stage
from mailflow.errors import SmtpError
from mailflow.outbox import MaildirOutbox
from mailflow.settings import OutboundSettings, Settings
from mailflow.smtp_out import relay_session

SERVICE_CLOSING = 421  # the relay is going away: a connection problem, whatever the stage
ACCEPTED_RCPT = (250, 251)


class Transport(Protocol):
    def send(self, envelope_from: str, recipient: str, raw: bytes) -> str:
        """Deliver `raw` to one recipient; returns the acceptance reply (for the ledger).

        Raises SendRefused (a reply code), ConnectionLost (dropped mid-transaction) or another
        MailflowError (nothing sent: no relay connection, outbox not writable).
        """
        ...

    def close(self) -> None:
        """Let go of any connection; the next send opens a new one."""
        ...


def make_transport(settings: Settings, ssl_context: ssl.SSLContext | None = None) -> Transport:
    """The relay when one is configured, else the local Maildir outbox."""
    if settings.outbound.relay_host:
        return SmtpTransport(settings.outbound, ssl_context)
    return MaildirTransport(MaildirOutbox(settings.outbox_dir))


class SmtpTransport:
    def __init__(
        self, settings: OutboundSettings, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.settings = settings
        self.ssl_context = ssl_context
        self._stack = ExitStack()
        self._client: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"SMTP relay {self.settings.relay_host}:{self.settings.relay_port}"

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> str:
        client = self._connection()
        try:
            self._expect(client, "mail", client.mail(envelope_from), (250,))
            self._expect(client, "rcpt", client.rcpt(recipient), ACCEPTED_RCPT)
            code, reply = client.data(raw)
            self._expect(client, "data", (code, reply), (250,))
        except smtplib.SMTPDataError as exc:  # data() raises when DATA itself is not 354
            raise self._refused("data", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise ConnectionLost(f"{self.where}: connection lost: {_reason(exc)}") from None
        return f"{code} {_text(reply)}"

    def close(self) -> None:
        self._client = None
        # relay_session's exit: QUIT, or close if the peer is gone. An error there changes
        # nothing: the connection is being given up anyway.
        with suppress(SmtpError):
            self._stack.close()
        self._stack = ExitStack()

    def _connection(self) -> smtplib.SMTP:
        if self._client is not None and not _alive(self._client):
            self.close()  # the relay closed an idle connection: open a new one, no harm done
        if self._client is None:
            try:
                self._client = self._stack.enter_context(
                    relay_session(self.settings, self.ssl_context)
                )
            except SmtpError as exc:
                self.close()
                raise RelayUnavailable(exc.message, hint=exc.hint) from None
        return self._client

    def _expect(
        self, client: smtplib.SMTP, stage: Stage, reply: tuple[int, bytes], ok: tuple[int, ...]
    ) -> None:
        code, text = reply
        if code in ok:
            return
        if code == SERVICE_CLOSING or code < 0:
            raise smtplib.SMTPServerDisconnected(f"{code} {_text(text)}")
        try:
            client.rset()  # end the transaction so the connection serves the next message
        except (OSError, smtplib.SMTPException):
            self.close()
        raise self._refused(stage, code, text)

    def _refused(self, stage: Stage, code: int, text: bytes | str) -> SmtpError:
        if code == SERVICE_CLOSING:
            self.close()
            return ConnectionLost(f"{self.where}: {code} {_text(text)}")
        return SendRefused(
            f"{self.where} refused at {stage.upper()}: {code} {_text(text)}",
            code=code,
            stage=stage,
        )


class MaildirTransport:
    """The outbox has no envelope: it goes in front as Return-Path and Envelope-To, as a
    local delivery agent would write them, so a later hand-off to a relay can recover it."""

    def __init__(self, outbox: MaildirOutbox) -> None:
        self.outbox = outbox

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> str:
        trace = f"Return-Path: <{envelope_from}>\r\nEnvelope-To: {recipient}\r\n"
        key = self.outbox.deliver(trace.encode("ascii") + raw)
        return f"maildir {key}"

    def close(self) -> None:
        pass


def _alive(client: smtplib.SMTP) -> bool:
    try:
        code, _ = client.noop()
    except (OSError, smtplib.SMTPException):
        return False
    return code == 250


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
