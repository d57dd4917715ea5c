"""The loop closes (issues #4 and #5): a report is acknowledged on the one delivery path, the
acknowledgement's bounce comes back through intake and suppresses the address, and a
parliament's answer to a mailing becomes an action report tied to the campaign.

Real intake (SMTP endpoint, parsing, rules), real databases, the Maildir outbox as transport.
"""

from __future__ import annotations

import mailbox
import smtplib
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import select

from mailflow.delivery import deliver_due, make_transport
from mailflow.service import App
from mailflow.settings import OutboundSettings, Settings
from mailflow.store.messages import Arrival
from mailflow.store.models import ActionReport, Campaign, Delivery, Message, Suppression
from tests.support import migrated_app, running, send, settings_for

REPORTER = "amina.relative@example.org"
BOUNCES = "bounces.ipu.example"

REPORT = f"""\
From: Amina <{REPORTER}>
To: report@localhost
Subject: My husband, a member of parliament, was arrested
Message-ID: <report-loop-1@example.org>
Date: Mon, 02 Nov 2026 10:00:00 +0000
Content-Type: text/plain; charset=utf-8

Dear Committee, my husband, the Hon. Samuel Example, member of the National Assembly of
Kenya, was arrested last night by soldiers and is held incommunicado. We fear he will be
tortured. Please help.
""".replace("\n", "\r\n").encode()


def loop_settings(tmp_path: Path, db_url: str) -> Settings:
    base = settings_for(tmp_path, db_url, recipients=("report@localhost",))
    outbound = OutboundSettings(from_address="hrp@ipu.example", bounce_domain=BOUNCES)
    return replace(base, outbound=outbound)


def take(app: App, raw: bytes) -> Message:
    stored = app.intake.receive(raw, Arrival(channel="smtp"))
    outcome = app.intake.process(stored.message_pk)
    assert outcome.status == "processed", outcome.error
    with app.sessions() as session:
        message = session.get_one(Message, stored.message_pk)
        session.expunge(message)
        return message


def outbox(app: App) -> list[bytes]:
    box = mailbox.Maildir(app.settings.outbox_dir, create=False)
    return [box.get_bytes(key) for key in box.iterkeys()]


def campaign_mail(
    app: App, to: str, message_id: str, verp: str, unsubscribe_token: str | None = None
) -> int:
    """A campaign with one delivery already sent to `to`; returns the campaign's id."""
    with app.sessions.begin() as session:
        campaign = Campaign(name="Decisions 217", purpose="decision", created_by="test")
        session.add(campaign)
        session.flush()
        session.add(
            Delivery(
                campaign_id=campaign.id,
                purpose="decision",
                to_address=to,
                language="en",
                message_id=message_id,
                verp_token=verp,
                unsubscribe_token=unsubscribe_token,
            )
        )
        return campaign.id


def test_a_report_is_acknowledged_once_in_the_reporters_language(
    tmp_path: Path, db_url: str
) -> None:
    settings = loop_settings(tmp_path, db_url)
    with migrated_app(settings) as app:
        report = take(app, REPORT)
        assert report.kind == "report"
        again = REPORT.replace(b"report-loop-1@", b"report-loop-2@").replace(b"arrested", b"seized")
        take(app, again)  # a second report within the window: no second acknowledgement
        now = datetime.now(UTC)
        assert deliver_due(app.sessions, settings, make_transport(settings), now).sent == 1
        [raw] = outbox(app)
    ack = message_from_bytes(raw, policy=policy.default)
    assert ack["To"] == REPORTER
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<report-loop-1@example.org>"
    assert "<report-loop-1@example.org>" in ack["References"]
    with migrated_app(settings) as app, app.sessions() as session:
        reference = session.get_one(Message, report.id).report
        assert reference is not None
        assert reference.reference in ack["Subject"]
    body = ack.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert reference.reference in text
    for sensitive in ("Samuel", "Example", "arrest", "Kenya", "husband"):
        assert sensitive not in text and sensitive not in ack["Subject"]


def test_no_acknowledgement_for_an_auto_reply_a_list_or_noreply(
    tmp_path: Path, db_url: str
) -> None:
    settings = loop_settings(tmp_path, db_url)
    variants = [
        REPORT.replace(b"Date:", b"Auto-Submitted: auto-replied\r\nDate:"),
        REPORT.replace(b"Date:", b"List-Id: <news.lists.example.org>\r\nDate:"),
        REPORT.replace(REPORTER.encode(), b"noreply@example.org"),
    ]
    with migrated_app(settings) as app:
        for number, raw in enumerate(variants):
            take(app, raw.replace(b"report-loop-1@", f"variant-{number}@".encode()))
        with app.sessions() as session:
            assert session.scalars(select(Delivery)).all() == []


