"""SMTP/LMTP intake endpoint (aiosmtpd): an MTA or a web form delivers straight to mailflow.

The 250 reply is sent only after the raw message is committed; if the store cannot commit the
sender gets 451 and retries later, so a message is never acknowledged and then lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailflow.errors import MailflowError, StorageError
from mailflow.intake import Intake
from mailflow.logs import fields
from mailflow.settings import SmtpIntakeSettings
from mailflow.store.messages import Arrival

log = logging.getLogger(__name__)


class IntakeHandler:
    """aiosmtpd handler hooks: filter recipients, then hand the bytes to the intake pipeline."""

    def __init__(self, intake: Intake, settings: SmtpIntakeSettings) -> None:
        self.intake = intake
        self.protocol = settings.protocol
        self.recipients = frozenset(address.lower() for address in settings.recipients)
        self._background: set[asyncio.Task[None]] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.recipients and address.lower() not in self.recipients:
            return "550 5.1.1 Recipient address rejected: not a report address here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        arrival = Arrival(
            channel=self.protocol,
            smtp_session=uuid.uuid4().hex,
            smtp_peer=_peer(session),
            envelope_from=envelope.mail_from,
            envelope_to=tuple(envelope.rcpt_tos),
        )
        loop = asyncio.get_running_loop()
        try:
            stored = await loop.run_in_executor(None, self.intake.receive, raw, arrival)
        except StorageError as exc:
            log.error(
                "message refused with 451", extra=fields(peer=arrival.smtp_peer, error=str(exc))
            )
            return self._reply(envelope, "451 4.3.0 Could not store the message, try again later")
        except MailflowError as exc:
            log.error("message refused with 451", extra=fields(error=str(exc)))
            return self._reply(envelope, "451 4.3.0 Temporary failure, try again later")
        if stored.new:
            self._process_later(stored.message_pk)
        return self._reply(envelope, f"250 2.0.0 OK: stored as {stored.message_pk}")

    def _reply(self, envelope: Envelope, line: str) -> str:
        # LMTP answers DATA once per recipient (RFC 2033); the message is one for all of them.
        if self.protocol == "lmtp":
            return "\r\n".join(line for _ in envelope.rcpt_tos)
        return line

    def _process_later(self, message_pk: int) -> None:
        # Processing runs after the 250: the sender must not wait for (or retry on) parsing.
        task = asyncio.get_running_loop().create_task(self._process(message_pk))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _process(self, message_pk: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.intake.process, message_pk)
        except MailflowError as exc:
            log.warning("processing deferred", extra=fields(id=message_pk, error=str(exc)))

    async def drain(self) -> None:
        """Wait for processing already started, so a clean stop leaves nothing half done."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _peer(session: Session) -> str | None:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return f"{peer[0]}:{peer[1]}" if len(peer) > 1 else str(peer[0])
    return str(peer) if peer else None


async def start_server(
    handler: IntakeHandler, settings: SmtpIntakeSettings
) -> asyncio.AbstractServer:
    """Listen on the configured address; errors (port in use) become one clear line."""
    protocol_class = LMTP if settings.protocol == "lmtp" else SMTP

    def factory() -> SMTP:
        return protocol_class(
            handler,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.hostname or None,
            ident="mailflow",
        )

    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(factory, host=settings.host, port=settings.port)
    except OSError as exc:
        raise MailflowError(
            f"cannot listen on {settings.host}:{settings.port} for SMTP intake: {exc.strerror}",
            hint="another process uses the port; set smtp_intake.port "
            "(MAILFLOW_SMTP_INTAKE_PORT) or stop the other process",
        ) from None
