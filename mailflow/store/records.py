"""Recording what intake understood of a message: its fields, its attachments, and the record
it creates or joins (a report, an action report), with cases, MPs, violations and reporter.

Runs inside the processing transaction (mailflow/intake.py), after the pure parse and
classification, so a failure here rolls everything back and quarantines the message.
The reporter's identity goes into `reporters` only; nothing here logs it.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailflow.classify.model import Classification, FormSubmission
from mailflow.linking import (
    referenced_ids,
    returned_ids,
    subject_key,
    unsubscribe_tokens,
    verp_tokens,
)
from mailflow.logs import fields
from mailflow.parse.model import ParsedMessage
from mailflow.store import linking
from mailflow.store.models import (
    ActionReport,
    ActionReportAction,
    ActionType,
    Attachment,
    Blob,
    Case,
    Delivery,
    Message,
    Person,
    Report,
    Reporter,
    Suppression,
    Violation,
    is_case_code,
    normalise_email,
)

if TYPE_CHECKING:
    from mailflow.understanding import Understanding

log = logging.getLogger(__name__)
SUMMARY_CHARS = 4000
YES = {"yes", "oui", "si", "sí", "sim"}


@dataclass(frozen=True)
class Linked:
    """What the message was tied to, for the caller (acknowledgements, logs)."""

    report: Report | None = None
    action_report: ActionReport | None = None
    delivery: Delivery | None = None
    method: str | None = None

    @property
    def created(self) -> bool:
        return self.method == "new"


def record_understanding(session: Session, message: Message, understood: Understanding) -> Linked:
    parsed, found = understood.parsed, understood.classification
    message.subject = parsed.subject or message.subject
    message.kind = found.kind
    message.language = found.language
    message.urgent = found.urgent
    message.subject_key = subject_key(parsed.subject)
    message.classification = json.dumps(
        {
            **found.labels(),
            "fired": [f.describe() for f in found.fired],
            "defects": list(parsed.defects),
        },
        ensure_ascii=False,
    )
    _record_attachments(session, message, parsed)
    linked = _link(session, message, parsed, found)
    message.linked_by = linked.method
    if linked.report is not None and linked.report.urgent:
        # Never let an urgent report sit unseen: a warning every operator's log shows.
        log.warning(
            "urgent report",
            extra=fields(report=linked.report.reference, message=message.id, how=linked.method),
        )
    return linked


def _record_attachments(session: Session, message: Message, parsed: ParsedMessage) -> None:
    # A quarantined message processed again starts from a clean slate.
    session.execute(delete(Attachment).where(Attachment.message_pk == message.id))
    for part in parsed.attachments:
        if session.get(Blob, part.sha256) is None:
            session.add(Blob(sha256=part.sha256, size=part.size, data=part.content))
        session.add(
            Attachment(
                message_pk=message.id,
                blob_sha256=part.sha256,
                position=part.position,
                filename=part.filename or None,
                declared_type=part.declared_type[:255] or None,
                sniffed_type=part.sniffed_type[:255] or None,
                size=part.size,
            )
        )


def _link(
    session: Session, message: Message, parsed: ParsedMessage, found: Classification
) -> Linked:
    sender = parsed.from_.email if parsed.from_ else None
    original = linking.duplicate_original(session, message, parsed.subject, sender)
    if original is not None:
        message.duplicate_of_id = original.id
        message.report_id, message.action_report_id = original.report_id, original.action_report_id
        return Linked(original.report, original.action_report, None, "duplicate")
    if _unsubscribe(session, message, parsed):
        return Linked(delivery=session.get(Delivery, message.delivery_id))
    referenced = referenced_ids(parsed)
    delivery = linking.answered_delivery(session, referenced)
    if delivery is not None:
        message.delivery_id, message.campaign_id = delivery.id, delivery.campaign_id
    if found.kind == "bounce":
        return _bounce(session, message, parsed, found, delivery)
    if found.kind == "action_report":
        return _action_report(session, message, parsed, found, delivery)
    if found.kind not in ("report", "followup"):
        return Linked(delivery=delivery)
    report, method = None, "new"
    if found.kind == "followup":
        report, method = _thread(session, message, parsed, found, delivery)
    if report is None:
        report = _new_report(session, message, parsed, found)
    _add_findings(session, report, found)
    message.report_id = report.id
    if method == "new":
        session.add_all(linking.suggest_by_names(session, message, report))
    return Linked(report, None, delivery, method)


def _thread(
    session: Session,
    message: Message,
    parsed: ParsedMessage,
    found: Classification,
    delivery: Delivery | None,
) -> tuple[Report | None, str]:
    report = linking.report_by_reply(session, referenced_ids(parsed), delivery)
    if report is not None:
        return report, "reply"
    report = linking.report_by_case_codes(session, found.case_codes)
    if report is not None:
        return report, "case_code"
    report = linking.report_by_subject(session, message.subject_key, _correspondent(parsed, found))
    if report is not None:
        return report, "subject"
    return None, "new"


def _correspondent(parsed: ParsedMessage, found: Classification) -> str | None:
    """Who the person behind the message is: a form's Reply-To, else the sender."""
    if found.form is not None and parsed.reply_to:
        return parsed.reply_to[0].email or None
    return parsed.from_.email if parsed.from_ else None


def _new_report(
    session: Session, message: Message, parsed: ParsedMessage, found: Classification
) -> Report:
    report = Report(
        reference=f"tmp-{uuid.uuid4().hex[:16]}",
        reporter=_reporter(session, parsed, found),
        country=found.country,
        language=found.language,
    )
    session.add(report)
    session.flush()  # the reference is built from the id
    report.reference = f"R-{message.first_received_at.year}-{report.id:06d}"
    return report


