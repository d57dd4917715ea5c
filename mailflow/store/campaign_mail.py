"""Campaign messages: rendering one for one recipient, and queuing them on the delivery path.

`compose` is the one way a campaign message is built; `preview` hands its result to the same
`render` that `enqueue` uses, and `send`, `queue_tests` and `remind` hand it to `enqueue`. A
preview is therefore the message itself, except for what is fresh per message (Message-ID,
Date, MIME boundaries, the opt-out token); once a recipient's row is queued, `preview` shows
its stored bytes, exactly what the relay gets.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import OutboundMessage, enqueue
from mailflow.delivery.compose import Attachment, domain_of, new_identity, render
from mailflow.delivery.ledger import Queued, enqueue_many
from mailflow.outreach import campaigns as rules
from mailflow.outreach.campaigns import (
    CampaignError,
    CampaignFacts,
    Composed,
    DecisionFacts,
    Recipient,
)
from mailflow.store import campaigns as store
from mailflow.store.campaigns import Workspace
from mailflow.store.engine import translate_db_errors
from mailflow.store.models import (
    ActionReport,
    Blob,
    Campaign,
    Contact,
    Delivery,
    action_report_cases,
    decision_cases,
    normalise_email,
)

Progress = Callable[[int], None]


class BlobCache:
    """Decision documents' bytes, read once per command however many recipients get them:
    on first use through `session`, or beforehand with `load`, for rendering outside any
    transaction (`send`)."""

    def __init__(self, session: Session | None = None) -> None:
        self.session = session
        self._data: dict[str, bytes] = {}

    def load(self, session: Session, decision: DecisionFacts) -> None:
        for document in decision.documents:
            self._read(session, document.sha256)

    def __call__(self, sha256: str) -> bytes:
        if sha256 in self._data:
            return self._data[sha256]
        assert self.session is not None, "a document neither loaded nor readable"
        return self._read(self.session, sha256)

    def _read(self, session: Session, sha256: str) -> bytes:
        if sha256 not in self._data:
            self._data[sha256] = session.get_one(Blob, sha256).data
        return self._data[sha256]


def recipient_of(contact: Contact) -> Recipient:
    return Recipient(
        contact_id=contact.id,
        email=contact.email,
        organisation=contact.organisation or "",
        person_name=contact.person_name or "",
        role=contact.role,
        country=contact.country,
        languages=tuple(part.strip() for part in contact.languages.split(",") if part.strip()),
    )


def compose(
    ws: Workspace,
    campaign: CampaignFacts,
    decision: DecisionFacts,
    recipient: Recipient,
    blobs: Callable[[str], bytes],
    *,
    template: str,
    test: bool = False,
) -> tuple[OutboundMessage, str | None]:
    """The message for `recipient` and its opt-out token (None for official correspondents).
    `template`: the campaign's purpose, or the reminder's."""
    language = rules.choose_language(
        recipient.languages, lambda code: ws.templates.language_for(template, code) == code
    )
    token = secrets.token_hex(16) if rules.is_bulk(recipient.role, ws.options) else None
    url = rules.unsubscribe_uris(token, ws.options)[0] if token else ""
    context = rules.build_context(
        campaign,
        decision,
        recipient,
        language=language,
        geography=ws.geography,
        options=ws.options,
        unsubscribe_url=url,
    )
    rendered = ws.templates.render(template, language, context)
    documents = rules.documents_for(decision.documents, rendered.language)
    attachments = tuple(
        Attachment(rules.document_name(d), d.media_type, blobs(d.sha256)) for d in documents
    )
    subject = rules.subject_for(campaign, decision, rendered.language)
    composed = Composed(
        purpose=rules.TEST if test else template,
        subject=rules.message_subject(subject, template, rendered.language, test=test),
        language=rendered.language,
        text=rendered.text,
        html=rendered.html,
        unsubscribe_token=token,
    )
    kept = attachments if ws.options.attach_documents else ()
    return rules.campaign_message(composed, campaign, recipient, ws.options, kept), token


def find_recipient(
    session: Session, target: str, *, language: str = "en", role: str = "speaker"
) -> Recipient:
    """A contact by id or address; an unknown address becomes a bare recipient (tests)."""
    contact = (
        session.get(Contact, int(target))
        if target.isdigit()
        else session.scalar(select(Contact).where(Contact.email == normalise_email(target)))
    )
    if contact is not None:
        return recipient_of(contact)
    if target.isdigit():
        raise CampaignError(f"no contact {target}")
    return Recipient(None, normalise_email(target), "", "", role, None, (language,))


def approve(session: Session, ws: Workspace, campaign_id: int, by: str, now: datetime) -> None:
    """Render the campaign once per language in use (a broken template is found now, not
    mid-mailing), then record the approval."""
    campaign = store.get(session, campaign_id)
    decision = store.decision_facts(session, campaign.decision_id)
    blobs = BlobCache(session)
    seen: set[tuple[tuple[str, ...], bool]] = set()
    ids = [r.id for r in store.recipients(session, ws, campaign).recipients]
    for contact in _contacts(session, ids):
        recipient = recipient_of(contact)
        kind = (recipient.languages[:1], rules.is_bulk(recipient.role, ws.options))
        if kind not in seen:
            seen.add(kind)
            for template in (campaign.purpose, rules.REMINDER):
                compose(ws, store.facts(campaign), decision, recipient, blobs, template=template)
    store.record_approval(session, ws, campaign, by, now)


def preview(
    session: Session, ws: Workspace, campaign_id: int, recipient: Recipient, now: datetime
) -> bytes:
    """The message `recipient` gets, as .eml bytes: the queued one if there is one."""
    campaign = store.get(session, campaign_id)
    if recipient.contact_id is not None:
        queued = session.scalar(
            select(Delivery.body_sha256).where(
                Delivery.campaign_id == campaign.id,
                Delivery.contact_id == recipient.contact_id,
                Delivery.purpose == campaign.purpose,
                Delivery.round == 0,
            )
        )
        if queued is not None:
            return session.get_one(Blob, queued).data
    decision = store.decision_facts(session, campaign.decision_id)
    message, _ = compose(
        ws,
        store.facts(campaign),
        decision,
        recipient,
        BlobCache(session),
        template=campaign.purpose,
    )
    return render(message, new_identity(domain_of(message.from_address)), now)


def queue_tests(
    session: Session, ws: Workspace, campaign_id: int, targets: Sequence[Recipient], now: datetime
) -> list[Delivery]:
    """Test copies marked [TEST], allowed before approval: they go to the given addresses
    only, on the delivery path (purpose campaign_test), never to the audience."""
    campaign = store.get(session, campaign_id)
    rules.check_allowed("test", campaign.id, campaign.status)
    decision = store.decision_facts(session, campaign.decision_id)
    blobs = BlobCache(session)
    rows = []
    for target in targets:
        message, token = compose(
            ws,
            store.facts(campaign),
            decision,
            target,
            blobs,
            template=campaign.purpose,
            test=True,
        )
        # No contact on the row: a test copy is not the contact's mailing (which the ledger
        # allows once), and a test address is often nobody's contact.
        row = enqueue(session, message, now=now, campaign_id=campaign.id)
        row.unsubscribe_token = token
        rows.append(row)
    return rows


def _contacts(session: Session, ids: Sequence[int]) -> list[Contact]:
    if not ids:
        return []
    found = session.scalars(select(Contact).where(Contact.id.in_(ids)))
    return sorted(found, key=lambda c: c.id)


# -- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendPlan:
    to_queue: tuple[int, ...]  # contact ids not queued yet
    already: int  # audience members queued by an earlier run
    suppressed: int


def plan_send(
    sessions: sessionmaker[Session], ws: Workspace, campaign_id: int, now: datetime
) -> SendPlan:
    """Check the approval, mark the campaign sending, and list who still needs a row."""
    with translate_db_errors(), sessions.begin() as session:
        campaign = store.get(session, campaign_id)
        if campaign.status != "draft":  # a draft: say it needs approving, the useful answer
            rules.check_allowed("send", campaign.id, campaign.status)
        store.check_approved(session, ws, campaign)
        store.check_content(session, ws, campaign)
        resolution = store.recipients(session, ws, campaign)
        queued = set(
            session.scalars(
                select(Delivery.contact_id).where(
                    Delivery.campaign_id == campaign.id,
                    Delivery.purpose == campaign.purpose,
                    Delivery.round == 0,
                )
            )
        )
        todo = tuple(r.id for r in resolution.recipients if r.id not in queued)
        campaign.status = "sending"
        campaign.sent_at = campaign.sent_at or now
        return SendPlan(todo, len(resolution.recipients) - len(todo), len(resolution.suppressed))


def send(
    sessions: sessionmaker[Session],
    ws: Workspace,
    campaign_id: int,
    *,
    plan: SendPlan,
    now: datetime,
    progress: Progress | None = None,
) -> int:
    """Queue one ledger row per planned recipient, `batch_size` per transaction; the worker
    delivers them. Stops early if the campaign is paused or cancelled meanwhile; running
    `send` again carries on (the ledger's unique key never queues a contact twice)."""
    size = max(ws.settings.campaigns.batch_size, 1)
    queued, documents = 0, BlobCache()
    for start in range(0, len(plan.to_queue), size):
        batch = plan.to_queue[start : start + size]
        # Read, render, write: rendering (most of the time) holds no transaction, so the
        # delivery worker and intake can commit meanwhile. On SQLite every transaction takes
        # the one write lock, and a batch rendered inside it kept them waiting batch after
        # batch, long enough for their busy timeout to run out.
        with translate_db_errors(), sessions.begin() as session:
            campaign = store.get(session, campaign_id)
            if campaign.status != "sending":
                break
            facts = store.facts(campaign)
            decision = store.decision_facts(session, campaign.decision_id)
            documents.load(session, decision)
            recipients = [recipient_of(contact) for contact in _contacts(session, batch)]
        items = []
        for recipient in recipients:
            message, token = compose(
                ws, facts, decision, recipient, documents, template=facts.purpose
            )
            items.append(Queued(message, recipient.contact_id, token))
        with translate_db_errors(), sessions.begin() as session:
            if store.get(session, campaign_id).status != "sending":
                break  # paused or cancelled while this batch was rendered: not queued
            enqueue_many(session, items, now=now, campaign_id=campaign_id)
        queued += len(batch)
        if progress is not None:
            progress(len(batch))
    return queued


# -- reminders -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReminderPlan:
    due: tuple[tuple[int, int], ...]  # (contact id, round)
    reported: tuple[str, ...]  # parliaments (ISO3) that sent an action report: no reminder
    waiting: int  # parliaments' contacts not due yet (too early, reminded lately, or enough)


def plan_reminders(
    session: Session, ws: Workspace, campaign: Campaign, now: datetime
) -> ReminderPlan:
    rules.check_allowed("remind", campaign.id, campaign.status)
    store.check_approved(session, ws, campaign)  # the approval covers the reminder's wording
    reached = session.execute(
        select(Contact.id, Contact.country)
        .join(Delivery, Delivery.contact_id == Contact.id)
        .where(
            Delivery.campaign_id == campaign.id,
            Delivery.purpose == campaign.purpose,
            Delivery.round == 0,
            Delivery.state.in_(("sent", *store.ACTIVE_STATES)),
            Contact.role.in_(rules.PARLIAMENT_ROLES),
            Contact.country.is_not(None),
        )
        .order_by(Contact.id)
    ).all()
    reported = _reported_countries(session, campaign)
    history = {
        contact_id: (rounds, last)
        for contact_id, rounds, last in session.execute(
            select(Delivery.contact_id, func.max(Delivery.round), func.max(Delivery.created_at))
            .where(Delivery.campaign_id == campaign.id, Delivery.purpose == rules.REMINDER)
            .group_by(Delivery.contact_id)
        )
    }
    policy = rules.ReminderPolicy.from_settings(ws.settings)
    due, waiting = [], 0
    for contact_id, country in reached:
        rounds, last = history.get(contact_id, (0, None))
        is_reported = (country or "").upper() in reported
        round_ = rules.reminder_round(
            policy,
            campaign.sent_at,
            now,
            reported=is_reported,
            rounds_sent=rounds,
            last_reminded_at=last,
        )
        if round_ is not None:
            due.append((contact_id, round_))
        elif not is_reported:
            waiting += 1
    return ReminderPlan(tuple(due), tuple(sorted(reported)), waiting)


def _reported_countries(session: Session, campaign: Campaign) -> frozenset[str]:
    """Parliaments that sent an action report since the campaign went out: one tied to the
    campaign, or one about a case of its decision."""
    about_cases = (
        select(action_report_cases.c.action_report_id)
        .join(decision_cases, decision_cases.c.case_id == action_report_cases.c.case_id)
        .where(decision_cases.c.decision_id == campaign.decision_id)
    )
    rows = session.scalars(
        select(ActionReport.country).where(
            ActionReport.country.is_not(None),
            ActionReport.received_at >= campaign.sent_at,
            (ActionReport.campaign_id == campaign.id) | ActionReport.id.in_(about_cases),
        )
    )
    return frozenset(country.upper() for country in rows if country)


def queue_reminders(
    session: Session, ws: Workspace, campaign: Campaign, plan: ReminderPlan, now: datetime
) -> int:
    decision = store.decision_facts(session, campaign.decision_id)
    blobs = BlobCache(session)
    rounds = dict(plan.due)
    items = []
    for contact in _contacts(session, list(rounds)):
        message, token = compose(
            ws,
            store.facts(campaign),
            decision,
            recipient_of(contact),
            blobs,
            template=rules.REMINDER,
        )
        items.append(Queued(message, contact.id, token, rounds[contact.id]))
    enqueue_many(session, items, now=now, campaign_id=campaign.id)
    return len(rounds)
