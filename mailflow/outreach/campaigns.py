"""Campaigns: the rules of their life cycle, the approval digest and what one message says. Pure.

A campaign mails a decision to an audience (audience.py). Nothing goes out before a named
person approves it, and the approval is of *content*: `approval_digest` hashes everything the
recipients will read or that decides who they are, so any edit (or a changed template file)
makes the approval stale, and `send` refuses until someone approves again.

What a template may show is `CampaignContext`, a frozen dataclass with deliberately no
reporter field: the decision, its cases and documents, and the recipient's own particulars.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from mailflow.delivery.compose import Attachment, OutboundMessage, list_headers
from mailflow.errors import MailflowError
from mailflow.outreach.audience import Geography
from mailflow.settings import Settings
from mailflow.templates import primary_language
from mailflow.vocabulary import RECIPIENT_ROLES

REMINDER = "reminder"
TEST = "campaign_test"
TEST_TAG = "[TEST]"
DOCUMENT_LANGUAGES = ("en", "fr")  # the fallbacks when no document is in the recipient's
PARLIAMENT_ROLES = ("speaker", "ipu_group", "hr_committee")

# Which statuses allow which action. `send` re-run on a sending or done campaign only adds
# contacts not queued yet (the ledger's unique key), so it is allowed there.
ALLOWED: Mapping[str, tuple[str, ...]] = {
    "edit": ("draft", "approved"),
    "approve": ("draft", "approved", "sending", "paused", "done"),
    "send": ("approved", "sending", "done"),
    "pause": ("sending",),
    "resume": ("paused",),
    "cancel": ("draft", "approved", "sending", "paused"),
    "remind": ("sending", "done"),
    "test": ("draft", "approved", "sending", "paused", "done"),
}
_MONTHS = {
    "en": "January February March April May June July August September October November December",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
    "diciembre",
}
_REMINDER_PREFIX = {"en": "Reminder:", "fr": "Rappel :", "es": "Recordatorio:"}
_SLUG = re.compile(r"[^a-z0-9]+")


class CampaignError(MailflowError):
    """An action the campaign's state or content does not allow."""


def check_allowed(action: str, campaign_id: int, status: str) -> None:
    if status not in ALLOWED[action]:
        allowed = ", ".join(ALLOWED[action])
        raise CampaignError(
            f"campaign {campaign_id} is {status}: cannot {action} it (only when {allowed})"
        )


# -- the template context ------------------------------------------------------------------


@dataclass(frozen=True)
class CaseLine:
    code: str
    country: str  # display name in the message's language
    title: str


@dataclass(frozen=True)
class DocumentLine:
    name: str
    language: str
    url: str  # "" when the document is attached


@dataclass(frozen=True)
class CampaignContext:
    """Everything a decision or reminder template may show. No reporter fields, ever."""

    reference: str  # the campaign's, e.g. C-12: a reply quoting it is tied back
    organisation: str
    person_name: str
    role: str  # the role's label in the message's language
    country: str  # the recipient's country, display name
    decision_session: str
    decision_date: str
    decision_body: str
    decision_symbol: str
    cases: tuple[CaseLine, ...]
    documents: tuple[DocumentLine, ...]
    documents_attached: bool
    unsubscribe_url: str  # "" for official correspondents (no opt-out offered)
    sent_on: str  # when the campaign was sent ("" before): reminders refer to it


# -- plain values the store layer reads --------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    contact_id: int | None  # None: an address given for a test or preview
    email: str
    organisation: str
    person_name: str
    role: str
    country: str | None
    languages: tuple[str, ...]


@dataclass(frozen=True)
class DocumentFacts:
    language: str
    sha256: str
    media_type: str
    filename: str


@dataclass(frozen=True)
class DecisionFacts:
    id: int
    session: str
    adopted_on: date
    body: str
    symbol: str
    visibility: str
    cases: tuple[tuple[str, str, str], ...]  # (code, country ISO3, title)
    documents: tuple[DocumentFacts, ...]


@dataclass(frozen=True)
class CampaignFacts:
    id: int
    name: str
    purpose: str
    subjects: Mapping[str, str]
    sent_at: datetime | None

    @property
    def reference(self) -> str:
        return f"C-{self.id}"


