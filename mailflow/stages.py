"""Processing stages: what intake learns from a stored message, and how it is recorded.

A stage is split in two on purpose. ``stage(raw)`` is pure and may be slow (MIME parsing,
classification): it runs outside any database transaction, so parsing never holds a lock. It
returns a ``Record``, which writes its findings onto the message row inside the short
transaction that also marks the message processed.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from mailflow.ack import (
    AckPolicy,
    AckRequest,
    Incoming,
    acknowledge,
    last_acknowledged_at,
    should_acknowledge,
)
from mailflow.classify.rules import RuleSet
from mailflow.headers import basic_headers
from mailflow.settings import Settings
from mailflow.store.models import Message
from mailflow.store.records import Linked, record_understanding
from mailflow.templates import Templates
from mailflow.understanding import Understanding, understand

Record = Callable[[Session, Message], None]
Stage = Callable[[bytes], Record]


def record_headers(raw: bytes) -> Record:
    """The headers triage needs to list a message. Total: never raises."""
    headers = basic_headers(raw)

    def record(session: Session, message: Message) -> None:
        message.subject = headers.subject
        message.from_address = headers.from_address
        message.date = headers.date

    return record


def understanding(rules: RuleSet, settings: Settings) -> Stage:
    """Parse and classify (pure), then in the transaction record, link and acknowledge.

    A message that cannot be parsed within the limits raises `MessageError` here, before any
    write: intake quarantines it with the reason, raw bytes kept.
    """
    policy = AckPolicy.from_settings(settings)
    templates = Templates(settings.templates_dir)

    def stage(raw: bytes) -> Record:
        understood = understand(raw, rules)

        def record(session: Session, message: Message) -> None:
            linked = record_understanding(session, message, understood)
            _acknowledge(session, message, understood, linked, (settings, policy, templates))

        return record

    return stage


def _acknowledge(
    session: Session,
    message: Message,
    understood: Understanding,
    linked: Linked,
    config: tuple[Settings, AckPolicy, Templates],
) -> None:
    """Queue an acknowledgement for a new report or action report, on the one delivery path.

    The message's arrival time stands for "now", so processing a backlog later decides the
    same as processing it at once.
    """
    settings, policy, templates = config
    if not linked.created:
        return
    if linked.report is not None:
        reference = linked.report.reference
    elif linked.action_report is not None:
        reference = f"A-{message.first_received_at.year}-{linked.action_report.id:06d}"
    else:
        return
    parsed, found = understood.parsed, understood.classification
    incoming = Incoming.from_parsed(parsed, found.kind, form_submission=found.form is not None)
    now = message.first_received_at
    address = incoming.reply_to if incoming.form_submission else incoming.from_address
    last = last_acknowledged_at(session, address) if address else None
    request = AckRequest(
        message_pk=message.id,
        reference=reference,
        language=found.language,
        subject=parsed.subject,
        kind=found.kind,
        message_id=parsed.message_id,
        references=(*parsed.references, *([parsed.message_id] if parsed.message_id else [])),
    )
    decision = should_acknowledge(incoming, policy, last, now)
    acknowledge(session, request, decision, settings, now, templates=templates)


def default_stages(rules: RuleSet, settings: Settings) -> tuple[Stage, ...]:
    return (record_headers, understanding(rules, settings))
