"""Acknowledgements: when (never to robots, lists, bounces or ourselves; once per window),
what they say (receipt and reference only, in the sender's language) and how they go out
(the one delivery path, threaded under the report)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailflow import vocabulary
from mailflow.ack import (
    AckDecision,
    AckPolicy,
    AckRequest,
    Incoming,
    ack_subject,
    acknowledge,
    last_acknowledged_at,
    should_acknowledge,
)
from mailflow.delivery import deliver_due, make_transport
from mailflow.settings import (
    AcknowledgementSettings,
    DatabaseSettings,
    ImapAccountSettings,
    OutboundSettings,
    ServiceSettings,
    Settings,
    SmtpIntakeSettings,
)
from mailflow.store import make_engine, session_factory, upgrade
from mailflow.store.messages import Arrival, store_raw
from mailflow.store.models import Delivery
from mailflow.templates import TemplateError, Templates
from tests.servers.smtp_sink import SMTPSink

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REPORTER = "amina@mail.example"
TEMPLATES = Templates(Path(__file__).resolve().parent.parent / "templates")


def make_settings(tmp_path: Path, db_url: str = "", sink: SMTPSink | None = None) -> Settings:
    relay = (
        OutboundSettings(
            from_address="committee@ipu.example",
            bounce_domain="bounces.ipu.example",
            relay_host=sink.host,
            relay_port=sink.port,
            relay_security="none",
        )
        if sink is not None
        else OutboundSettings(
            from_address="committee@ipu.example", bounce_domain="bounces.ipu.example"
        )
    )
    return Settings(
        service=ServiceSettings(data_dir=tmp_path / "data"),
        database=DatabaseSettings(url=db_url),
        smtp_intake=SmtpIntakeSettings(recipients=("report@ipu.example",)),
        outbound=relay,
        acknowledgement=AcknowledgementSettings(
            enabled=True, from_address="acknowledgements@ipu.example"
        ),
        imap_accounts=(ImapAccountSettings(name="reports", username="reports@ipu.example"),),
    )


@pytest.fixture
def ack_policy(tmp_path: Path) -> AckPolicy:
    return AckPolicy.from_settings(make_settings(tmp_path))


def report(**changes: object) -> Incoming:
    incoming = Incoming(kind="report", from_address=REPORTER, headers=(("subject", "x"),))
    return replace(incoming, **changes)  # type: ignore[arg-type]


# -- the decision -----------------------------------------------------------------------------


def test_a_report_from_a_person_is_acknowledged_at_its_from_address(ack_policy: AckPolicy) -> None:
    decision = should_acknowledge(report(from_address="Amina@Mail.Example"), ack_policy, None, NOW)
    assert decision == AckDecision(True, "ok", "acknowledge the report", REPORTER)
    action = should_acknowledge(report(kind="action_report"), ack_policy, None, NOW)
    assert action.acknowledge


def header(name: str, value: str) -> Incoming:
    return report(headers=((name, value),))


NEVER = {
    "follow-up": (report(kind="followup"), "kind"),
    "auto-reply kind": (report(kind="auto_reply"), "kind"),
    "bounce kind": (report(kind="bounce"), "kind"),
    "spam": (report(kind="spam"), "kind"),
    "other": (report(kind="other"), "kind"),
    "auto-replied": (header("auto-submitted", "auto-replied"), "auto_submitted"),
    "auto-generated": (header("auto-submitted", "auto-generated"), "auto_submitted"),
    "outlook suppress": (header("x-auto-response-suppress", "OOF, AutoReply"), "auto_submitted"),
    "x-autoreply": (header("x-autoreply", "yes"), "auto_submitted"),
    "precedence bulk": (header("precedence", "bulk"), "bulk"),
    "precedence list": (header("precedence", "List"), "bulk"),
    "precedence junk": (header("precedence", "junk"), "bulk"),
    "list-id": (header("list-id", "<news.parliament.example>"), "mailing_list"),
    "list-unsubscribe": (header("list-unsubscribe", "<mailto:u@x.example>"), "mailing_list"),
    "null envelope sender": (report(envelope_from=""), "bounce"),
    "null return-path": (header("return-path", "<>"), "bounce"),
    "noreply": (report(from_address="noreply@parliament.example"), "robot_sender"),
    "no-reply": (report(from_address="no-reply@parliament.example"), "robot_sender"),
    "do-not-reply": (report(from_address="do-not-reply@parliament.example"), "robot_sender"),
    "mailer-daemon": (report(from_address="MAILER-DAEMON@mx.example"), "robot_sender"),
    "postmaster": (report(from_address="postmaster@parliament.example"), "robot_sender"),
    "report address": (report(from_address="report@ipu.example"), "own_address"),
    "outbound from": (report(from_address="committee@ipu.example"), "own_address"),
    "ack from": (report(from_address="acknowledgements@ipu.example"), "own_address"),
    "imap account": (report(from_address="reports@ipu.example"), "own_address"),
    "bounce domain": (report(from_address="bounces+abc@bounces.ipu.example"), "own_address"),
    "no sender": (report(from_address=None), "no_address"),
    "unusable sender": (
        report(from_address="amina@mail.example\r\nBcc: x@y.example"),
        "invalid_address",
    ),
}


@pytest.mark.parametrize(("incoming", "reason"), NEVER.values(), ids=NEVER.keys())
def test_never_acknowledged(incoming: Incoming, reason: str, ack_policy: AckPolicy) -> None:
    decision = should_acknowledge(incoming, ack_policy, None, NOW)
    assert (decision.acknowledge, decision.reason, decision.to_address) == (False, reason, None)
    assert REPORTER not in decision.detail  # the explanation can be logged


def test_nothing_is_acknowledged_when_disabled(ack_policy: AckPolicy) -> None:
    decision = should_acknowledge(report(), replace(ack_policy, enabled=False), None, NOW)
    assert (decision.acknowledge, decision.reason) == (False, "disabled")


def test_at_most_one_per_sender_per_window(ack_policy: AckPolicy) -> None:
    assert ack_policy.window == timedelta(hours=24)
    recent = should_acknowledge(report(), ack_policy, NOW - timedelta(hours=23), NOW)
    assert (recent.acknowledge, recent.reason) == (False, "recent")
    later = should_acknowledge(report(), ack_policy, NOW - timedelta(hours=24), NOW)
    assert later.acknowledge


def test_a_form_submission_is_acknowledged_at_its_reply_to(ack_policy: AckPolicy) -> None:
    form = report(
        from_address="no-reply@forms.ipu.example",
        reply_to="Amina@mail.example",
        form_submission=True,
        headers=(("auto-submitted", "auto-generated"),),  # a form handler is a program
    )
    decision = should_acknowledge(form, ack_policy, None, NOW)
    assert (decision.acknowledge, decision.to_address) == (True, REPORTER)
    no_reply_to = should_acknowledge(replace(form, reply_to=None), ack_policy, None, NOW)
    assert (no_reply_to.acknowledge, no_reply_to.reason) == (False, "no_address")
    auto_reply = replace(form, headers=(("auto-submitted", "auto-replied"),))
    assert not should_acknowledge(auto_reply, ack_policy, None, NOW).acknowledge


# -- what it says -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    reference: str


def test_the_four_languages_render_with_the_reference_and_unknown_falls_back_to_english() -> None:
    texts = {}
    for language in ("en", "fr", "es", "ar"):
        rendered = TEMPLATES.render("acknowledgement", language, Context("R-2026-000123"))
        assert rendered.language == language
        assert "R-2026-000123" in rendered.text
        texts[language] = rendered.text
    assert len(set(texts.values())) == 4
    assert "référence" in texts["fr"] and "referencia" in texts["es"] and "المرجعي" in texts["ar"]
    for unknown in ("de", None, "", "../../etc/passwd"):
        rendered = TEMPLATES.render("acknowledgement", unknown, Context("R-1"))
        assert (rendered.language, rendered.text) == (
            "en",
            texts["en"].replace("R-2026-000123", "R-1"),
        )
    assert TEMPLATES.render("acknowledgement", "fr-CH", Context("R-1")).language == "fr"


def test_templates_refuse_undefined_values_and_escape_html(tmp_path: Path) -> None:
    (tmp_path / "notice").mkdir()
    (tmp_path / "notice" / "en.txt").write_text("{{ reference }} & {{ missing }}\n")
    (tmp_path / "notice" / "en.html").write_text("<p>{{ reference }}</p>\n")
    templates = Templates(tmp_path)
    with pytest.raises(TemplateError, match="missing"):
        templates.render("notice", "en", Context("<b>R-1</b>"))
    (tmp_path / "notice" / "en.txt").write_text("{{ reference }} & more\n")
    rendered = templates.render("notice", "en", Context("<b>R-1</b>"))
    assert rendered.html == "<p>&lt;b&gt;R-1&lt;/b&gt;</p>\n"
    assert rendered.text == "<b>R-1</b> & more\n"  # text/plain: nothing to escape
    with pytest.raises(TemplateError):
        templates.render("../notice", "en", Context("R-1"))
    with pytest.raises(TemplateError, match="no template"):
        Templates(tmp_path / "nowhere").render("notice", "en", Context("R-1"))


def test_subject_is_a_clean_single_reply_with_the_reference_tag() -> None:
    assert ack_subject("Urgent", "R-1", "Ref.") == "Re: Urgent [Ref. R-1]"
    assert ack_subject("RE: Re:AW: Urgent", "R-1", "Ref.") == "Re: Urgent [Ref. R-1]"
    assert ack_subject("Urgent\r\nBcc: x@evil.example", "R-1", "Ref.") == (
        "Re: Urgent Bcc: x@evil.example [Ref. R-1]"
    )
    assert ack_subject("Re: Urgent [Ref. R-1]", "R-1", "Ref.") == "Re: Urgent [Ref. R-1]"
    assert ack_subject("", "R-1", "Ref.") == "Re: [Ref. R-1]"
    assert ack_subject("Arrest of MP", "R-1", "Ref.", quote=False) == "Re: [Ref. R-1]"


# -- queued on the delivery path --------------------------------------------------------------


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


SENSITIVE_SUBJECT = "Arrest of MP Jane Doe"
SENSITIVE_BODY = "Jane Doe was arrested and tortured in the capital last night."


def incoming_report(session: Session) -> int:
    raw = (
        f"From: Amina <{REPORTER}>\r\nTo: report@ipu.example\r\nSubject: {SENSITIVE_SUBJECT}\r\n"
        f"Message-ID: <report-77@mail.example>\r\n\r\n{SENSITIVE_BODY}\r\n"
    ).encode()
    return store_raw(session, raw, Arrival(channel="smtp"), NOW).message_pk


def request(message_pk: int, language: str | None = "fr") -> AckRequest:
    return AckRequest(
        message_pk=message_pk,
        reference="R-2026-000077",
        language=language,
        subject=SENSITIVE_SUBJECT + "\r\nBcc: spy@evil.example",
        kind="report",
        message_id="report-77@mail.example",
        references=("<thread-root@mail.example>",),
    )


def test_acknowledgement_goes_out_threaded_and_says_nothing_sensitive(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = make_settings(tmp_path, db_url, smtp_sink)
    ack_policy = AckPolicy.from_settings(settings)
    with sessions.begin() as session:
        message_pk = incoming_report(session)
        decision = should_acknowledge(
            report(), ack_policy, last_acknowledged_at(session, REPORTER), NOW
        )
        delivery = acknowledge(
            session, request(message_pk), decision, settings, NOW, templates=TEMPLATES
        )
        assert delivery is not None
        assert (delivery.purpose, delivery.language, delivery.state) == (
            "acknowledgement",
            "fr",
            "pending",
        )
        assert delivery.in_reply_to_message_pk == message_pk

    assert deliver_due(sessions, settings, make_transport(settings), NOW, 10).sent == 1
    [received] = smtp_sink.messages
    assert received.rcpt_tos == [REPORTER]
    assert received.envelope_from.startswith("bounces+")
    assert received.envelope_from.endswith("@bounces.ipu.example")
    message = message_from_bytes(received.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == "<report-77@mail.example>"
    assert message["References"] == "<thread-root@mail.example> <report-77@mail.example>"
    # By default the subject is the reference alone: theirs may name the MP or the event.
    assert message["Subject"] == "Re: [Ref. R-2026-000077]"
    assert message["From"] == "acknowledgements@ipu.example"
    assert "bcc" not in {name.lower() for name in message}
    body = message.get_content()
    assert "R-2026-000077" in body and "Merci" in body
    forbidden = ["Jane", "Doe", "arrest", "tortur", "MP ", REPORTER, "Amina"]
    forbidden += [term.label_en.split()[0] for term in vocabulary.VIOLATIONS]
    forbidden += [term.label_fr.split()[0] for term in vocabulary.VIOLATIONS]
    for word in forbidden:
        assert word.lower() not in body.lower(), word


def test_window_is_enforced_against_the_ledger(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session]
) -> None:
    settings = make_settings(tmp_path, db_url)
    ack_policy = AckPolicy.from_settings(settings)
    queued = []
    for hours in (0, 1, 25):
        now = NOW + timedelta(hours=hours)
        with sessions.begin() as session:
            message_pk = incoming_report(session)
            last = last_acknowledged_at(session, REPORTER.upper())
            decision = should_acknowledge(report(), ack_policy, last, now)
            queued.append(
                acknowledge(session, request(message_pk), decision, settings, now) is not None
            )
    assert queued == [True, False, True]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2


def test_no_acknowledgement_is_queued_when_the_decision_is_no_or_templates_are_missing(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session]
) -> None:
    settings = make_settings(tmp_path, db_url)
    yes = AckDecision(True, "ok", "acknowledge the report", REPORTER)
    with sessions.begin() as session:
        message_pk = incoming_report(session)
        no = AckDecision(False, "kind", "kind 'spam' is never acknowledged")
        assert acknowledge(session, request(message_pk), no, settings, NOW) is None
        # A broken installation must not cost the report its recording: None, no row.
        nowhere = Templates(tmp_path / "no-templates")
        assert (
            acknowledge(session, request(message_pk), yes, settings, NOW, templates=nowhere) is None
        )
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        # The default template directory is the one shipped with mailflow.
        assert acknowledge(session, request(message_pk, "es"), yes, settings, NOW) is not None
