"""SMTP/LMTP intake endpoint (aiosmtpd): an MTA or a web form delivers straight to mailflow.

The 250 reply is sent only after the raw message is committed; if the store cannot commit the
sender gets 451 and retries later, so a message is never acknowledged and then lost.

Transport security uses aiosmtpd's own mechanisms: ``tls_context`` for STARTTLS,
``require_starttls``, and ``auth_required`` with an ``authenticator`` for AUTH PLAIN/LOGIN
against one configured user. AUTH is offered only over TLS, except on a loopback listener.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import uuid
import warnings
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from mailflow.errors import ConfigError, MailflowError, StorageError
from mailflow.intake import Intake
from mailflow.logs import fields
from mailflow.settings import SmtpIntakeSettings, is_loopback
from mailflow.store.messages import Arrival

log = logging.getLogger(__name__)


class IntakeHandler:
    """aiosmtpd handler hooks: filter recipients, then hand the bytes to the intake pipeline."""

    def __init__(
        self, intake: Intake, settings: SmtpIntakeSettings, bounce_domain: str = ""
    ) -> None:
        self.intake = intake
        # Bounces of our own mail come back to bounces+TOKEN@bounce_domain (VERP), opt-outs
        # to unsubscribe+TOKEN@bounce_domain: accepted beside the report addresses, so they
        # reach intake and are tied to their delivery.
        self.bounce_suffix = f"@{bounce_domain.lower()}" if bounce_domain else None
        self.protocol = settings.protocol
        self.recipients = frozenset(address.lower() for address in settings.recipients)
        self.require_tls = settings.require_starttls
        self.auth = bool(settings.auth_username)
        self._background: set[asyncio.Task[None]] = set()

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # once this hook exists, aiosmtpd leaves it to the hook
        if self.auth:
            return responses
        # AUTH cannot succeed without auth_username; advertising it would make an MTA that holds
        # credentials for this host try them, fail and defer the report.
        return [line for line in responses if not line.startswith("250-AUTH")]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # aiosmtpd's require_starttls would also refuse LHLO (not among its commands allowed
        # before STARTTLS), so LMTP is held here instead; for SMTP this repeats aiosmtpd's check.
        if self.require_tls and session.ssl is None:
            return "530 5.7.0 Must issue a STARTTLS command first"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    def _accepts(self, address: str) -> bool:
        if address in self.recipients:
            return True
        suffix = self.bounce_suffix
        return bool(
            suffix and address.startswith(("bounces+", "unsubscribe+")) and address.endswith(suffix)
        )

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.recipients and not self._accepts(address.lower()):
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

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client that rejects our certificate (or a scanner) is an event, not a crash:
            # one line instead of aiosmtpd's error with a traceback. The connection is gone.
            cause = error.__cause__
            reason = getattr(cause, "reason", None) or type(cause or error).__name__
            log.warning("smtp starttls handshake failed", extra=fields(reason=reason))
            return "454 4.7.0 TLS handshake failed"
        log.error("smtp session failed", exc_info=error)
        # Not aiosmtpd's default reply, which sends the exception text to the client.
        return "451 4.3.0 Internal error, try again later"

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


class Authenticator:
    """aiosmtpd ``authenticator``: the one configured user, compared in constant time."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode("utf-8")
        self._password = password.encode("utf-8")

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        # Both comparisons always run, so the timing does not tell whether the name was right.
        name_ok = hmac.compare_digest(data.login, self._username)
        password_ok = hmac.compare_digest(data.password, self._password)
        username = data.login.decode("utf-8", "replace")[:64]
        if name_ok and password_ok:
            return AuthResult(success=True, auth_data=username)
        # Never the attempted password: it may be a real one meant for another system.
        log.warning("smtp auth failed", extra=fields(peer=_peer(session), username=username))
        return AuthResult(success=False, handled=False)