def test_a_hard_bounce_of_our_mail_comes_back_and_suppresses_the_address(
    tmp_path: Path, db_url: str
) -> None:
    settings = loop_settings(tmp_path, db_url)
    with migrated_app(settings) as app:
        take(app, REPORT)
        # The acknowledgement goes out first (a bounce cannot overtake its message).
        assert deliver_due(app.sessions, settings, make_transport(settings), datetime.now(UTC)).sent
        with app.sessions() as session:
            delivery = session.scalars(select(Delivery)).one()
            token, message_id = delivery.verp_token, delivery.message_id
        dsn = f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: bounces+{token}@{BOUNCES}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-loop-1@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Your message could not be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {REPORTER}
Action: failed
Status: 5.1.1

--b
Content-Type: text/rfc822-headers

Message-ID: {message_id}
To: {REPORTER}

--b--
""".replace("\n", "\r\n").encode()
        with running(app):
            # The VERP address is accepted beside the report addresses; others still get 550.
            assert send(settings, dsn, to=f"bounces+{token}@{BOUNCES}") == {}
        app.intake.process_pending()
        with app.sessions() as session:
            bounce = session.scalars(select(Message).where(Message.kind == "bounce")).one()
            delivery = session.get_one(Delivery, bounce.delivery_id)
            assert delivery.state == "bounced"
            suppression = session.get_one(Suppression, REPORTER)
            assert suppression.reason == "hard_bounce"


def test_a_parliaments_answer_to_a_mailing_becomes_an_action_report_of_the_campaign(
    tmp_path: Path, db_url: str
) -> None:
    settings = loop_settings(tmp_path, db_url)
    with migrated_app(settings) as app:
        campaign_id = campaign_mail(
            app, "ipu.group@parliament.example", "<mf.reply123@ipu.example>", "verp123456"
        )
        answer = b"""\
From: IPU Group <ipu.group@parliament.example>
To: hrp@ipu.example
Subject: RE: Decisions of the Committee on the Human Rights of Parliamentarians
In-Reply-To: <mf.reply123@ipu.example>
Message-ID: <answer-1@parliament.example>
Content-Type: text/plain; charset=utf-8

Dear Secretary General,

On behalf of the IPU group of the Parliament of Norway, I can inform you that the
decisions on the case TUR-69 were circulated to all members of parliament, and that
the group wrote to the Minister of Foreign Affairs asking her to raise the case with
the Turkish authorities.

Yours sincerely,
The Secretary of the Norwegian IPU group
""".replace(b"\n", b"\r\n")
        message = take(app, answer)
        assert message.kind == "action_report"
        with app.sessions() as session:
            record = session.get_one(ActionReport, message.action_report_id)
            assert record.campaign_id == campaign_id
            assert record.country == "NOR"
            assert {a.action_type for a in record.actions} >= {"request_mfa_intervention"}
            assert [case.code for case in record.cases] == ["TUR-69"]


def test_mail_to_a_list_unsubscribe_address_opts_its_recipient_out(
    tmp_path: Path, db_url: str
) -> None:
    settings = loop_settings(tmp_path, db_url)
    with migrated_app(settings) as app:
        campaign_mail(
            app,
            "desk@media.example",
            "<mf.reply456@ipu.example>",
            "verp456789",
            unsubscribe_token="unsub456789",
        )
        request = (
            b"From: someone@elsewhere.example\r\nTo: unsubscribe+unsub456789@"
            + BOUNCES.encode()
            + b"\r\nSubject: unsubscribe\r\nMessage-ID: <unsub-1@media.example>\r\n\r\n\r\n"
        )
        with running(app):
            assert send(settings, request, to=f"unsubscribe+unsub456789@{BOUNCES}") == {}
            # An address at the bounce domain that is neither is still refused.
            try:
                send(settings, request, to=f"someone@{BOUNCES}")
                refused = False
            except smtplib.SMTPRecipientsRefused:
                refused = True
            assert refused
        app.intake.process_pending()
        with app.sessions() as session:
            # The token's recipient is opted out, not the request's sender.
            assert session.get_one(Suppression, "desk@media.example").reason == "opt_out"
            assert session.get(Suppression, "someone@elsewhere.example") is None
