"""Campaigns in the database: create, edit, approve, preview, test, send, pause, resume, cancel.

The rules are pure (mailflow.outreach.campaigns); this module reads and writes the rows and
renders messages through the one outbound path (mailflow.delivery): `preview` uses the same
composition as `enqueue`, so what it shows is what a recipient gets. Reporter data is never
read here: the queries touch contacts, campaigns, decisions, cases and documents only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.outreach import campaigns as rules
from mailflow.outreach.audience import (
    Audience,
    Geography,
    Resolution,
    load_geography,
    parse_audience,
)
from mailflow.outreach.campaigns import (
    CampaignError,
    CampaignFacts,
    DecisionFacts,
    DigestInputs,
    DocumentFacts,
    MailOptions,
)
from mailflow.settings import Settings
from mailflow.store.audience import resolve_audience
from mailflow.store.models import Campaign, Decision, Delivery
from mailflow.templates import Templates

ACTIVE_STATES = ("pending", "sending", "deferred")


@dataclass(frozen=True)
class Workspace:
    """What campaign operations read besides the database: templates, regions, settings."""

    settings: Settings
    templates: Templates
    geography: Geography
    options: MailOptions

    @classmethod
    def from_settings(cls, settings: Settings) -> Workspace:
        return cls(
            settings,
            Templates(settings.templates_dir),
            load_geography(settings.rules_dir),
            MailOptions.from_settings(settings),
        )


def get(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}", hint="`mailflow campaign show` ids")
    return campaign


def audience_of(campaign: Campaign, ws: Workspace) -> Audience:
    return parse_audience(json.loads(campaign.audience), ws.geography)


def create(
    session: Session,
    ws: Workspace,
    *,
    name: str,
    purpose: str,
    decision_id: int | None,
    audience: Audience,
    subjects: dict[str, str],
    by: str,
    now: datetime,
) -> Campaign:
    if decision_id is not None and session.get(Decision, decision_id) is None:
        raise CampaignError(f"no decision {decision_id}")
    if not (ws.templates.root / purpose / "en.txt").is_file():
        raise CampaignError(f"no templates for purpose {purpose!r} in {ws.templates.root}")
    campaign = Campaign(
        name=name.strip(),
        purpose=purpose,
        decision_id=decision_id,
        audience=audience.to_json(),
        subjects=json.dumps(_clean_subjects(subjects), sort_keys=True, ensure_ascii=False),
        status="draft",
        created_by=_named(by),
        created_at=now,
    )
    session.add(campaign)
    session.flush()
    return campaign


def edit(
    session: Session,
    campaign_id: int,
    *,
    name: str | None = None,
    audience: Audience | None = None,
    subjects: dict[str, str] | None = None,
) -> Campaign:
    """Change a campaign before sending. Any change withdraws its approval."""
    campaign = get(session, campaign_id)
    rules.check_allowed("edit", campaign.id, campaign.status)
    if name is not None:
        campaign.name = name.strip()
    if audience is not None:
        campaign.audience = audience.to_json()
    if subjects is not None:
        merged = {**json.loads(campaign.subjects), **_clean_subjects(subjects)}
        campaign.subjects = json.dumps(merged, sort_keys=True, ensure_ascii=False)
    _withdraw_approval(campaign)
    return campaign


def _withdraw_approval(campaign: Campaign) -> None:
    campaign.approved_by = campaign.approved_at = campaign.approved_digest = None
    campaign.status = "draft"


def _clean_subjects(subjects: dict[str, str]) -> dict[str, str]:
    return {lang.strip().lower(): text.strip() for lang, text in subjects.items() if text.strip()}


def _named(by: str) -> str:
    if not by.strip():
        raise CampaignError("a campaign action needs the name of who does it (--by NAME)")
    return by.strip()


# -- facts, digest, approval -------------------------------------------------------------------


def facts(campaign: Campaign) -> CampaignFacts:
    subjects = json.loads(campaign.subjects)
    return CampaignFacts(campaign.id, campaign.name, campaign.purpose, subjects, campaign.sent_at)


def decision_facts(session: Session, decision_id: int | None) -> DecisionFacts:
    if decision_id is None:
        raise CampaignError("the campaign has no decision to mail")
    decision = session.get_one(Decision, decision_id)
    return DecisionFacts(
        id=decision.id,
        session=decision.session,
        adopted_on=decision.adopted_on,
        body=decision.body,
        symbol=decision.symbol or "",
        visibility=decision.visibility,
        cases=tuple(
            (case.code, case.country, case.title or "")
            for case in sorted(decision.cases, key=lambda c: c.code)
        ),
        documents=tuple(
            DocumentFacts(d.language, d.blob_sha256, d.media_type, d.filename or "")
            for d in sorted(decision.documents, key=lambda d: (d.language, d.id))
        ),
    )


def template_hashes(root: Path, purposes: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(purpose/file, sha256 of its bytes) of every template file of `purposes`."""
    found = []
    for purpose in purposes:
        for path in sorted((root / purpose).glob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found.append((f"{purpose}/{path.name}", digest))
    return tuple(found)


def current_digest(session: Session, ws: Workspace, campaign: Campaign) -> str:
    decision = decision_facts(session, campaign.decision_id)
    return rules.approval_digest(
        DigestInputs(
            name=campaign.name,
            purpose=campaign.purpose,
            decision_id=campaign.decision_id,
            case_codes=tuple(code for code, _, _ in decision.cases),
            documents=tuple((d.language, d.sha256) for d in decision.documents),
            audience_json=campaign.audience,
            subjects=json.loads(campaign.subjects),
            templates=template_hashes(ws.templates.root, (campaign.purpose, rules.REMINDER)),
        )
    )


def recipients(session: Session, ws: Workspace, campaign: Campaign) -> Resolution:
    """Who the campaign would go to now: one per address, suppressed addresses apart."""
    return resolve_audience(session, audience_of(campaign, ws), campaign.decision_id, ws.geography)


def check_content(session: Session, ws: Workspace, campaign: Campaign) -> None:
    """What approval and sending both insist on: a confidential decision goes to official
    correspondents only."""
    decision = decision_facts(session, campaign.decision_id)
    roles = [r.role for r in recipients(session, ws, campaign).recipients]
    refusal = rules.confidential_refusal(decision, roles, ws.options)
    if refusal is not None:
        raise CampaignError(refusal, hint="make the decision public, or narrow the audience")


def record_approval(
    session: Session, ws: Workspace, campaign: Campaign, by: str, now: datetime
) -> None:
    """`by` approves the campaign's current content (the caller has rendered it once)."""
    rules.check_allowed("approve", campaign.id, campaign.status)
    check_content(session, ws, campaign)
    digest = current_digest(session, ws, campaign)  # queries: before any half-set approval
    campaign.approved_by = _named(by)
    campaign.approved_at = now
    campaign.approved_digest = digest
    if campaign.status == "draft":
        campaign.status = "approved"


def check_approved(session: Session, ws: Workspace, campaign: Campaign) -> None:
    """Refuse unless a person approved exactly the content that would go out now."""
    if campaign.approved_digest is None:
        raise CampaignError(
            f"campaign {campaign.id} is not approved: nothing is sent before someone approves it",
            hint=f"mailflow campaign approve {campaign.id} --by NAME",
        )
    if current_digest(session, ws, campaign) != campaign.approved_digest:
        raise CampaignError(
            f"campaign {campaign.id} changed since {campaign.approved_by} approved it (its "
            "audience, subjects, decision, documents or template files)",
            hint=f"check it, then: mailflow campaign approve {campaign.id} --by NAME",
        )


def withdraw_stale_approval(session: Session, ws: Workspace, campaign_id: int) -> bool:
    """Withdraw an approval whose content changed underneath it (a template file edited):
    `show` then says the campaign needs approving again. True when withdrawn."""
    campaign = get(session, campaign_id)
    if campaign.status != "approved" or campaign.approved_digest is None:
        return False
    if current_digest(session, ws, campaign) == campaign.approved_digest:
        return False
    _withdraw_approval(campaign)
    return True


# -- pause, resume, cancel, progress -------------------------------------------------------------

_NEXT_STATUS = {"pause": "paused", "resume": "sending", "cancel": "cancelled"}


def change_status(session: Session, campaign_id: int, action: str) -> Campaign:
    """pause / resume / cancel. The worker skips the rows of a paused or cancelled campaign
    (delivery/ledger.py's claim query), so this takes effect at its next claim."""
    campaign = get(session, campaign_id)
    rules.check_allowed(action, campaign.id, campaign.status)
    campaign.status = _NEXT_STATUS[action]
    return campaign


def counts(session: Session, campaign_id: int) -> dict[str, dict[str, int]]:
    """{purpose: {state: rows}} of the campaign's ledger rows."""
    rows = session.execute(
        select(Delivery.purpose, Delivery.state, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.purpose, Delivery.state)
    )
    result: dict[str, dict[str, int]] = {}
    for purpose, state, count in rows:
        result.setdefault(purpose, {})[state] = int(count)
    return result


def refresh_done(session: Session, campaign: Campaign) -> None:
    """A sending campaign whose mailing has nothing left to send is done."""
    if campaign.status != "sending":
        return
    left = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.campaign_id == campaign.id,
            Delivery.purpose == campaign.purpose,
            Delivery.state.in_(ACTIVE_STATES),
        )
    )
    if not left:
        campaign.status = "done"
