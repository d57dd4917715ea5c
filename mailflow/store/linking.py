"""Finding what an incoming message belongs to: its original (duplicates), the delivery it
answers, and the report a follow-up continues. Queries only; records.py decides and writes.

Order of evidence, firmest first (issue #4): reply headers (In-Reply-To, References: our own
acknowledgements and campaign mails included), then case codes, then the normalised subject
from the same correspondent. Fuzzy matches (an MP's name and country) are only suggestions.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mailflow.store.models import (
    Case,
    Delivery,
    LinkSuggestion,
    Message,
    Person,
    Report,
    Reporter,
    case_persons,
    report_cases,
    report_persons,
)

MAX_SUGGESTIONS = 10


def duplicate_original(
    session: Session, message: Message, subject: str, sender: str | None
) -> Message | None:
    """The earliest other message with the same Message-ID, subject and sender: the same mail
    delivered again with different transport headers. A different message that merely reuses
    a Message-ID (other subject or sender) is not a duplicate."""
    if not message.message_id:
        return None
    return session.scalars(
        select(Message)
        .where(
            Message.message_id == message.message_id,
            Message.id != message.id,
            Message.id < message.id,
            Message.subject == subject,
            Message.from_address == sender,
        )
        .order_by(Message.id)
        .limit(1)
    ).first()


def _stored_form(referenced: Sequence[str]) -> list[str]:
    """Message-IDs as the database keeps them (messages and deliveries): in angle brackets."""
    return [f"<{mid}>" for mid in referenced]


def answered_delivery(session: Session, referenced: Sequence[str]) -> Delivery | None:
    """One of our outbound messages (an acknowledgement, a campaign mail) this one answers."""
    if not referenced:
        return None
    referenced = _stored_form(referenced)
    rows = session.scalars(select(Delivery).where(Delivery.message_id.in_(referenced))).all()
    by_id = {row.message_id: row for row in rows}
    return next((by_id[mid] for mid in referenced if mid in by_id), None)


def delivery_by_verp(session: Session, tokens: Sequence[str]) -> Delivery | None:
    """The delivery a bounce names in its VERP address."""
    if not tokens:
        return None
    return session.scalars(select(Delivery).where(Delivery.verp_token.in_(tokens)).limit(1)).first()


def delivery_by_unsubscribe(session: Session, tokens: Sequence[str]) -> Delivery | None:
    """The campaign mail whose List-Unsubscribe address a message was sent to."""
    if not tokens:
        return None
    query = select(Delivery).where(Delivery.unsubscribe_token.in_(tokens)).limit(1)
    return session.scalars(query).first()


def report_by_reply(
    session: Session, referenced: Sequence[str], delivery: Delivery | None
) -> Report | None:
    """The report of the nearest referenced message that has one (or of the message our
    referenced acknowledgement answered)."""
    if delivery is not None and delivery.in_reply_to_message_pk is not None:
        answered = session.get(Message, delivery.in_reply_to_message_pk)
        if answered is not None and answered.report is not None:
            return answered.report
    if not referenced:
        return None
    referenced = _stored_form(referenced)
    rows = session.execute(
        select(Message.message_id, Message.report_id).where(
            Message.message_id.in_(referenced), Message.report_id.is_not(None)
        )
    ).all()
    by_id = {mid: report_id for mid, report_id in rows}
    found = next((by_id[mid] for mid in referenced if mid in by_id), None)
    return session.get(Report, found) if found is not None else None


def report_by_case_codes(session: Session, codes: Sequence[str]) -> Report | None:
    """The most recent report already tied to one of the case codes."""
    if not codes:
        return None
    return session.scalars(
        select(Report)
        .join(report_cases, report_cases.c.report_id == Report.id)
        .join(Case, Case.id == report_cases.c.case_id)
        .where(Case.code.in_(codes))
        .order_by(Report.id.desc())
        .limit(1)
    ).first()


def report_by_subject(
    session: Session, key: str | None, correspondent: str | None
) -> Report | None:
    """The latest report with a message of the same thread key from the same person (the
    sender of that message, or the reporter behind a form submission)."""
    if not key or not correspondent:
        return None
    return session.scalars(
        select(Report)
        .join(Message, Message.report_id == Report.id)
        .outerjoin(Reporter, Reporter.id == Report.reporter_id)
        .where(
            Message.subject_key == key,
            or_(Message.from_address == correspondent, Reporter.email == correspondent),
        )
        .order_by(Report.id.desc())
        .limit(1)
    ).first()


def suggest_by_names(session: Session, message: Message, report: Report) -> list[LinkSuggestion]:
    """Earlier reports and cases about an MP of the same family name and country."""
    suggestions: list[LinkSuggestion] = []
    for person in report.persons:
        if not person.family_name:
            continue
        twins = select(Person.id).where(
            func.lower(Person.family_name) == person.family_name.lower(),
            Person.country == person.country,
            Person.id != person.id,
        )
        reason = f"MP family name {person.family_name!r} and country {person.country}"
        other_reports = session.scalars(
            select(report_persons.c.report_id)
            .where(report_persons.c.person_id.in_(twins), report_persons.c.report_id != report.id)
            .distinct()
            .limit(MAX_SUGGESTIONS)
        )
        suggestions += [
            LinkSuggestion(message_pk=message.id, report_id=r, reason=reason) for r in other_reports
        ]
        cases = session.scalars(
            select(case_persons.c.case_id).where(case_persons.c.person_id.in_(twins)).distinct()
        )
        suggestions += [
            LinkSuggestion(message_pk=message.id, case_id=c, reason=reason) for c in cases
        ]
    return suggestions[:MAX_SUGGESTIONS]