def _reporter(session: Session, parsed: ParsedMessage, found: Classification) -> Reporter | None:
    form = found.form
    email = _correspondent(parsed, found) or (form.get("Reporter e-mail") if form else "")
    if not email:
        return None
    email = email.lower()[:320]
    reporter = session.scalars(select(Reporter).where(Reporter.email == email).limit(1)).first()
    if reporter is None:
        reporter = Reporter(email=email)
        session.add(reporter)
    reporter.reporter_type = found.reporter_type or reporter.reporter_type
    reporter.language = found.language or reporter.language
    if form is not None:
        _reporter_from_form(reporter, form)
    elif not reporter.name and parsed.from_ and parsed.from_.name:
        reporter.name = parsed.from_.name[:255]
    return reporter


def _reporter_from_form(reporter: Reporter, form: FormSubmission) -> None:
    reporter.name = form.get("Reporter name")[:255] or reporter.name
    reporter.phone = form.get("Reporter phone")[:64] or reporter.phone
    disclosable = form.get("Reporter identity may be disclosed").strip().lower()
    if disclosable:
        reporter.identity_disclosable = disclosable in YES


def _add_findings(session: Session, report: Report, found: Classification) -> None:
    """A follow-up adds what it tells: more cases, violations, MPs, and urgency."""
    report.urgent = report.urgent or found.urgent
    report.country = report.country or found.country
    for case in _cases(session, found.case_codes):
        if case not in report.cases:
            report.cases.append(case)
    for code in found.violations:
        violation = session.get(Violation, code)
        if violation is not None and violation not in report.violations:
            report.violations.append(violation)
    country = report.country
    for name in found.mp_names if country else ():
        person = _person(session, name, country or "")
        if person not in report.persons:
            report.persons.append(person)


def _cases(session: Session, codes: tuple[str, ...]) -> list[Case]:
    cases = []
    for code in codes:
        if not is_case_code(code):
            continue
        case = session.scalars(select(Case).where(Case.code == code)).first()
        if case is None:
            case = Case(code=code, country=code[:3])
            session.add(case)
        cases.append(case)
    return cases


def _person(session: Session, name: str, country: str) -> Person:
    name = name.strip()[:255]
    person = session.scalars(
        select(Person).where(Person.name == name, Person.country == country).limit(1)
    ).first()
    if person is None:
        words = name.split()
        person = Person(name=name, family_name=words[-1] if words else None, country=country)
        session.add(person)
    return person


def _action_report(
    session: Session,
    message: Message,
    parsed: ParsedMessage,
    found: Classification,
    delivery: Delivery | None,
) -> Linked:
    record = ActionReport(
        country=found.reporting_parliament,
        campaign_id=delivery.campaign_id if delivery else None,
        contact_id=delivery.contact_id if delivery else None,
        received_at=parsed.date or message.first_received_at,
        summary=parsed.new_text[:SUMMARY_CHARS] or None,
    )
    evidence = {f.value: f.evidence for f in found.fired if f.field == "action_types"}
    for code in found.action_types:
        if session.get(ActionType, code) is not None:
            record.actions.append(
                ActionReportAction(action_type=code, description=evidence.get(code))
            )
    record.cases.extend(_cases(session, found.case_codes))
    session.add(record)
    session.flush()
    message.action_report_id = record.id
    return Linked(None, record, delivery, "new")


def _envelope(message: Message) -> tuple[str, ...]:
    return tuple(
        address for source in message.sources for address in json.loads(source.envelope_to or "[]")
    )


def _unsubscribe(session: Session, message: Message, parsed: ParsedMessage) -> bool:
    """A message to a campaign's List-Unsubscribe address opts that recipient out.

    The token names the delivery, so only its recipient is suppressed, whoever sends the
    request (mail clients send it from the account that received the campaign).
    """
    tokens = unsubscribe_tokens(parsed, _envelope(message))
    delivery = linking.delivery_by_unsubscribe(session, tokens)
    if delivery is None:
        return False
    message.delivery_id, message.campaign_id = delivery.id, delivery.campaign_id
    if session.get(Suppression, normalise_email(delivery.to_address)) is None:
        detail = f"List-Unsubscribe mail, message {message.id}"
        session.add(Suppression(email=delivery.to_address, reason="opt_out", detail=detail))
    log.info("opt-out recorded", extra=fields(delivery=delivery.id, message=message.id))
    return True


def _bounce(
    session: Session,
    message: Message,
    parsed: ParsedMessage,
    found: Classification,
    delivery: Delivery | None,
) -> Linked:
    """Tie a bounce to the delivery it reports on; a hard one suppresses the address.

    Only a bounce tied to one of our deliveries (by its VERP address or the returned
    Message-ID) suppresses anything: a forged or misdirected bounce naming some address
    must not stop our mail to it.
    """
    delivery = (
        linking.delivery_by_verp(session, verp_tokens(parsed, _envelope(message)))
        or linking.answered_delivery(session, returned_ids(parsed))
        or delivery
    )
    if delivery is None:
        return Linked()
    message.delivery_id, message.campaign_id = delivery.id, delivery.campaign_id
    failed = {address.lower() for address in found.bounced_recipients}
    if failed and delivery.to_address.lower() not in failed:
        return Linked(delivery=delivery)  # about another recipient of the same message
    detail = f"{found.bounce_type or 'unknown'} bounce, message {message.id}"
    delivery.last_error = detail[:2000]
    if found.bounce_type == "hard":
        delivery.state = "bounced"
        if session.get(Suppression, normalise_email(delivery.to_address)) is None:
            session.add(Suppression(email=delivery.to_address, reason="hard_bounce", detail=detail))
    return Linked(delivery=delivery)
