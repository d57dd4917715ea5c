"""Acknowledgements of receipt: whether to send one (pure), what it says, and queuing it.

An acknowledgement tells a reporter that their message arrived and under which reference, and
nothing else: no name, no case, no words of theirs in the body, since someone else may read
it (a shared mailbox, a seized phone). It goes on the one delivery path (mailflow.delivery).

Loops and backscatter are the other danger: never answer automatic mail, bounces, lists,
robots or mailflow itself (RFC 3834), and at most once per sender per window.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from mailflow.delivery import (
    InvalidOutbound,
    OutboundMessage,
    clean_header,
    enqueue,
    last_queued_at,
)
from mailflow.delivery.compose import domain_of, is_plain_address, message_id_token
from mailflow.logs import fields
from mailflow.parse.model import ParsedMessage
from mailflow.settings import Settings
from mailflow.store.models import Delivery, normalise_email
from mailflow.templates import TemplateError, Templates

log = logging.getLogger(__name__)

PURPOSE = "acknowledgement"
ACK_KINDS = frozenset({"report", "action_report"})
# Local parts of addresses that are robots, not people: answering them loops or bounces.
_ROBOT = re.compile(
    r"(no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon|postmaster)([-+._].*)?",
    re.IGNORECASE,
)
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post")
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Incoming:
    """What the decision reads about a received message. `headers` as in ParsedMessage:
    (lower-case name, decoded value) pairs."""

    kind: str
    from_address: str | None
    reply_to: str | None = None
    form_submission: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    # The SMTP envelope sender (MAIL FROM) when known: "" is the null sender of a bounce.
    envelope_from: str | None = None

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key == name), "")

    @classmethod
    def from_parsed(
        cls,
        parsed: ParsedMessage,
        kind: str,
        *,
        form_submission: bool,
        envelope_from: str | None = None,
    ) -> Incoming:
        return cls(
            kind=kind,
            from_address=parsed.from_.email if parsed.from_ else None,
            reply_to=parsed.reply_to[0].email if parsed.reply_to else None,
            form_submission=form_submission,
            headers=parsed.headers,
            envelope_from=envelope_from,
        )


@dataclass(frozen=True)
class AckPolicy:
    """The settings the decision needs, as one value."""

    enabled: bool
    window: timedelta
    own_addresses: frozenset[str]
    own_domains: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> AckPolicy:
        own = {
            *settings.smtp_intake.recipients,
            settings.outbound.from_address,
            settings.ack_from_address,
            *(account.username for account in settings.imap_accounts),
        }
        return cls(
            enabled=settings.acknowledgement.enabled,
            window=timedelta(hours=settings.acknowledgement.window_hours),
            own_addresses=frozenset(normalise_email(a) for a in own if "@" in a),
            own_domains=frozenset({settings.bounce_domain}),
        )


@dataclass(frozen=True)
class AckDecision:
    """Whether to acknowledge, why (a code, and words for a log line), and to which address.
    `detail` never contains the address: logs must not name reporters."""

    acknowledge: bool
    reason: str
    detail: str
    to_address: str | None = None


def should_acknowledge(
    incoming: Incoming,
    policy: AckPolicy,
    last_acknowledged_at: datetime | None,
    now: datetime,
) -> AckDecision:
    """Decide whether `incoming` gets an acknowledgement. Pure.

    `last_acknowledged_at` is when this sender's address was last sent one (see
    `last_acknowledged_at()`), None if never. A form submission is answered at its Reply-To
    (the form's From is the form's own address); other mail at its From.
    """
    refusal = _refusal_by_message(incoming, policy)
    if refusal is not None:
        return refusal
    target = incoming.reply_to if incoming.form_submission else incoming.from_address
    address = normalise_email(clean_header(target or ""))
    refusal = _refusal_by_address(address, incoming.form_submission, policy)
    if refusal is not None:
        return refusal
    if last_acknowledged_at is not None and now - last_acknowledged_at < policy.window:
        return _no("recent", f"already acknowledged within {policy.window}")
    return AckDecision(True, "ok", f"acknowledge the {incoming.kind}", address)


def _refusal_by_message(incoming: Incoming, policy: AckPolicy) -> AckDecision | None:
    if not policy.enabled:
        return _no("disabled", "acknowledgement.enabled is false")
    if incoming.kind not in ACK_KINDS:
        return _no("kind", f"kind {incoming.kind!r} is never acknowledged")
    auto = incoming.header("auto-submitted").strip().lower()
    # A web form is a program, and may say so (auto-generated): that is no reason to stay
    # silent. An automatic *reply* is, whoever sends it.
    tolerated = {"", "no"} | ({"auto-generated"} if incoming.form_submission else set())
    if auto.split(";")[0].strip() not in tolerated:
        return _no("auto_submitted", f"Auto-Submitted: {auto[:40]}")
    precedence = incoming.header("precedence").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return _no("bulk", f"Precedence: {precedence}")
    for name in _LIST_HEADERS:
        if incoming.header(name):
            return _no("mailing_list", f"has a {name} header")
    suppress = incoming.header("x-auto-response-suppress").lower()
    if any(word in suppress for word in ("all", "autoreply", "oof")):
        return _no("auto_submitted", "X-Auto-Response-Suppress asks for no automatic reply")
    if incoming.header("x-autoreply") or incoming.header("x-autorespond"):
        return _no("auto_submitted", "marked as an automatic reply")
    envelope = incoming.envelope_from
    null_sender = envelope is not None and envelope.strip() in ("", "<>")
    if null_sender or incoming.header("return-path").strip() == "<>":
        return _no("bounce", "null return path (a delivery status notification)")
    return None


def _refusal_by_address(address: str, form: bool, policy: AckPolicy) -> AckDecision | None:
    if not address:
        return _no("no_address", "no Reply-To on the form" if form else "no sender address")
    if not is_plain_address(address):
        return _no("invalid_address", "the sender address cannot be answered")
    local = address.rpartition("@")[0]
    if _ROBOT.fullmatch(local):
        return _no("robot_sender", f"sender is a robot ({local[:40]})")
    if address in policy.own_addresses or domain_of(address) in policy.own_domains:
        return _no("own_address", "sender is one of mailflow's own addresses")
    return None


def _no(reason: str, detail: str) -> AckDecision:
    return AckDecision(False, reason, detail)


# -- rendering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AckRequest:
    """The plain values about the incoming message that an acknowledgement is built from.

    `message_pk`: messages.id of the report or action report. `reference`: what the reporter
    should quote (the report's reference). `language`: the message's language, if known.
    `message_id` and `references`: its Message-ID and References (with or without brackets),
    so the acknowledgement threads under it. `subject`: its subject, quoted after "Re:".
    """

    message_pk: int
    reference: str
    language: str | None
    subject: str
    kind: str
    message_id: str | None
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class AckContext:
    """All a template may show. Deliberately nothing about the reporter or the report."""

    reference: str


def ack_subject(subject: str, reference: str, prefix: str, *, quote: bool = True) -> str:
    """'Re: <their subject> [Ref. R-1]': cleaned, no stacked 'Re:', the tag added once."""
    tag = f"[{clean_header(f'{prefix} {reference}')}]"
    theirs = _REPLY_PREFIX.sub("", clean_header(subject)) if quote else ""
    if tag.lower() in theirs.lower():
        return f"Re: {theirs}"
    return f"Re: {theirs} {tag}" if theirs else f"Re: {tag}"


def compose_acknowledgement(
    request: AckRequest, to_address: str, settings: Settings, templates: Templates
) -> OutboundMessage:
    """The acknowledgement as an OutboundMessage. Raises TemplateError."""
    rendered = templates.render(PURPOSE, request.language, AckContext(request.reference))
    ack = settings.acknowledgement
    parent = message_id_token(request.message_id)
    return OutboundMessage(
        purpose=PURPOSE,
        to_address=to_address,
        from_address=settings.ack_from_address,
        subject=ack_subject(
            request.subject, request.reference, ack.reference_prefix, quote=ack.quote_subject
        ),
        text=rendered.text,
        html=rendered.html,
        language=rendered.language,
        in_reply_to=parent,
        references=request.references,
        auto_submitted="auto-replied",
        # Asks Exchange and Outlook not to answer this automatic reply with an automatic reply.
        extra_headers=(("X-Auto-Response-Suppress", "All"),),
    )


def last_acknowledged_at(session: Session, address: str) -> datetime | None:
    """When `address` was last queued an acknowledgement: the window's input."""
    return last_queued_at(session, address, PURPOSE)


def acknowledge(
    session: Session,
    request: AckRequest,
    decision: AckDecision,
    settings: Settings,
    now: datetime,
    *,
    templates: Templates | None = None,
) -> Delivery | None:
    """Queue the acknowledgement `decision` calls for, in the caller's transaction.

    Returns the new `deliveries` row, or None when the decision says no or the message cannot
    be composed (a broken template, an unusable address): a missing acknowledgement is logged,
    and must never cost the report its recording, so only database errors propagate.
    """
    if not decision.acknowledge or decision.to_address is None:
        return None
    templates = templates or Templates(settings.templates_dir)
    try:
        message = compose_acknowledgement(request, decision.to_address, settings, templates)
        return enqueue(session, message, now=now, in_reply_to_message_pk=request.message_pk)
    except (TemplateError, InvalidOutbound) as exc:
        log.error(
            "acknowledgement not queued",
            extra=fields(message=request.message_pk, error=str(exc)),
        )
        return None