@dataclass(frozen=True)
class MailOptions:
    """The settings a campaign message depends on, as one value."""

    from_address: str
    from_name: str
    list_id_domain: str
    unsubscribe_url_base: str
    unsubscribe_domain: str
    official_roles: frozenset[str]
    attach_documents: bool
    document_url_base: str

    @classmethod
    def from_settings(cls, settings: Settings) -> MailOptions:
        campaigns = settings.campaigns
        return cls(
            from_address=campaigns.from_address or settings.outbound.from_address,
            from_name=campaigns.from_name,
            list_id_domain=campaigns.list_id_domain or settings.bounce_domain,
            unsubscribe_url_base=campaigns.unsubscribe_url_base,
            unsubscribe_domain=settings.bounce_domain,
            official_roles=frozenset(campaigns.official_roles),
            attach_documents=campaigns.attach_documents,
            document_url_base=campaigns.document_url_base.rstrip("/"),
        )


# -- choosing and building ---------------------------------------------------------------------


def choose_language(languages: Sequence[str], has_template: Callable[[str], bool]) -> str:
    """The recipient's first language with a template ("es,fr" -> fr without es), else en."""
    for language in languages:
        code = primary_language(language)
        if code and has_template(code):
            return code
    return "en"


def documents_for(documents: Sequence[DocumentFacts], language: str) -> tuple[DocumentFacts, ...]:
    """The decision's documents in `language`, else in English, else in French."""
    for wanted in (language, *DOCUMENT_LANGUAGES):
        chosen = tuple(d for d in documents if primary_language(d.language) == wanted)
        if chosen:
            return chosen
    return ()


def document_name(document: DocumentFacts) -> str:
    return document.filename or f"decision-{document.language}-{document.sha256[:8]}"


def is_bulk(role: str, options: MailOptions) -> bool:
    """Bulk mail (List-Unsubscribe, opt-out link) for every role but official correspondents."""
    return role not in options.official_roles


def unsubscribe_uris(token: str, options: MailOptions) -> tuple[str, ...]:
    """The https URI (when configured) first, then the mailto one (RFC 2369 order of choice)."""
    https = f"{options.unsubscribe_url_base}{token}" if options.unsubscribe_url_base else ""
    mailto = f"mailto:unsubscribe+{token}@{options.unsubscribe_domain}"
    return (https, mailto) if https else (mailto,)


def format_date(value: date | datetime | None, language: str) -> str:
    if value is None:
        return ""
    months = _MONTHS.get(language, _MONTHS["en"]).split()
    month = months[value.month - 1]
    if language == "es":
        return f"{value.day} de {month} de {value.year}"
    return f"{value.day} {month} {value.year}"


def role_label(role: str, language: str) -> str:
    term = next((t for t in RECIPIENT_ROLES if t.code == role), None)
    if term is None:
        return role
    return term.label_fr if language == "fr" else term.label_en


def build_context(
    campaign: CampaignFacts,
    decision: DecisionFacts,
    recipient: Recipient,
    *,
    language: str,
    geography: Geography,
    options: MailOptions,
    unsubscribe_url: str,
) -> CampaignContext:
    documents = documents_for(decision.documents, language)
    base = options.document_url_base
    return CampaignContext(
        reference=campaign.reference,
        organisation=recipient.organisation,
        person_name=recipient.person_name,
        role=role_label(recipient.role, language),
        country=geography.country_name(recipient.country, language),
        decision_session=decision.session,
        decision_date=format_date(decision.adopted_on, language),
        decision_body=decision.body,
        decision_symbol=decision.symbol,
        cases=tuple(
            CaseLine(code, geography.country_name(country, language), title)
            for code, country, title in decision.cases
        ),
        documents=tuple(
            DocumentLine(
                name=document_name(d),
                language=d.language,
                url="" if options.attach_documents else f"{base}/{d.sha256}/{document_name(d)}",
            )
            for d in documents
        ),
        documents_attached=options.attach_documents,
        unsubscribe_url=unsubscribe_url,
        sent_on=format_date(campaign.sent_at, language),
    )


def subject_for(campaign: CampaignFacts, decision: DecisionFacts, language: str) -> str:
    """The campaign's subject in `language`, else English, else any, else a plain default."""
    subjects = campaign.subjects
    return (
        subjects.get(language)
        or subjects.get("en")
        or next(iter(subjects.values()), "")
        or f"IPU: {decision.body}, {decision.session}"
    )


