"""Transports: how the worker hands one message for one recipient to the world.

`SmtpTransport` keeps one relay connection (smtp_out.relay_session) for many messages and
reconnects when it was dropped; `MaildirTransport` writes to the local outbox while no relay
is configured. smtplib's exceptions are translated here, at the boundary, into the delivery
errors (errors.py), so the worker can tell a refused recipient from a lost connection. Both
DKIM-sign at send time when a key is configured (signing.py).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from typing import Protocol, runtime_checkable

from mailflow.delivery.errors import (
    ConnectionLost,
    InvalidOutbound,
    RelayUnavailable,
    SendRefused,
    Stage,
)
from mailflow.delivery.signing import DkimSigner, load_signer
from mailflow.errors import SmtpError
from mailflow.outbox import MaildirOutbox
from mailflow.settings import OutboundSettings, Settings
from mailflow.smtp_out import relay_session

SERVICE_CLOSING = 421  # the relay is going away: a connection problem, whatever the stage
# A connection idle longer than this is probed (NOOP) before use: relays close idle ones
# (Postfix after 300 s). A busy one is not, which saves a round trip per message.
IDLE_PROBE_SECONDS = 5.0
ACCEPTED_RCPT = (250, 251)
_DOT_LINE = re.compile(rb"(?m)^\.")
_UNSAFE_IN_PATH = re.compile(r"[\x00-\x20<>\x7f-\U0010ffff]")


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


Gate = Callable[[], None]


@runtime_checkable
class GatedTransport(Transport, Protocol):
    def send_gated(self, envelope_from: str, recipient: str, raw: bytes, gate: Gate) -> str:
        """As send(), calling `gate` just before the point of no return (SMTP's final dot).

        The worker's gate waits until the previous message's outcome is committed, so the
        rest of this transaction overlaps that commit. If the gate raises, the message is
        abandoned undelivered (the connection is dropped before the final dot).
        """
        ...


GatedSend = Callable[[str, str, bytes, Gate], str]


def no_gate() -> None:
    pass


def gated_send(transport: Transport) -> GatedSend:
    """`transport.send_gated`; for a transport without one, the gate and then send()."""
    if isinstance(transport, GatedTransport):
        return transport.send_gated

    def send(envelope_from: str, recipient: str, raw: bytes, gate: Gate) -> str:
        gate()
        return transport.send(envelope_from, recipient, raw)

    return send


def make_transport(
    settings: Settings,
    ssl_context: ssl.SSLContext | None = None,
    signer: DkimSigner | None = None,
) -> Transport:
    """The relay when one is configured, else the local Maildir outbox; signing with `signer`,
    or with the key the settings name when none is given."""
    signer = signer or load_signer(settings)
    if settings.outbound.relay_host:
        return SmtpTransport(settings.outbound, ssl_context, signer)
    return MaildirTransport(MaildirOutbox(settings.outbox_dir), signer)


class SmtpTransport:
    def __init__(
        self,
        settings: OutboundSettings,
        ssl_context: ssl.SSLContext | None = None,
        signer: DkimSigner | None = None,
    ) -> None:
        self.settings = settings
        self.ssl_context = ssl_context
        self.signer = signer
        self._stack = ExitStack()
        self._client: smtplib.SMTP | None = None
        self._used_at = 0.0

    @property
    def where(self) -> str:
        return f"SMTP relay {self.settings.relay_host}:{self.settings.relay_port}"

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> str:
        return self.send_gated(envelope_from, recipient, raw, no_gate)

    def send_gated(self, envelope_from: str, recipient: str, raw: bytes, gate: Gate) -> str:
        mail_from, rcpt_to = _path("FROM", envelope_from), _path("TO", recipient)
        if self.signer is not None:
            raw = self.signer.sign(raw)
        reused = self._client is not None
        client = self._connection()
        try:
            self._mail(client, mail_from)
        except ConnectionLost:
            if not reused:
                raise
            # The relay closed a connection we reused (a per-connection message limit, a
            # restart) before anything of this message was sent: once more, on a new one.
            client = self._connection()
            self._mail(client, mail_from)
        try:
            self._expect(client, "rcpt", client.docmd("RCPT", rcpt_to), ACCEPTED_RCPT)
            code, reply = self._data(client, raw, gate)
            self._expect(client, "data", (code, reply), (250,))
        except smtplib.SMTPDataError as exc:  # DATA itself was not answered 354
            raise self._refused("data", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise ConnectionLost(f"{self.where}: connection lost: {_reason(exc)}") from None
        finally:
            self._used_at = time.monotonic()
        return f"{code} {_text(reply)}"

    def _data(self, client: smtplib.SMTP, raw: bytes, gate: Gate) -> tuple[int, bytes]:
        """smtplib's data(), with the gate before the final dot (RFC 5321 4.1.1.4)."""
        code, reply = client.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        body = _DOT_LINE.sub(b"..", raw)  # dot-stuffing (4.5.2)
        client.send(body if body.endswith(b"\r\n") else body + b"\r\n")
        try:
            gate()
        except BaseException:
            # Cut the socket, no QUIT (it would read as more message text): without the final
            # dot the relay discards the message, so nothing was sent.
            client.close()
            self.close()
            raise
        client.send(b".\r\n")
        return client.getreply()

    def _mail(self, client: smtplib.SMTP, mail_from: str) -> None:
        try:
            self._expect(client, "mail", client.docmd("MAIL", mail_from), (250,))
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise ConnectionLost(f"{self.where}: connection lost: {_reason(exc)}") from None

    def close(self) -> None:
        self._client = None
        # relay_session's exit: QUIT, or close if the peer is gone. An error there changes
        # nothing: the connection is being given up anyway.
        with suppress(SmtpError):
            self._stack.close()
        self._stack = ExitStack()

    def _connection(self) -> smtplib.SMTP:
        idle = time.monotonic() - self._used_at > IDLE_PROBE_SECONDS
        if self._client is not None and idle and not _alive(self._client):
            self.close()  # the relay closed an idle connection: open a new one, no harm done
        if self._client is None:
            try:
                self._client = self._stack.enter_context(
                    relay_session(self.settings, self.ssl_context)
                )
            except SmtpError as exc:
                self.close()
                raise RelayUnavailable(exc.message, hint=exc.hint) from None
            _no_delay(self._client)
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

    def __init__(self, outbox: MaildirOutbox, signer: DkimSigner | None = None) -> None:
        self.outbox = outbox
        self.signer = signer

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> str:
        return self.send_gated(envelope_from, recipient, raw, no_gate)

    def send_gated(self, envelope_from: str, recipient: str, raw: bytes, gate: Gate) -> str:
        if self.signer is not None:
            raw = self.signer.sign(raw)
        gate()
        trace = f"Return-Path: <{envelope_from}>\r\nEnvelope-To: {recipient}\r\n"
        key = self.outbox.deliver(trace.encode("ascii") + raw)
        return f"maildir {key}"

    def close(self) -> None:
        pass


def _path(verb: str, address: str) -> str:
    """`FROM:<address>` for MAIL, `TO:<address>` for RCPT.

    Not smtplib's mail()/rcpt(): they parse every address with the email package (a third
    of the CPU time per message). Addresses here were checked when the message was composed
    (compose.is_plain_address); this only keeps anything that could end the command out.
    """
    if _UNSAFE_IN_PATH.search(address):
        raise InvalidOutbound(f"not a deliverable e-mail address: {address[:80]!r}")
    return f"{verb}:<{address}>"


def _no_delay(client: smtplib.SMTP) -> None:
    """The final dot goes out in a write of its own (after the gate): without TCP_NODELAY,
    Nagle's algorithm holds it until the relay acknowledges the message text, which a
    delayed ACK postpones by up to 40 ms per message."""
    if client.sock is not None:
        with suppress(OSError):
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
