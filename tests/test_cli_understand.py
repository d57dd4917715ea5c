"""`mailflow classify --jsonl`, `explain` and `export --jsonl`, run as a user would."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import mailflow

REPORTER = "hidden.reporter.9f2c@reporter.example"

DSN = b"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounces+tok123@ipu.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.net>
Date: Mon, 02 Nov 2026 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; speaker.office@parliament.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--b1--
"""

REPORT = f"""\
From: A Relative <{REPORTER}>
To: report@ipu.example
Subject: My brother, a member of parliament, has disappeared
Message-ID: <rep-1@reporter.example>
Date: Mon, 02 Nov 2026 10:00:00 +0000
Content-Type: text/plain; charset=utf-8

Dear Committee,

My brother, the Hon. Peter Example, a member of the National Assembly of Kenya, was
abducted by armed men three days ago. Nobody knows where he is held and we fear for
his life. The police refuse to register our complaint.

Please help us.
""".encode()


def nested(depth: int) -> bytes:
    head = b"From: a@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    parts = [head]
    for level in range(depth):
        parts.append(
            f'Content-Type: multipart/mixed; boundary="n{level}"\r\n\r\n--n{level}\r\n'.encode()
        )
    parts.append(b"Content-Type: text/plain\r\n\r\nbottom\r\n")
    return b"".join(parts)


def test_classify_jsonl_prints_the_label_fields_per_file(tmp_path: Path) -> None:
    (tmp_path / "dsn.eml").write_bytes(DSN)
    (tmp_path / "report.eml").write_bytes(REPORT)
    result = mailflow(
        "classify", "--jsonl", str(tmp_path / "dsn.eml"), str(tmp_path / "report.eml")
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == [
        str(tmp_path / "dsn.eml"),
        str(tmp_path / "report.eml"),
    ]
    dsn, report = rows
    assert (dsn["kind"], dsn["bounce_type"]) == ("bounce", "hard")
    assert dsn["bounced_recipients"] == ["speaker.office@parliament.example"]
    assert report["kind"] == "report" and report["country"] == "KEN" and report["urgent"] is True
    assert "enforced_disappearance" in report["violations"]
    expected = {
        "file",
        "kind",
        "language",
        "case_codes",
        "mp_names",
        "country",
        "violations",
        "urgent",
        "reporter_type",
        "reporting_parliament",
        "action_types",
        "bounced_recipients",
        "bounce_type",
    }
    assert set(dsn) == set(report) == expected
    assert REPORTER not in result.stdout


def test_classify_reports_an_unparseable_file_and_carries_on(tmp_path: Path) -> None:
    (tmp_path / "deep.eml").write_bytes(nested(2000))
    (tmp_path / "dsn.eml").write_bytes(DSN)
    result = mailflow("classify", "--jsonl", str(tmp_path / "deep.eml"), str(tmp_path / "dsn.eml"))
    assert result.returncode == 1
    deep, dsn = (json.loads(line) for line in result.stdout.splitlines())
    assert deep["kind"] is None and "max_depth" in deep["error"]
    assert dsn["kind"] == "bounce"


def test_explain_names_the_rules_that_fired(tmp_path: Path) -> None:
    (tmp_path / "report.eml").write_bytes(REPORT)
    result = mailflow("explain", str(tmp_path / "report.eml"))
    assert result.returncode == 0, result.stderr
    assert 'kind: "report"' in result.stdout
    assert "<- kinds." in result.stdout  # the kind decision, with its rule
    assert "<- violations." in result.stdout and "<- urgency." in result.stdout


def test_export_lists_stored_messages_without_the_reporter(tmp_path: Path) -> None:
    (tmp_path / "report.eml").write_bytes(REPORT)
    (tmp_path / "dsn.eml").write_bytes(DSN)
    env = {"MAILFLOW_SERVICE_DATA_DIR": str(tmp_path / "data")}
    ingest = mailflow("ingest", str(tmp_path / "report.eml"), str(tmp_path / "dsn.eml"), env=env)
    assert ingest.returncode == 0, ingest.stderr
    result = mailflow("export", "--jsonl", env=env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(row["kind"] for row in rows) == ["bounce", "report"]
    report = next(row for row in rows if row["kind"] == "report")
    assert report["message_id"] == "<rep-1@reporter.example>" and report["report_id"] is not None
    assert REPORTER not in result.stdout and "A Relative" not in result.stdout