def message_subject(base: str, purpose: str, language: str, *, test: bool) -> str:
    subject = base
    if purpose == REMINDER:
        subject = f"{_REMINDER_PREFIX.get(language, _REMINDER_PREFIX['en'])} {subject}"
    return f"{TEST_TAG} {subject}" if test else subject


def list_id(campaign: CampaignFacts, domain: str) -> str:
    """RFC 2919 list identifier: c<id>-<name slug>.lists.<domain>, stable for the campaign."""
    folded = unicodedata.normalize("NFKD", campaign.name).encode("ascii", "ignore").decode()
    slug = _SLUG.sub("-", folded.lower()).strip("-")[:40].strip("-")
    return f"c{campaign.id}{'-' + slug if slug else ''}.lists.{domain}"


@dataclass(frozen=True)
class Composed:
    """What a message needs beyond the rendered bodies."""

    purpose: str  # the ledger's purpose: the campaign's, REMINDER or TEST
    subject: str
    language: str
    text: str
    html: str | None
    unsubscribe_token: str | None  # None: official correspondence, no opt-out


def campaign_message(
    composed: Composed,
    campaign: CampaignFacts,
    recipient: Recipient,
    options: MailOptions,
    attachments: tuple[Attachment, ...],
) -> OutboundMessage:
    uris = (
        unsubscribe_uris(composed.unsubscribe_token, options) if composed.unsubscribe_token else ()
    )
    return OutboundMessage(
        purpose=composed.purpose,
        to_address=recipient.email,
        to_name=recipient.person_name or recipient.organisation,
        from_address=options.from_address,
        from_name=options.from_name,
        subject=composed.subject,
        text=composed.text,
        html=composed.html,
        language=composed.language,
        extra_headers=list_headers(
            list_id(campaign, options.list_id_domain), uris, one_click=bool(uris)
        ),
        attachments=attachments,
    )


# -- approval ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestInputs:
    """Everything an approval covers. `templates`: (path under the templates root, sha256 of
    the file's bytes) for the campaign's purpose and the reminder, sorted."""

    name: str
    purpose: str
    decision_id: int | None
    case_codes: tuple[str, ...]
    documents: tuple[tuple[str, str], ...]  # (language, sha256), sorted
    audience_json: str
    subjects: Mapping[str, str]
    templates: tuple[tuple[str, str], ...]


def approval_digest(inputs: DigestInputs) -> str:
    """sha256 over a canonical JSON of the inputs: equal content, equal digest."""
    canonical = json.dumps(
        {
            "name": inputs.name,
            "purpose": inputs.purpose,
            "decision_id": inputs.decision_id,
            "case_codes": sorted(inputs.case_codes),
            "documents": sorted(list(d) for d in inputs.documents),
            "audience": json.loads(inputs.audience_json),
            "subjects": dict(sorted(inputs.subjects.items())),
            "templates": sorted(list(t) for t in inputs.templates),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def confidential_refusal(
    decision: DecisionFacts, roles: Sequence[str], options: MailOptions
) -> str | None:
    """A confidential decision goes to official correspondents only: publishing it by mistake
    (to the media, say) cannot be undone."""
    if decision.visibility == "public":
        return None
    others = sorted(set(roles) - options.official_roles)
    if not others:
        return None
    return (
        f"decision {decision.id} is confidential, and the audience includes {', '.join(others)}:"
        " a confidential decision goes to official correspondents only"
    )


# -- reminders -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReminderPolicy:
    after_days: int
    every_days: int
    max_rounds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ReminderPolicy:
        c = settings.campaigns
        return cls(c.reminder_after_days, c.reminder_every_days, c.reminder_max)


def reminder_round(
    policy: ReminderPolicy,
    sent_at: datetime | None,
    now: datetime,
    *,
    reported: bool,
    rounds_sent: int,
    last_reminded_at: datetime | None,
) -> int | None:
    """The round of the reminder a parliament's contact is due now, or None.

    Due once `after_days` have passed since the campaign was sent, while the parliament has
    sent no action report, at most `max_rounds` times and once per `every_days`.
    """
    if sent_at is None or reported or rounds_sent >= policy.max_rounds:
        return None
    if (now - sent_at).total_seconds() < policy.after_days * 86400:
        return None
    recent = last_reminded_at is not None and (now - last_reminded_at).total_seconds() < (
        policy.every_days * 86400
    )
    if recent:
        return None
    return rounds_sent + 1
