"""Linking and recording (issue #4 item 4) on SQLite and PostgreSQL.

Parsing and classification are replaced at the stage seam (mailflow's own `Stage` type) by
fixed values, so these tests pin the linking logic whatever the rules conclude.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.classify.model import Classification, Fired, FormSubmission
from mailflow.intake import Intake
from mailflow.linking import referenced_ids, subject_key
from mailflow.parse.model import Address, ParsedMessage
from mailflow.stages import Record, record_headers
from mailflow.store.export import exported
from mailflow.store.messages import Arrival
from mailflow.store.models import (
    ActionReport,
    Delivery,
    LinkSuggestion,
    Message,
    Report,
    Reporter,
)
from mailflow.store.records import record_understanding
from mailflow.understanding import Understanding
from tests.support import migrated_app, settings_for

CANARY = "canary-7f3a@reporter.example"


def parsed(**changes: object) -> ParsedMessage:
    base = ParsedMessage(
        message_id=None,
        in_reply_to=None,
        references=(),
        subject="",
        from_=None,
        sender=None,
        reply_to=(),
        to=(),
        cc=(),
        date=datetime(2026, 11, 2, tzinfo=UTC),
        headers=(),
        content_type="text/plain",
        content_language="",
        text="",
        new_text="",
        quoted_text="",
        signature="",
        html_converted=False,
        forwarded=(),
        attachments=(),
        delivery_status="",
        returned_headers="",
        defects=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def raw_for(message_id: str, sender: str, subject: str, extra: str = "") -> bytes:
    return (
        f"Message-ID: <{message_id}>\r\nFrom: {sender}\r\nSubject: {subject}\r\n{extra}\r\n"
        f"body of {message_id}\r\n"
    ).encode()


class Pipeline:
    """An intake whose understanding stage returns what the test registered for each raw."""

    def __init__(self, app_sessions) -> None:  # type: ignore[no-untyped-def]
        self.known: dict[bytes, Understanding] = {}
        self.intake = Intake(app_sessions, stages=(record_headers, self._stage))
        self.sessions = app_sessions

    def _stage(self, raw: bytes) -> Record:
        understood = self.known[raw]

        def record(session: Session, message: Message) -> None:
            record_understanding(session, message, understood)

        return record

    def feed(self, raw: bytes, p: ParsedMessage, c: Classification) -> Message:
        self.known[raw] = Understanding(p, c)
        stored = self.intake.receive(raw, Arrival(channel="smtp"))
        outcome = self.intake.process(stored.message_pk)
        assert outcome.status == "processed", outcome.error
        with self.sessions() as session:
            message = session.get_one(Message, stored.message_pk)
            session.expunge(message)
            return message


@pytest.fixture
def pipe(tmp_path: Path, db_url: str) -> Iterator[Pipeline]:
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        yield Pipeline(app.sessions)


def report_mail(mid: str, sender: str = "wife@example.org", subject: str = "My husband arrested"):  # type: ignore[no-untyped-def]
    raw = raw_for(mid, sender, subject)
    p = parsed(message_id=mid, subject=subject, from_=Address("", sender), new_text="facts")
    c = Classification(
        kind="report",
        language="es",
        country="VEN",
        mp_names=("Luis Alfredo Carrasquel",),
        violations=("enforced_disappearance",),
        urgent=True,
        reporter_type="family",
    )
    return raw, p, c


def test_a_new_report_gets_a_reference_reporter_violations_and_mps(pipe: Pipeline) -> None:
    message = pipe.feed(*report_mail("r1@example.org"))
    assert message.kind == "report" and message.linked_by == "new" and message.urgent
    with pipe.sessions() as session:
        report = session.get_one(Report, message.report_id)
        assert report.reference == f"R-{message.first_received_at.year}-{report.id:06d}"
        assert report.urgent and report.country == "VEN"
        assert [v.code for v in report.violations] == ["enforced_disappearance"]
        assert [p.family_name for p in report.persons] == ["Carrasquel"]
        assert report.reporter is not None and report.reporter.email == "wife@example.org"
        assert report.reporter.reporter_type == "family"


def test_a_followup_attaches_by_in_reply_to(pipe: Pipeline) -> None:
    first = pipe.feed(*report_mail("r1@example.org"))
    raw = raw_for("f1@example.org", "other@example.org", "news")
    p = parsed(message_id="f1@example.org", in_reply_to="r1@example.org", subject="news")
    followup = pipe.feed(raw, p, Classification(kind="followup", language="es", urgent=False))
    assert followup.report_id == first.report_id and followup.linked_by == "reply"


def test_a_reply_to_our_acknowledgement_attaches_to_the_acknowledged_report(
    pipe: Pipeline,
) -> None:
    first = pipe.feed(*report_mail("r1@example.org"))
    with pipe.sessions.begin() as session:
        session.add(
            Delivery(
                purpose="acknowledgement",
                to_address="wife@example.org",
                language="es",
                message_id="<ack-1@mailflow.example>",
                verp_token="v1",
                in_reply_to_message_pk=first.id,
            )
        )
    raw = raw_for("f2@example.org", "wife@example.org", "Re: Acuse de recibo")
    p = parsed(
        message_id="f2@example.org",
        references=("r1-unknown@example.org", "ack-1@mailflow.example"),
        subject="Re: Acuse de recibo",
    )
    followup = pipe.feed(raw, p, Classification(kind="followup", language="es"))
    assert followup.report_id == first.report_id and followup.linked_by == "reply"
    assert followup.delivery_id is not None


def test_a_followup_attaches_by_case_code_then_adds_what_it_tells(pipe: Pipeline) -> None:
    raw, p, c = report_mail("r1@example.org")
    first = pipe.feed(raw, p, replace(c, case_codes=("VEN-10",), urgent=False))
    raw2 = raw_for("f3@example.org", "ngo@example.net", "Update on VEN10")
    p2 = parsed(message_id="f3@example.org", subject="Update on VEN10")
    c2 = Classification(
        kind="followup",
        language="en",
        case_codes=("VEN-10", "VEN-11"),
        urgent=True,
        violations=("torture_violence",),
    )
    followup = pipe.feed(raw2, p2, c2)
    assert followup.report_id == first.report_id and followup.linked_by == "case_code"
    with pipe.sessions() as session:
        report = session.get_one(Report, first.report_id)
        assert report.urgent  # the follow-up's urgency raises the report's
        assert sorted(case.code for case in report.cases) == ["VEN-10", "VEN-11"]
        assert {v.code for v in report.violations} == {"enforced_disappearance", "torture_violence"}


def test_a_followup_attaches_by_subject_only_from_the_same_correspondent(pipe: Pipeline) -> None:
    first = pipe.feed(*report_mail("r1@example.org", subject="Detention of my husband"))
    same = raw_for("f4@example.org", "wife@example.org", "RE: Fwd: Detention of my husband")
    p = parsed(
        message_id="f4@example.org",
        subject="RE: Fwd: Detention of my husband",
        from_=Address("", "wife@example.org"),
    )
    followup = pipe.feed(same, p, Classification(kind="followup", language="en"))
    assert followup.report_id == first.report_id and followup.linked_by == "subject"

    stranger = raw_for("f5@example.org", "someone@example.net", "Re: Detention of my husband")
    p2 = replace(p, message_id="f5@example.org", from_=Address("", "someone@example.net"))
    other = pipe.feed(stranger, p2, Classification(kind="followup", language="en"))
    assert other.report_id != first.report_id and other.linked_by == "new"


def test_a_form_submission_records_its_reporter_from_reply_to(pipe: Pipeline) -> None:
    form = FormSubmission(
        fields=(
            ("Reporter name", "Ana Example"),
            ("Reporter phone", "+58 000"),
            ("Reporter identity may be disclosed", "no"),
        ),
        language="en",
    )
    raw = raw_for("form1@example.org", "form@ipu.example", "Report an MP in danger: X")
    p = parsed(
        message_id="form1@example.org",
        subject="Report an MP in danger: X",
        from_=Address("Form", "form@ipu.example"),
        reply_to=(Address("Ana", CANARY),),
    )
    message = pipe.feed(raw, p, Classification(kind="report", language="en", form=form))
    with pipe.sessions() as session:
        reporter = session.get_one(Report, message.report_id).reporter
        assert reporter is not None
        assert (reporter.email, reporter.name, reporter.phone) == (CANARY, "Ana Example", "+58 000")
        assert reporter.identity_disclosable is False
        assert session.scalar(select(func.count()).select_from(Reporter)) == 1


def test_a_redelivered_copy_is_linked_to_its_original_but_a_reused_id_is_not(
    pipe: Pipeline,
) -> None:
    raw, p, c = report_mail("r1@example.org")
    first = pipe.feed(raw, p, c)
    again = raw.replace(b"\r\n\r\n", b"\r\nReceived: from mx2\r\n\r\n", 1)
    copy = pipe.feed(again, p, c)
    assert copy.id != first.id and copy.duplicate_of_id == first.id
    assert copy.report_id == first.report_id and copy.linked_by == "duplicate"

    other = raw_for("r1@example.org", "wife@example.org", "A different subject")
    p2 = replace(p, subject="A different subject")
    reused = pipe.feed(other, p2, c)
    assert reused.duplicate_of_id is None and reused.report_id != first.report_id


def test_an_action_report_records_actions_cases_and_the_campaign_it_answers(
    pipe: Pipeline,
) -> None:
    with pipe.sessions.begin() as session:
        session.add(
            Delivery(
                purpose="decision",
                to_address="ipu-group@parliament.example",
                language="en",
                message_id="<mailing-1@mailflow.example>",
                verp_token="v2",
            )
        )
    raw = raw_for("a1@parliament.example", "ipu-group@parliament.example", "Re: Decisions")
    p = parsed(
        message_id="a1@parliament.example",
        in_reply_to="mailing-1@mailflow.example",
        subject="Re: Decisions",
        new_text="We wrote to the minister.",
    )
    c = Classification(
        kind="action_report",
        language="en",
        reporting_parliament="SWE",
        case_codes=("TUR-69",),
        action_types=("request_mfa_intervention",),
        fired=(Fired("actions.mfa", "action_types", "request_mfa_intervention", "wrote to"),),
    )
    message = pipe.feed(raw, p, c)
    with pipe.sessions() as session:
        record = session.get_one(ActionReport, message.action_report_id)
        assert record.country == "SWE"
        assert [(a.action_type, a.description) for a in record.actions] == [
            ("request_mfa_intervention", "wrote to")
        ]
        assert [case.code for case in record.cases] == ["TUR-69"]
        assert message.delivery_id is not None


def test_same_mp_name_and_country_is_only_suggested(pipe: Pipeline) -> None:
    first = pipe.feed(*report_mail("r1@example.org"))
    raw, p, c = report_mail("r2@example.org", sender="lawyer@example.net", subject="Detention")
    second = pipe.feed(raw, p, replace(c, mp_names=("L. Carrasquel",)))
    assert second.report_id != first.report_id  # never applied on its own
    with pipe.sessions() as session:
        suggestions = session.scalars(select(LinkSuggestion)).all()
        assert [(s.message_pk, s.report_id) for s in suggestions] == [(second.id, first.report_id)]
        assert "Carrasquel" in suggestions[0].reason


def test_an_urgent_report_is_logged_without_the_reporter(
    pipe: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pipe.feed(*report_mail("r1@example.org", sender=CANARY))
    assert any(r.getMessage() == "urgent report" for r in caplog.records)
    assert CANARY not in caplog.text
    assert all(CANARY not in json.dumps(vars(r), default=str) for r in caplog.records)


def test_export_gives_records_and_links_but_never_the_reporter(pipe: Pipeline) -> None:
    first = pipe.feed(*report_mail("r1@example.org", sender=CANARY))
    raw = raw_for("f1@example.org", CANARY, "news")
    p = parsed(message_id="f1@example.org", in_reply_to="r1@example.org", subject="news")
    pipe.feed(raw, p, Classification(kind="followup", language="es", case_codes=("VEN-10",)))
    with pipe.sessions() as session:
        rows = list(exported(session))
    assert CANARY not in json.dumps(rows)
    assert [r["kind"] for r in rows] == ["report", "followup"]
    assert rows[0]["report_id"] == rows[1]["report_id"] == first.report_id
    assert rows[0]["in_reply_to_record"] is None
    assert rows[1]["in_reply_to_record"] == f"report:{first.report_id}"
    assert rows[1]["case_codes"] == ["VEN-10"]


def test_subject_keys_strip_reply_and_forward_prefixes_in_several_languages() -> None:
    key = subject_key("Detention of Mr X")
    for prefix in (
        "Re: ",
        "RE: ",
        "AW: ",
        "Fwd: ",
        "TR: ",
        "RV: ",
        "Réf. : ",
        "Re[2]: ",
        "[EXTERNAL] Re: Fw: ",
    ):
        assert subject_key(prefix + "Detention of Mr X") == key, prefix
    assert subject_key("Re: Hello") is None  # too short to identify a thread
    assert subject_key("Tribunal ruling on the case") != key


def test_referenced_ids_put_the_parent_first_and_skip_the_message_itself() -> None:
    p = parsed(
        message_id="me@x",
        in_reply_to="parent@x",
        references=("root@x", "mid@x", "parent@x", "me@x"),
    )
    assert referenced_ids(p) == ("parent@x", "mid@x", "root@x")
