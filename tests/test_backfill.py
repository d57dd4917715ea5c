"""Backfill from .eml files, Maildirs and mbox files: each message once, a rerun changes nothing.

Storage tests run on SQLite and PostgreSQL; the command is run as a user runs it (a process),
with its progress bar on a real pseudo-terminal once.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailflow import backfill
from mailflow.intake import Intake
from mailflow.progress import Progress
from mailflow.service import App
from mailflow.stages import Record
from mailflow.store.models import Blob, Message, MessageSource
from tests.support import migrated_app, settings_for

EML_A = b"Message-ID: <a@example.org>\r\nSubject: A\r\nFrom: a@example.org\r\n\r\nalpha\r\n"
EML_B = b"Message-ID: <b@example.org>\nSubject: B\n\nbeta\n"
GARBAGE = b"\x00\x01no headers at all \xff\xfe\x80\n\x00\x1b[31m\n"
MAILDIR_NEW = b"Message-ID: <m1@example.org>\nSubject: M1\n\nin new/\n"
MAILDIR_CUR = b"Message-ID: <m2@example.org>\nSubject: M2\n\nin cur/, seen\n"
MBOX_1 = b"Message-ID: <x1@example.org>\nSubject: X1\n\nline\nFrom what I hear, it was bad\n"
MBOX_2 = b"Subject: \xe9t\xe9 \x00\n\n8-bit \xff\xfe body\n\n\nafter two blank lines\n"
MBOX_3 = b"Message-ID: <x3@example.org>\r\nSubject: X3\r\n\r\nCRLF\r\n"
FROM_LINE = b"From sender@example.org Mon Jan  1 00:00:00 2024\n"


@dataclass(frozen=True)
class Corpus:
    paths: list[Path]
    expected: dict[str, bytes]  # identifier -> raw bytes
    maildir: Path


def make_corpus(root: Path) -> Corpus:
    root.mkdir(parents=True)
    root = root.resolve()  # identifiers are absolute paths with symbolic links resolved
    emls = root / "emls"
    (emls / "nested").mkdir(parents=True)
    (emls / "a.eml").write_bytes(EML_A)
    (emls / "nested" / "b.EML").write_bytes(EML_B)
    (emls / "garbage.eml").write_bytes(GARBAGE)
    (emls / "._a.eml").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # hidden: skipped
    (emls / "notes.txt").write_bytes(b"not mail")  # not .eml: skipped
    maildir = root / "Maildir"
    for sub in ("new", "cur", "tmp", ".Sent/cur", ".Sent/new"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1000.M1P1.host").write_bytes(MAILDIR_NEW)
    (maildir / "cur" / "1001.M2P2.host:2,S").write_bytes(MAILDIR_CUR)
    (maildir / "tmp" / "1002.M3P3.host").write_bytes(b"Subject: half-delivered\n\n")
    (maildir / ".Sent" / "cur" / "1003.M4P4.host:2,S").write_bytes(b"Subject: sent\n\n")
    mbox = root / "archive.mbox"
    mbox.write_bytes(
        FROM_LINE + MBOX_1 + b"\n" + FROM_LINE + MBOX_2 + b"\n" + FROM_LINE + MBOX_3 + b"\n"
    )
    expected = {
        str(emls / "a.eml"): EML_A,
        str(emls / "garbage.eml"): GARBAGE,
        str(emls / "nested" / "b.EML"): EML_B,
        f"{maildir}#1000.M1P1.host": MAILDIR_NEW,
        f"{maildir}#1001.M2P2.host": MAILDIR_CUR,
        f"{mbox}#1": MBOX_1,
        f"{mbox}#2": MBOX_2,
        f"{mbox}#3": MBOX_3,
    }
    return Corpus([emls, maildir, mbox], expected, maildir)


def ingest(app: App, paths: list[Path]) -> backfill.Tally:
    runner = backfill.Backfill(app.intake)
    for _ in runner.run(backfill.read_all(backfill.plan(paths))):
        pass
    return runner.tally


def snapshot(app: App) -> tuple[object, ...]:
    with app.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Message)),
            session.scalar(select(func.count()).select_from(Blob)),
            session.execute(
                select(MessageSource.message_pk, MessageSource.path).order_by(MessageSource.id)
            ).all(),
            session.execute(
                select(Message.id, Message.times_received, Message.last_received_at).order_by(
                    Message.id
                )
            ).all(),
        )


def stored_by_path(app: App) -> dict[str, bytes]:
    with app.sessions() as session:
        rows = session.execute(
            select(MessageSource.path, Blob.data)
            .join(Message, Message.id == MessageSource.message_pk)
            .join(Blob, Blob.sha256 == Message.sha256)
            .where(MessageSource.channel == "file")
        ).all()
    return {str(path): bytes(data) for path, data in rows}


def test_eml_maildir_and_mbox_each_message_stored_once(tmp_path: Path, db_url: str) -> None:
    corpus = make_corpus(tmp_path / "in")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        tally = ingest(app, corpus.paths)
        assert (tally.new + tally.quarantined, tally.already_stored, tally.errors) == (8, 0, 0)
        # Exact bytes, under stable identifiers; tmp/, hidden files and .Sent are not read.
        assert stored_by_path(app) == corpus.expected
        messages, blobs, sources, _ = snapshot(app)
        assert (messages, blobs, len(sources)) == (8, 8, 8)


def test_running_twice_changes_nothing(tmp_path: Path, db_url: str) -> None:
    corpus = make_corpus(tmp_path / "in")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        ingest(app, corpus.paths)
        before = snapshot(app)
        again = ingest(app, corpus.paths)
        assert (again.new, again.quarantined, again.already_stored) == (0, 0, 8)
        assert snapshot(app) == before


def test_maildir_flag_change_and_move_to_cur_is_not_a_new_arrival(
    tmp_path: Path, db_url: str
) -> None:
    corpus = make_corpus(tmp_path / "in")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        ingest(app, [corpus.maildir])
        before = snapshot(app)
        # What a mail client does: read the new message, then mark the other one replied.
        new, cur = corpus.maildir / "new", corpus.maildir / "cur"
        (new / "1000.M1P1.host").rename(cur / "1000.M1P1.host:2,S")
        (cur / "1001.M2P2.host:2,S").rename(cur / "1001.M2P2.host:2,RS")
        again = ingest(app, [corpus.maildir])
        assert again.already_stored == 2 and again.new == 0
        assert snapshot(app) == before


def test_same_bytes_in_another_file_is_another_arrival(tmp_path: Path, db_url: str) -> None:
    first, second = tmp_path / "a.eml", tmp_path / "copy.eml"
    first.write_bytes(EML_A)
    second.write_bytes(EML_A)
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        ingest(app, [first])
        ingest(app, [second, first])
        with app.sessions() as session:
            assert session.scalar(select(Message.times_received)) == 2
            paths = session.scalars(select(MessageSource.path).order_by(MessageSource.id)).all()
        assert paths == [str(first), str(second)]


def test_malformed_bytes_and_undecodable_file_names_are_stored(tmp_path: Path, db_url: str) -> None:
    maildir = tmp_path / "md"
    for sub in ("cur", "new"):
        (maildir / sub).mkdir(parents=True)
    odd_name = os.fsdecode(b"1.M1.h\xff\xfe") + ":2,S"  # not UTF-8: PostgreSQL text rejects it
    (maildir / "cur" / odd_name).write_bytes(b"\xff\xfe\x00")
    (tmp_path / "empty.eml").write_bytes(b"")
    (tmp_path / "nul.eml").write_bytes(b"From: \x00<x@y>\r\nSubject: \x00\x80\r\n\r\n\x00")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        tally = ingest(app, [maildir, tmp_path / "empty.eml", tmp_path / "nul.eml"])
        assert tally.errors == 0 and tally.new + tally.quarantined == 3
        stored = stored_by_path(app)
    assert stored[f"{maildir}#1.M1.h\\xff\\xfe"] == b"\xff\xfe\x00"
    assert stored[str(tmp_path / "empty.eml")] == b""
    assert stored[str(tmp_path / "nul.eml")].startswith(b"From: \x00<x@y>")


def test_split_mbox_needs_a_blank_line_before_from_and_streams() -> None:
    lines = io.BytesIO(
        FROM_LINE + b"Subject: 1\n\nbody\nFrom inside the body\n\n"
        b"From x Mon Jan  1 00:00:00 2024\r\nSubject: 2\r\n\r\nlast\r\n\r\n"
    )
    assert list(backfill.split_mbox(lines)) == [
        b"Subject: 1\n\nbody\nFrom inside the body\n",
        b"Subject: 2\r\n\r\nlast\r\n",
    ]
    assert list(backfill.split_mbox(io.BytesIO(b""))) == []

    def endless() -> Iterator[bytes]:
        yield FROM_LINE
        yield b"Subject: first\n"
        yield b"\n"
        yield FROM_LINE
        raise AssertionError("read past the second message before yielding the first")

    assert next(backfill.split_mbox(endless())) == b"Subject: first\n"


def test_a_file_that_is_not_mail_is_an_error_and_the_rest_is_stored(
    tmp_path: Path, db_url: str
) -> None:
    (tmp_path / "notes.txt").write_bytes(b"hello")
    (tmp_path / "a.eml").write_bytes(EML_A)
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        results = list(
            backfill.Backfill(app.intake).run(
                backfill.read_all(backfill.plan([tmp_path / "notes.txt", tmp_path / "a.eml"]))
            )
        )
    assert [r.outcome for r in results] == ["error", "new"]
    assert results[0].detail is not None and "not an .eml file" in results[0].detail


def test_a_message_failing_processing_is_stored_and_quarantined(
    tmp_path: Path, db_url: str
) -> None:
    def breaks(raw: bytes) -> Record:
        raise ValueError("no parse")

    (tmp_path / "a.eml").write_bytes(EML_A)
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        runner = backfill.Backfill(Intake(app.sessions, stages=[breaks]))
        [result] = runner.run(backfill.read_all(backfill.plan([tmp_path / "a.eml"])))
        assert (result.outcome, result.detail) == ("quarantined", "ValueError: no parse")
        assert runner.tally.summary() == (
            "ingested 1 message(s): 0 new, 0 already stored, 1 quarantined, 0 error(s)"
        )
        with app.sessions() as session:
            assert session.get_one(Message, result.message_pk).status == "quarantined"
        assert ingest(app, [tmp_path / "a.eml"]).already_stored == 1


# -- the command ---------------------------------------------------------------------------------


def run_cli(cwd: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    env["MAILFLOW_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "mailflow", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_ingest_command_twice_and_unreadable_files(tmp_path: Path, db_url: str) -> None:
    corpus = make_corpus(tmp_path / "in")
    loop = tmp_path / "in" / "emls" / "loop.eml"
    loop.symlink_to(loop)  # unreadable even for root: ELOOP
    missing = tmp_path / "in" / "missing.mbox"
    args = ["ingest", *map(str, corpus.paths), str(missing)]
    first = run_cli(tmp_path, db_url, *args)
    assert first.returncode == 1, first.stderr
    assert f"mailflow: error: {loop}: Too many levels of symbolic links" in first.stderr
    assert f"mailflow: error: {missing}: no such file or directory" in first.stderr
    assert "Maildir++ subfolders not ingested (name them to ingest them): .Sent" in first.stderr
    assert "\r" not in first.stderr  # no progress bar when stderr is not a terminal
    assert first.stdout.splitlines()[0] == (
        "ingested 8 message(s): 8 new, 0 already stored, 0 quarantined, 2 error(s)"
    )
    second = run_cli(tmp_path, db_url, *args)
    assert second.returncode == 1
    assert second.stdout.splitlines()[0] == (
        "ingested 8 message(s): 0 new, 8 already stored, 0 quarantined, 2 error(s)"
    )
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        assert stored_by_path(app) == corpus.expected
        assert snapshot(app)[:2] == (8, 8)


def test_ingest_command_draws_a_bar_on_a_terminal(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "in")
    db_url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    env.update(MAILFLOW_DATABASE_URL=db_url, COLUMNS="120")
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailflow", "ingest", *map(str, corpus.paths)],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=env,
            cwd=tmp_path,
        )
        os.close(terminal)
        screen = _read_until_closed(controller)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(controller)
    assert proc.returncode == 0, screen
    assert "ingest  [########################]  100% 8/8 msg" in screen
    assert "ETA" in screen and "msg/s" in screen
    assert 'event="message stored"' not in screen  # per-message info logs would hide the bar
    assert stdout.decode().startswith("ingested 8 message(s): ")


def _read_until_closed(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


# -- progress ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_on_a_terminal_draws_bar_rate_and_eta() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(10, stream, label="send", unit="msg", isatty=True, clock=clock, columns=120)
    clock.now += 2.0
    bar.status = "4 sent"
    bar.advance(4)
    drawn = stream.getvalue()
    assert drawn.startswith("\r\x1b[K")
    assert "send  [#########---------------]  40% 4/10 msg  2.0 msg/s  ETA 0:03  4 sent" in drawn
    bar.close()
    assert stream.getvalue().endswith("\n")
    assert "100%" not in stream.getvalue()  # 4/10 is not done


def test_progress_throttles_redraws_and_keeps_lines_apart() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(None, stream, isatty=True, clock=clock, interval=0.5, columns=30)
    for _ in range(1000):
        bar.advance()
    assert stream.getvalue().count("\r\x1b[K") == 1  # the first draw only
    clock.now += 0.6
    bar.advance()
    assert stream.getvalue().count("\r\x1b[K") == 2
    bar.write("mailflow: error: x.eml: Permission denied")
    assert stream.getvalue().endswith("\r\x1b[Kmailflow: error: x.eml: Permission denied\n")
    bar.advance()  # the bar comes back at once after a line was written
    assert stream.getvalue().rsplit("\n", 1)[1].startswith("\r\x1b[K1002")
    bar.close()
    bar.close()
    draws = [part.split("\n")[0] for part in stream.getvalue().split("\r\x1b[K")[1:]]
    bars = [draw for draw in draws if draw and not draw.startswith("mailflow:")]
    assert len(bars) == 4 and all(len(bar) < 30 for bar in bars)
    assert stream.getvalue().count("\n") == 2


def test_progress_off_a_terminal_draws_nothing() -> None:
    stream = io.StringIO()
    bar = Progress(5, stream)  # a StringIO is not a terminal
    bar.advance(5)
    bar.close()
    assert stream.getvalue() == ""
    bar.write("a plain line")
    assert stream.getvalue() == "a plain line\n"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (59.6, "1:00"), (3725, "1:02:05")])
def test_format_duration(seconds: float, text: str) -> None:
    from mailflow.progress import format_duration

    assert format_duration(seconds) == text
