"""The whole understanding pipeline (parse, classify, record, link) behind real intake.

The wild corpus (CPython's e-mail test messages and an OSS-Fuzz seed corpus) lives beside the
checkout in ../shared and is absent from a fresh clone: those tests skip cleanly then.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from mailflow.store.export import exported
from mailflow.store.messages import Arrival
from mailflow.store.models import Blob, Message, Report
from mailflow.store.status import intake_status
from tests.support import migrated_app, settings_for

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WILD = SHARED / "corpus-wild"
CANARY_EMAIL = "canary.reporter.5d1e@reporter.example"
CANARY_PHONE = "+99 555 0100 7321"

FORM = f"""\
From: Report form <form@ipu.example>
Reply-To: {CANARY_EMAIL}
To: report@localhost
Subject: Report an MP in danger: Jane Example
Message-ID: <form-canary-1@ipu.example>
Date: Mon, 02 Nov 2026 10:00:00 +0000
Content-Type: text/plain; charset=utf-8

Form-Id: F-2026-0042
Submitted: 2026-11-02 10:00 UTC
Language: en
MP name: Jane Example
Country: Kenya
Parliament/chamber: National Assembly
MP status: sitting
Reporter name: Canary Reporter
Reporter e-mail: {CANARY_EMAIL}
Reporter phone: {CANARY_PHONE}
Relationship to the MP: sister
Reporter identity may be disclosed: no
MP consents: unknown
Urgent: yes
Alleged violations: Arbitrary arrest and detention
Facts:
  She was arrested at night by men in plain clothes and is held incommunicado.
  Nobody knows where she is.
""".replace("\n", "\r\n").encode()


def test_a_form_report_is_recorded_and_its_reporter_stays_inside(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        stored = app.intake.receive(FORM, Arrival(channel="smtp"))
        outcome = app.intake.process(stored.message_pk)
        assert outcome.status == "processed", outcome.error
        with app.sessions() as session:
            message = session.get_one(Message, stored.message_pk)
            assert message.kind == "report" and message.urgent
            report = session.get_one(Report, message.report_id)
            assert report.reporter is not None and report.reporter.email == CANARY_EMAIL
            assert report.country == "KEN"
            exported_text = json.dumps(list(exported(session)))
            status = intake_status(session)
            assert status.urgent_untriaged == 1 and status.by_kind == {"report": 1}
            labels = json.loads(message.classification or "{}")
            assert labels["kind"] == "report" and labels["fired"] and labels["defects"] == []
    for secret in (CANARY_EMAIL, CANARY_PHONE, "Canary Reporter"):
        assert secret not in exported_text
        assert secret not in caplog.text


@pytest.mark.skipif(not WILD.is_dir(), reason="../shared/corpus-wild is not beside this checkout")
def test_every_wild_message_is_processed_or_quarantined_with_its_bytes(tmp_path: Path) -> None:
    files = sorted(p for p in WILD.rglob("*") if p.is_file())
    assert len(files) > 100
    with migrated_app(settings_for(tmp_path, f"sqlite:///{tmp_path / 'wild.db'}")) as app:
        stored = app.intake.receive_many(
            [(p.read_bytes(), Arrival(channel="file", path=str(p))) for p in files]
        )
        pks = sorted({s.message_pk for s in stored})
        for start in range(0, len(pks), 50):
            outcomes = app.intake.process_many(pks[start : start + 50])
            for outcome in outcomes:
                assert outcome.status in ("processed", "quarantined")
                if outcome.status == "quarantined":
                    assert outcome.error
        with app.sessions() as session:
            rows = session.execute(select(Message.status, Blob.size).join(Blob)).all()
    assert len(rows) == len(pks)
    assert all(status in ("processed", "quarantined") for status, _size in rows)
    assert all(size >= 0 for _status, size in rows)
