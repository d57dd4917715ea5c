"""Campaigns: rendering per language, the approval gate, preview = what is sent, test copies,
no reporter data anywhere, no header injection, pause/resume, reminders.

Every test runs on SQLite and PostgreSQL, and mail goes through a real SMTP sink.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import SmtpTransport, deliver_due
from mailflow.outreach import campaigns as rules
from mailflow.outreach.audience import parse_audience
from mailflow.outreach.campaigns import CampaignContext, CampaignError
from mailflow.settings import Settings
from mailflow.store import campaign_mail as mail
from mailflow.store import campaigns as store
from mailflow.store import make_engine, session_factory, upgrade
from mailflow.store.campaigns import Workspace
from mailflow.store.models import Campaign, Case, Contact, Delivery
from tests.campaign_support import (
    AUDIENCE,
    CANARY,
    PDF_EN,
    PDF_FR,
    T0,
    World,
    action_report,
    campaign_settings,
    parsed,
    seed,
    text_of,
)
from tests.servers.smtp_sink import ReceivedMessage, SMTPSink

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, smtp_sink: SMTPSink) -> Settings:
    return campaign_settings(tmp_path, db_url, smtp_sink)


@pytest.fixture
def ws(settings: Settings) -> Workspace:
    return Workspace.from_settings(settings)


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    with sessions.begin() as session:
        return seed(session)


def create(
    sessions: sessionmaker[Session], ws: Workspace, world: World, audience: object = AUDIENCE
) -> int:
    with sessions.begin() as session:
        campaign = store.create(
            session,
            ws,
            name="213th session: decisions",
            purpose="decision",
            decision_id=world.decision_id,
            audience=parse_audience(audience, ws.geography),
            subjects={"en": "Decisions of the 213th session", "fr": "Décisions de la 213e session"},
            by="Rogier",
            now=T0,
        )
        return campaign.id


def approve(sessions: sessionmaker[Session], ws: Workspace, campaign_id: int) -> None:
    with sessions.begin() as session:
        mail.approve(session, ws, campaign_id, "Rogier Huizenga", T0)


def send(sessions: sessionmaker[Session], ws: Workspace, campaign_id: int) -> int:
    plan = mail.plan_send(sessions, ws, campaign_id, T0)
    return mail.send(sessions, ws, campaign_id, plan=plan, now=T0)


def deliver(sessions: sessionmaker[Session], settings: Settings, at: datetime = T0) -> None:
    """Run the worker until nothing more is due at `at`."""
    transport = SmtpTransport(settings.outbound)
    try:
        while deliver_due(sessions, settings, transport, at, 50).claimed:
            pass
    finally:
        transport.close()


def by_recipient(sink: SMTPSink) -> dict[str, ReceivedMessage]:
    return {m.rcpt_tos[0]: m for m in sink.messages}


def sent_campaign(
    sessions: sessionmaker[Session], ws: Workspace, world: World, settings: Settings
) -> int:
    campaign_id = create(sessions, ws, world)
    approve(sessions, ws, campaign_id)
    send(sessions, ws, campaign_id)
    deliver(sessions, settings)
    return campaign_id


# -- rendering ---------------------------------------------------------------------------------


def test_each_recipient_gets_its_language_with_fallback_and_documents_attached(
    sessions: sessionmaker[Session],
    ws: Workspace,
    world: World,
    settings: Settings,
    smtp_sink: SMTPSink,
) -> None:
    sent_campaign(sessions, ws, world, settings)
    received = by_recipient(smtp_sink)
    assert set(received) == {
        "speaker@assemblee.fr",
        "ipu@bundestag.de",
        "ipu@parliament.ke",
        "embassy@tur.example",
        "desk@news.gr",
        "desk@nation.ke",
    }  # GBR excluded, the suppressed speaker left out, the NGO not selected
    french = parsed(received["speaker@assemblee.fr"].data)
    assert french["Content-Language"] == "fr"
    assert french["Subject"] == "Décisions de la 213e session"
    assert "Madame, Monsieur" in text_of(french)
    assert "23 octobre 2026" in text_of(french)
    assert "TUR-69 (Turquie)" in text_of(french)
    # "es,fr": no Spanish template, so French, and the French document.
    kenya = parsed(received["ipu@parliament.ke"].data)
    assert kenya["Content-Language"] == "fr"
    [attachment] = list(kenya.iter_attachments())
    assert attachment.get_filename() == "decision-fr.pdf"
    assert attachment.get_content() == PDF_FR
    # "de": neither a template nor a document in German: English.
    german = parsed(received["ipu@bundestag.de"].data)
    assert german["Content-Language"] == "en"
    assert german["Subject"] == "Decisions of the 213th session"
    assert "23 October 2026" in text_of(german)
    [attachment] = list(german.iter_attachments())
    assert attachment.get_content() == PDF_EN
    assert german.get_body(("html",)) is not None
    with sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.purpose == "decision")).all()
        assert {r.state for r in rows} == {"sent"} and len(rows) == 6


def test_documents_are_linked_when_not_attached(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], world: World
) -> None:
    settings = campaign_settings(
        tmp_path, db_url, attach_documents=False, document_url_base="https://ipu.example/docs/"
    )
    ws = Workspace.from_settings(settings)
    campaign_id = create(sessions, ws, world)
    with sessions() as session:
        target = mail.find_recipient(session, "speaker@assemblee.fr")
        message = parsed(mail.preview(session, ws, campaign_id, target, T0))
    assert list(message.iter_attachments()) == []
    assert "https://ipu.example/docs/" in text_of(message)
    assert "/decision-fr.pdf" in text_of(message)


# -- the approval gate ---------------------------------------------------------------------------


def test_nothing_is_sent_before_approval_and_an_edit_withdraws_it(
    sessions: sessionmaker[Session], ws: Workspace, world: World
) -> None:
    campaign_id = create(sessions, ws, world)
    with pytest.raises(CampaignError, match="not approved"):
        mail.plan_send(sessions, ws, campaign_id, T0)
    approve(sessions, ws, campaign_id)
    with sessions() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert (campaign.status, campaign.approved_by) == ("approved", "Rogier Huizenga")
        assert campaign.approved_at == T0 and campaign.approved_digest is not None
    with sessions.begin() as session:
        store.edit(session, campaign_id, subjects={"en": "Another subject"})
    with sessions() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert (campaign.status, campaign.approved_by, campaign.approved_digest) == (
            "draft",
            None,
            None,
        )
    with pytest.raises(CampaignError, match="not approved"):
        mail.plan_send(sessions, ws, campaign_id, T0)
    with sessions() as session:
        assert session.scalars(select(Delivery)).all() == []


def test_a_template_changed_after_approval_stops_the_sending(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], world: World
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    settings = campaign_settings(tmp_path, db_url)
    settings = dataclasses.replace(
        settings, outbound=dataclasses.replace(settings.outbound, templates_dir=templates)
    )
    ws = Workspace.from_settings(settings)
    campaign_id = create(sessions, ws, world)
    approve(sessions, ws, campaign_id)
    (templates / "decision" / "fr.txt").write_text("Bonjour {{ reference }}\n", encoding="utf-8")
    with pytest.raises(CampaignError, match="changed since Rogier Huizenga approved"):
        mail.plan_send(sessions, ws, campaign_id, T0)
    with sessions.begin() as session:
        assert store.withdraw_stale_approval(session, ws, campaign_id)
    approve(sessions, ws, campaign_id)  # someone looks again and approves the new wording
    assert mail.plan_send(sessions, ws, campaign_id, T0).to_queue


def test_a_confidential_decision_goes_to_official_correspondents_only(
    sessions: sessionmaker[Session], ws: Workspace
) -> None:
    with sessions.begin() as session:
        world = seed(session, visibility="confidential")
    campaign_id = create(sessions, ws, world)
    with pytest.raises(CampaignError, match=r"confidential.*media"):
        approve(sessions, ws, campaign_id)
    official = {"include": [{"roles": ["speaker", "ipu_group"], "countries": "concerned"}]}
    campaign_id = create(sessions, ws, world, official)
    approve(sessions, ws, campaign_id)


def test_send_is_idempotent(
    sessions: sessionmaker[Session], ws: Workspace, world: World, settings: Settings
) -> None:
    campaign_id = create(sessions, ws, world)
    approve(sessions, ws, campaign_id)
    assert send(sessions, ws, campaign_id) == 6
    plan = mail.plan_send(sessions, ws, campaign_id, T0)
    assert (plan.to_queue, plan.already, plan.suppressed) == ((), 6, 1)
    with sessions() as session:
        assert len(session.scalars(select(Delivery)).all()) == 6


# -- preview and test copies ---------------------------------------------------------------------


def test_preview_is_the_message_the_recipient_gets(
    sessions: sessionmaker[Session],
    ws: Workspace,
    world: World,
    settings: Settings,
    smtp_sink: SMTPSink,
) -> None:
    campaign_id = create(sessions, ws, world)
    contact = str(world.contacts["media_grc"])
    with sessions() as session:
        before = parsed(
            mail.preview(session, ws, campaign_id, mail.find_recipient(session, contact), T0)
        )
    approve(sessions, ws, campaign_id)
    send(sessions, ws, campaign_id)
    with sessions() as session:
        queued = mail.preview(session, ws, campaign_id, mail.find_recipient(session, contact), T0)
    deliver(sessions, settings)
    received = by_recipient(smtp_sink)["desk@news.gr"]
    assert received.data == queued  # byte for byte, once queued
    # Before sending: the same message but for what is fresh per message.
    after = parsed(received.data)
    fresh = {"Message-ID", "Date", "List-Unsubscribe", "Content-Type"}
    assert [(k, v) for k, v in before.items() if k not in fresh] == [
        (k, v) for k, v in after.items() if k not in fresh
    ]
    token = after["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]  # fresh per message
    old = before["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
    assert text_of(before).replace(old, token) == text_of(after)


def test_test_copies_go_before_approval_marked_and_only_to_the_given_addresses(
    sessions: sessionmaker[Session],
    ws: Workspace,
    world: World,
    settings: Settings,
    smtp_sink: SMTPSink,
) -> None:
    campaign_id = create(sessions, ws, world)
    with sessions.begin() as session:
        targets = [
            mail.find_recipient(session, "me@secretariat.example", language="fr"),
            mail.find_recipient(session, str(world.contacts["group_deu"])),
        ]
        mail.queue_tests(session, ws, campaign_id, targets, T0)
    deliver(sessions, settings)
    received = by_recipient(smtp_sink)
    assert set(received) == {"me@secretariat.example", "ipu@bundestag.de"}
    mine = parsed(received["me@secretariat.example"].data)
    assert mine["Subject"] == "[TEST] Décisions de la 213e session"
    assert mine["List-Id"] is not None
    with sessions() as session:
        rows = session.scalars(select(Delivery)).all()
        assert {(r.purpose, r.contact_id) for r in rows} == {("campaign_test", None)}
        assert session.get_one(Campaign, campaign_id).status == "draft"


# -- what never appears -------------------------------------------------------------------------


def test_no_reporter_data_in_any_message_and_no_reporter_field_in_the_context(
    sessions: sessionmaker[Session],
    ws: Workspace,
    world: World,
    settings: Settings,
    smtp_sink: SMTPSink,
) -> None:
    campaign_id = create(sessions, ws, world)
    with sessions.begin() as session:
        target = mail.find_recipient(session, "tester@secretariat.example")
        mail.queue_tests(session, ws, campaign_id, [target], T0)
        previews = [
            mail.preview(session, ws, campaign_id, mail.find_recipient(session, str(cid)), T0)
            for cid in world.contacts.values()
        ]
    approve(sessions, ws, campaign_id)
    send(sessions, ws, campaign_id)
    deliver(sessions, settings)
    outputs = [*previews, *(m.data for m in smtp_sink.messages)]
    assert len(smtp_sink.messages) == 7
    for raw in outputs:
        decoded = text_of(parsed(raw)) + raw.decode("ascii", "replace")
        assert CANARY.lower() not in decoded.lower()
    # The context cannot carry reporter data: no such field, at any depth.
    names = _field_names(CampaignContext)
    assert not {n for n in names if "report" in n or "phone" in n or "email" in n}


def _field_names(cls: type) -> set[str]:
    names = set()
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        names.add(spec.name)
        for arg in typing.get_args(hints[spec.name]):
            if dataclasses.is_dataclass(arg):
                names |= _field_names(arg)  # type: ignore[arg-type]
    return names


def test_values_with_line_breaks_never_make_headers(
    sessions: sessionmaker[Session],
    ws: Workspace,
    world: World,
    settings: Settings,
    smtp_sink: SMTPSink,
) -> None:
    evil = "Evil\r\nBcc: spy@evil.example\r\nX-Injected: yes"
    with sessions.begin() as session:
        contact = session.get_one(Contact, world.contacts["media_grc"])
        contact.person_name = evil
        contact.organisation = evil
    campaign_id = create(sessions, ws, world)
    with sessions.begin() as session:
        store.edit(session, campaign_id, name=evil, subjects={"en": f"Decisions {evil}"})
    approve(sessions, ws, campaign_id)
    send(sessions, ws, campaign_id)
    deliver(sessions, settings)
    assert len(smtp_sink.messages) == 6  # nobody added by a Bcc
    for received in smtp_sink.messages:
        message = parsed(received.data)
        names = {name.lower() for name in message}
        assert not names & {"bcc", "x-injected"}, names
        assert all("\n" not in value and "\r" not in value for value in message.values())
        assert received.rcpt_tos != ["spy@evil.example"]
    greek = parsed(by_recipient(smtp_sink)["desk@news.gr"].data)
    assert greek["Subject"] == "Decisions Evil Bcc: spy@evil.example X-Injected: yes"


def test_list_headers_and_one_click_unsubscribe_for_bulk_audiences_only(
    sessions: sessionmaker[Session],
    ws: Workspace,
    world: World,
    settings: Settings,
    smtp_sink: SMTPSink,
) -> None:
    campaign_id = sent_campaign(sessions, ws, world, settings)
    received = by_recipient(smtp_sink)
    media = parsed(received["desk@news.gr"].data)
    speaker = parsed(received["speaker@assemblee.fr"].data)
    list_id = f"<c{campaign_id}-213th-session-decisions.lists.bounces.ipu.example>"
    assert media["List-Id"] == speaker["List-Id"] == list_id
    assert speaker["List-Unsubscribe"] is None and speaker["List-Unsubscribe-Post"] is None
    # Long: folded after the colon (valid RFC 5322), which the parser keeps as a leading space.
    https, mailto = media["List-Unsubscribe"].strip().split(", ")
    assert https.startswith("<https://ipu.example/unsubscribe/")
    assert mailto.startswith("<mailto:unsubscribe+") and mailto.endswith("@bounces.ipu.example>")
    assert media["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = https[len("<https://ipu.example/unsubscribe/") : -1]
    with sessions() as session:
        row = session.scalar(select(Delivery).where(Delivery.unsubscribe_token == token))
        assert row is not None and row.to_address == "desk@news.gr"
    assert f"https://ipu.example/unsubscribe/{token}" in text_of(media)


# -- pause, resume, status -----------------------------------------------------------------------


def test_pause_holds_the_rows_and_resume_releases_them(
    sessions: sessionmaker[Session],
    ws: Workspace,
    world: World,
    settings: Settings,
    smtp_sink: SMTPSink,
) -> None:
    campaign_id = create(sessions, ws, world)
    approve(sessions, ws, campaign_id)
    send(sessions, ws, campaign_id)
    with sessions.begin() as session:
        store.change_status(session, campaign_id, "pause")
    transport = SmtpTransport(settings.outbound)
    assert deliver_due(sessions, settings, transport, T0, 50).claimed == 0
    assert smtp_sink.messages == []
    with sessions.begin() as session:
        store.change_status(session, campaign_id, "resume")
    assert deliver_due(sessions, settings, transport, T0, 50).sent == 6
    transport.close()
    with sessions.begin() as session:
        campaign = session.get_one(Campaign, campaign_id)
        store.refresh_done(session, campaign)
        assert campaign.status == "done"
        assert store.counts(session, campaign_id) == {"decision": {"sent": 6}}


def test_cancel_keeps_the_rest_from_being_sent(
    sessions: sessionmaker[Session], ws: Workspace, world: World, settings: Settings
) -> None:
    campaign_id = create(sessions, ws, world)
    approve(sessions, ws, campaign_id)
    send(sessions, ws, campaign_id)
    with sessions.begin() as session:
        store.change_status(session, campaign_id, "cancel")
    transport = SmtpTransport(settings.outbound)
    assert deliver_due(sessions, settings, transport, T0, 50).claimed == 0
    transport.close()
    with sessions.begin() as session, pytest.raises(CampaignError, match="cancelled"):
        store.change_status(session, campaign_id, "resume")


# -- reminders -----------------------------------------------------------------------------------


def _remind(
    sessions: sessionmaker[Session], ws: Workspace, campaign_id: int, at: datetime
) -> mail.ReminderPlan:
    with sessions.begin() as session:
        campaign = session.get_one(Campaign, campaign_id)
        plan = mail.plan_reminders(session, ws, campaign, at)
        mail.queue_reminders(session, ws, campaign, plan, at)
        return plan


def test_reminders_once_per_period_and_never_to_a_parliament_that_reported(
    sessions: sessionmaker[Session],
    ws: Workspace,
    world: World,
    settings: Settings,
    smtp_sink: SMTPSink,
) -> None:
    campaign_id = sent_campaign(sessions, ws, world, settings)
    parliaments = {world.contacts[k] for k in ("speaker_fra", "group_deu", "group_ken")}
    with sessions.begin() as session:
        # Kenya answered about one of the cases; France's report predates the campaign.
        ken_case = session.scalar(select(Case).where(Case.code == "KEN-12"))
        action_report(session, "KEN", T0 + timedelta(days=3), cases=[ken_case])
        action_report(session, "FRA", T0 - timedelta(days=3), campaign_id=campaign_id)
    after = settings.campaigns.reminder_after_days
    assert _remind(sessions, ws, campaign_id, T0 + timedelta(days=after - 1)).due == ()
    first = _remind(sessions, ws, campaign_id, T0 + timedelta(days=after))
    assert {contact for contact, _ in first.due} == parliaments - {world.contacts["group_ken"]}
    assert {round_ for _, round_ in first.due} == {1}
    assert first.reported == ("KEN",)
    smtp_sink.reset()
    deliver(sessions, settings, T0 + timedelta(days=after))
    received = by_recipient(smtp_sink)
    assert set(received) == {"speaker@assemblee.fr", "ipu@bundestag.de"}
    french = parsed(received["speaker@assemblee.fr"].data)
    assert french["Subject"] == "Rappel : Décisions de la 213e session"
    assert "2 novembre 2026" in text_of(french)
    # Again the next day: within reminder_every_days, nothing.
    assert _remind(sessions, ws, campaign_id, T0 + timedelta(days=after + 1)).due == ()
    later = T0 + timedelta(days=after + settings.campaigns.reminder_every_days)
    second = _remind(sessions, ws, campaign_id, later)
    assert {round_ for _, round_ in second.due} == {2}
    # France reports now: no third round for it (and reminder_max = 2 stops the rest anyway).
    with sessions.begin() as session:
        action_report(session, "FRA", later, campaign_id=campaign_id)
    last = later + timedelta(days=365)
    plan = _remind(sessions, ws, campaign_id, last)
    assert plan.due == () and "FRA" in plan.reported


def test_reminder_round_rules() -> None:
    policy = rules.ReminderPolicy(after_days=10, every_days=5, max_rounds=2)
    due = rules.reminder_round
    sent = T0
    common: dict[str, object] = {"reported": False, "rounds_sent": 0, "last_reminded_at": None}
    assert due(policy, None, T0, **common) is None  # type: ignore[arg-type]
    assert due(policy, sent, T0 + timedelta(days=9), **common) is None  # type: ignore[arg-type]
    assert due(policy, sent, T0 + timedelta(days=10), **common) == 1  # type: ignore[arg-type]
    later = T0 + timedelta(days=12)
    assert due(policy, sent, later, reported=False, rounds_sent=1, last_reminded_at=T0) == 2
    assert due(policy, sent, later, reported=False, rounds_sent=1, last_reminded_at=later) is None
    assert due(policy, sent, later, reported=False, rounds_sent=2, last_reminded_at=T0) is None
    assert due(policy, sent, later, reported=True, rounds_sent=0, last_reminded_at=None) is None


def test_digest_covers_every_input() -> None:
    base = rules.DigestInputs(
        name="n",
        purpose="decision",
        decision_id=1,
        case_codes=("TUR-69",),
        documents=(("en", "a" * 64),),
        audience_json=json.dumps({"include": [{"roles": ["speaker"]}]}),
        subjects={"en": "s"},
        templates=(("decision/en.txt", "b" * 64),),
    )
    digest = rules.approval_digest(base)
    assert rules.approval_digest(dataclasses.replace(base)) == digest
    changes: list[dict[str, object]] = [
        {"name": "m"},
        {"purpose": "other"},
        {"decision_id": 2},
        {"case_codes": ("KEN-12",)},
        {"documents": (("en", "c" * 64),)},
        {"audience_json": json.dumps({"include": [{"roles": ["media"]}]})},
        {"subjects": {"en": "t"}},
        {"templates": (("decision/en.txt", "d" * 64),)},
    ]
    for change in changes:
        assert rules.approval_digest(dataclasses.replace(base, **change)) != digest  # type: ignore[arg-type]