def authenticator(settings: SmtpIntakeSettings) -> Authenticator | None:
    """None when no auth_username is set; the password is read once, at start."""
    if not settings.auth_username:
        return None
    if settings.auth_password is None:
        raise ConfigError(
            "smtp_intake.auth_password: missing secret",
            hint="set MAILFLOW_SMTP_INTAKE_AUTH_PASSWORD or smtp_intake.auth_password_file",
        )
    return Authenticator(settings.auth_username, settings.auth_password.reveal())


def server_tls_context(settings: SmtpIntakeSettings) -> ssl.SSLContext | None:
    """The STARTTLS context, or None when no certificate is configured."""
    if not settings.tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # A password callback, so an encrypted key fails instead of prompting on a terminal.
        context.load_cert_chain(settings.tls_cert, settings.tls_key, password=lambda: "")
    except OSError as exc:  # ssl.SSLError included
        reason = exc.strerror or getattr(exc, "reason", None) or "not a certificate and its key"
        raise ConfigError(
            f"cannot load smtp_intake.tls_cert {settings.tls_cert} "
            f"with tls_key {settings.tls_key}: {reason}",
            hint="run `mailflow config check` to see which file is wrong",
        ) from None
    return context


class _AiosmtpdNoise(logging.Filter):
    """Drop aiosmtpd warnings that repeat on every connection or login and mean nothing here.

    One is about AUTH without TLS, which mailflow allows on loopback on purpose; the other is
    aiosmtpd tripping over its own deprecated ``Session.login_data`` after each good AUTH.
    """

    PREFIXES = ("auth_required == True but auth_require_tls", "Session.login_data is deprecated")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


_NOISE = _AiosmtpdNoise()


async def start_server(
    handler: IntakeHandler, settings: SmtpIntakeSettings
) -> asyncio.AbstractServer:
    """Listen on the configured address; errors (port in use, bad certificate) become one line."""
    protocol_class = LMTP if settings.protocol == "lmtp" else SMTP
    tls_context = server_tls_context(settings)
    if settings.require_starttls and tls_context is None:
        # aiosmtpd would ignore it and accept mail in clear; `config check` reports this too.
        raise ConfigError(
            "smtp_intake.require_starttls needs tls_cert and tls_key",
            hint="set both, or require_starttls = false",
        )
    auth = authenticator(settings)
    loopback = is_loopback(settings.host)
    logging.getLogger("mail.log").addFilter(_NOISE)  # the same object is added only once
    if auth is not None and loopback:
        # aiosmtpd's one-off UserWarning about the same choice as _AiosmtpdNoise.
        warnings.filterwarnings(
            "ignore", "Requiring AUTH while not requiring TLS", module=r"aiosmtpd\.smtp"
        )

    def factory() -> SMTP:
        return protocol_class(
            handler,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.hostname or None,
            ident="mailflow",
            tls_context=tls_context,
            # LMTP: see IntakeHandler.handle_MAIL.
            require_starttls=settings.require_starttls and settings.protocol == "smtp",
            auth_required=auth is not None,
            auth_require_tls=not loopback,
            authenticator=auth,
            auth_exclude_mechanism=() if auth is not None else ("PLAIN", "LOGIN"),
        )

    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(factory, host=settings.host, port=settings.port)
    except OSError as exc:
        raise MailflowError(
            f"cannot listen on {settings.host}:{settings.port} for SMTP intake: {exc.strerror}",
            hint="another process uses the port; set smtp_intake.port "
            "(MAILFLOW_SMTP_INTAKE_PORT) or stop the other process",
        ) from None
    starttls = "off" if tls_context is None else "offered"
    starttls = "required" if settings.require_starttls else starttls
    log.info(
        "smtp intake transport",
        extra=fields(starttls=starttls, auth="required" if auth is not None else "off"),
    )
    if tls_context is None and not loopback:
        log.warning(
            "smtp intake listens off loopback without TLS: reports cross the network in clear",
            extra=fields(host=settings.host, hint="set smtp_intake.tls_cert and tls_key"),
        )
    return server
