"""`mailflow quarantine list | show | retry`, as a user runs them, on SQLite and PostgreSQL.

Messages are quarantined the way production quarantines them: `Intake` with a stage that
fails (the stage list is the seam). Retrying with the default stages then processes them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from mailflow.cli_intake import _retry, header_lines, printable
from mailflow.intake import Intake
from mailflow.stages import Record
from mailflow.store.messages import Arrival
from mailflow.store.models import Message
from tests.support import migrated_app, settings_for

# CRLF, a NUL, 8-bit bytes and a terminal escape sequence in the subject: all must survive
# `show --raw` byte for byte, and none of the control bytes may reach the terminal otherwise.
RAW_1 = (
    b"Message-ID: <q1@example.org>\r\nFrom: Ana Reporter <ana@example.org>\r\n"
    b"Subject: Arrest of MP \x1b[2J Jane Doe\r\nX-Odd: \xff\xfe\x00\r\n\r\n"
    b"She was arrested.\r\n\x00\x80\r\n"
)
RAW_2 = b"Message-ID: <q2@example.org>\nFrom: ben@example.org\nSubject: Second\n\nhello\n"


class StageBroke(Exception):
    pass


def breaks(raw: bytes) -> Record:
    raise StageBroke("parser choked on part 2\nsecond line of the error")


def quarantine_two(tmp_path: Path, db_url: str) -> tuple[int, int]:
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        intake = Intake(app.sessions, stages=[breaks])
        first = intake.accept(RAW_1, Arrival("smtp", smtp_session="s1", smtp_peer="192.0.2.1"))
        second = intake.accept(RAW_2, Arrival("file", path="/archive/2.eml"))
    return first.message_pk, second.message_pk


def statuses(tmp_path: Path, db_url: str) -> dict[int, str]:
    with migrated_app(settings_for(tmp_path, db_url)) as app, app.sessions() as session:
        return {pk: status for pk, status in session.execute(select(Message.id, Message.status))}


def run_cli(
    cwd: Path, db_url: str, *args: str, text: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    env["MAILFLOW_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "mailflow", "--log-level", "warning", *args],
        capture_output=True,
        text=text,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_list_shows_id_size_error_first_line_and_subject_not_sender(
    tmp_path: Path, db_url: str
) -> None:
    one, two = quarantine_two(tmp_path, db_url)
    result = run_cli(tmp_path, db_url, "quarantine", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "RECEIVED", "(UTC)", "SIZE", "ERROR", "SUBJECT"]
    row_one = next(line for line in lines if line.split()[0] == str(one))
    assert f"{len(RAW_1)} B" in row_one
    assert "StageBroke: parser choked on part 2" in row_one
    assert "second line" not in result.stdout
    assert "Arrest of MP [2J Jane Doe" in row_one  # the escape character dropped
    assert "\x1b" not in result.stdout
    assert "ana@example.org" not in result.stdout and "ben@example.org" not in result.stdout
    assert any(line.split()[0] == str(two) and "Second" in line for line in lines[1:])
    assert lines[-1].startswith("2 quarantined")


def test_show_gives_error_arrivals_and_headers_and_raw_round_trips(
    tmp_path: Path, db_url: str
) -> None:
    one, _ = quarantine_two(tmp_path, db_url)
    result = run_cli(tmp_path, db_url, "quarantine", "show", str(one))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"message {one}: quarantined\n")
    assert "  StageBroke: parser choked on part 2\n  second line of the error\n" in out
    assert "smtp session=s1 peer=192.0.2.1" in out
    assert "  From: Ana Reporter <ana@example.org>\n" in out
    assert "  Subject: Arrest of MP \\x1b[2J Jane Doe\n" in out
    assert "  X-Odd: \ufffd\ufffd\\x00\n" in out
    assert "She was arrested" not in out  # headers only
    assert "\x1b" not in out and "\x00" not in out
    raw = run_cli(tmp_path, db_url, "quarantine", "show", str(one), "--raw", text=False)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == RAW_1


def test_show_an_unknown_id_is_a_one_line_error(tmp_path: Path, db_url: str) -> None:
    quarantine_two(tmp_path, db_url)
    for args in (["999"], ["999", "--raw"]):
        result = run_cli(tmp_path, db_url, "quarantine", "show", *args)
        assert result.returncode == 1
        assert result.stderr.startswith("mailflow: error: no message with id 999\nhint: ")


def test_retry_one_processes_it_with_the_default_stages(tmp_path: Path, db_url: str) -> None:
    one, two = quarantine_two(tmp_path, db_url)
    result = run_cli(tmp_path, db_url, "quarantine", "retry", str(one))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{one}: processed", "retried 1: 1 processed, 0 failed"]
    assert statuses(tmp_path, db_url) == {one: "processed", two: "quarantined"}
    with migrated_app(settings_for(tmp_path, db_url)) as app, app.sessions() as session:
        message = session.get_one(Message, one)
        assert message.error is None
        assert message.subject == "Arrest of MP [2J Jane Doe"  # the stages ran this time
    again = run_cli(tmp_path, db_url, "quarantine", "retry", str(one), "12345")
    assert again.returncode == 1
    assert f"{one}: skipped, not quarantined (processed)" in again.stdout
    assert "mailflow: error: no message with id 12345" in again.stderr


def test_retry_all_then_nothing_is_quarantined(tmp_path: Path, db_url: str) -> None:
    one, two = quarantine_two(tmp_path, db_url)
    result = run_cli(tmp_path, db_url, "quarantine", "retry", "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{one}: processed",
        f"{two}: processed",
        "retried 2: 2 processed, 0 failed",
    ]
    assert statuses(tmp_path, db_url) == {one: "processed", two: "processed"}
    listing = run_cli(tmp_path, db_url, "quarantine", "list")
    assert listing.stdout == "no quarantined messages\n"
    assert run_cli(tmp_path, db_url, "quarantine", "retry", "--all").returncode == 0


def test_retry_needs_ids_or_all(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'm.db'}"
    for args in ([], ["--all", "3"]):
        result = run_cli(tmp_path, db_url, "quarantine", "retry", *args)
        assert result.returncode == 2
        assert "usage:" in result.stderr


def test_retry_that_fails_again_stays_quarantined_and_exits_1(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    one, _ = quarantine_two(tmp_path, db_url)
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        app.intake = Intake(app.sessions, stages=[breaks])
        assert _retry(app, [one], every=False) == 1
    out = capsys.readouterr().out
    assert f"{one}: still quarantined: StageBroke: parser choked on part 2\n" in out
    assert statuses(tmp_path, db_url)[one] == "quarantined"


def test_help_has_one_line_for_each_new_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailflow", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    for command in ("ingest", "quarantine"):
        lines = [line for line in result.stdout.splitlines() if line.strip().startswith(command)]
        assert len(lines) == 1 and len(lines[0].split(None, 1)) == 2, command
        following = result.stdout.split(lines[0] + "\n", 1)[1].splitlines()[0]
        assert not following.startswith(" " * 10), f"{command}'s help wraps"


def test_header_lines_and_printable() -> None:
    assert header_lines(b"A: 1\r\nB: 2\r\n\r\nbody", complete=True) == ["A: 1", "B: 2"]
    assert header_lines(b"", complete=True) == ["(none)"]
    many = b"".join(b"H%d: x\n" % n for n in range(40)) + b"\nbody"
    assert header_lines(many, complete=True)[-1].startswith("... 10 more line(s)")
    assert header_lines(b"A: 1\nB: cut", complete=False)[-1].startswith("... (headers go on")
    assert printable("a\tb\x1b[0m\u202ec\x85") == "a\tb\\x1b[0m\\u202ec\\x85"
