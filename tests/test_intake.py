"""The intake pipeline on SQLite and PostgreSQL: stored once, provenance kept, quarantine."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.intake import Intake
from mailflow.stages import Record
from mailflow.store.messages import Arrival, sha256_of
from mailflow.store.models import Blob, Message, MessageSource
from tests.support import migrated_app, settings_for

RAW = (
    b"Message-ID: <r1@example.org>\r\nFrom: Ana <ana@example.org>\r\n"
    b"Subject: Report an MP in danger: Jane Doe\r\nDate: Mon, 02 Nov 2026 10:00:00 +0100\r\n"
    b"\r\nShe was arrested last night.\r\n"
)
SMTP = Arrival(
    "smtp", smtp_session="s1", envelope_from="ana@example.org", envelope_to=("report@localhost",)
)


def test_receive_commits_raw_then_process_records_headers(tmp_path: Path, db_url: str) -> None:
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        stored = app.intake.receive(RAW, SMTP)
        assert stored.new and stored.sha256 == sha256_of(RAW)
        with app.sessions() as session:
            message = session.get_one(Message, stored.message_pk)
            assert message.status == "received"
            assert message.message_id == "<r1@example.org>"
            assert session.get_one(Blob, stored.sha256).data == RAW
        outcome = app.intake.process(stored.message_pk)
        assert outcome.status == "processed"
        with app.sessions() as session:
            message = session.get_one(Message, stored.message_pk)
            assert message.subject == "Report an MP in danger: Jane Doe"
            assert message.from_address == "ana@example.org"
            assert message.date is not None and message.date.utcoffset() is not None


def test_same_bytes_twice_is_one_message_with_two_arrivals(tmp_path: Path, db_url: str) -> None:
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        first = app.intake.accept(RAW, SMTP)
        second = app.intake.accept(RAW, Arrival("imap", "acct", "INBOX", 7, 1))
        assert first.message_pk == second.message_pk and not second.new
        with app.sessions() as session:
            message = session.get_one(Message, first.message_pk)
            assert message.times_received == 2
            channels = session.scalars(select(MessageSource.channel)).all()
            assert sorted(channels) == ["imap", "smtp"]


def test_same_imap_uid_again_is_a_no_op(tmp_path: Path, db_url: str) -> None:
    arrival = Arrival("imap", "acct", "INBOX", 7, 42)
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        app.intake.accept(RAW, arrival)
        app.intake.accept(RAW, arrival)
        with app.sessions() as session:
            assert session.scalar(select(Message.times_received)) == 1
            assert len(session.scalars(select(MessageSource.id)).all()) == 1


def test_different_message_reusing_a_message_id_is_kept(tmp_path: Path, db_url: str) -> None:
    other = RAW.replace(b"arrested last night", b"released this morning")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        a = app.intake.accept(RAW, SMTP)
        b = app.intake.accept(other, SMTP)
        assert a.message_pk != b.message_pk and b.new
        with app.sessions() as session:
            ids = session.scalars(select(Message.message_id)).all()
            assert ids == ["<r1@example.org>", "<r1@example.org>"]


def test_failing_stage_quarantines_and_rolls_back(tmp_path: Path, db_url: str) -> None:
    def breaks(raw: bytes) -> Record:
        def record(session: Session, message: Message) -> None:
            message.subject = "half-written"
            raise RecursionError("maximum recursion depth exceeded")

        return record

    with migrated_app(settings_for(tmp_path, db_url)) as app:
        intake = Intake(app.sessions, stages=[breaks])
        stored = intake.accept(RAW, SMTP)
        with app.sessions() as session:
            message = session.get_one(Message, stored.message_pk)
            assert message.status == "quarantined"
            assert message.error == "RecursionError: maximum recursion depth exceeded"
            # The stage's partial write was rolled back; the basic headers are still recorded.
            assert message.subject == "Report an MP in danger: Jane Doe"
            assert session.get_one(Blob, message.sha256).data == RAW  # raw bytes kept


def test_nul_bytes_and_garbage_headers_are_stored(tmp_path: Path, db_url: str) -> None:
    raw = b"Subject: a\x00b\xff\xfe\r\nFrom: \x00<x@y>\r\nMessage-ID: <\x00@\x00>\r\n\r\n\x00body"
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        stored = app.intake.accept(raw, SMTP)
        with app.sessions() as session:
            message = session.get_one(Message, stored.message_pk)
            assert message.status == "processed"
            assert message.subject is not None and "\x00" not in message.subject
            assert session.get_one(Blob, stored.sha256).data == raw


def test_concurrent_writers_store_the_same_bytes_once(tmp_path: Path, db_url: str) -> None:
    raw = RAW.replace(b"r1@", b"race@")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            barrier.wait()
            try:
                app.intake.receive(raw, Arrival("smtp", smtp_session=f"s{n}"))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with app.sessions() as session:
            assert session.scalar(select(Message.times_received)) == 4
            assert len(session.scalars(select(Message.id)).all()) == 1


def test_same_uid_twice_in_one_batch_is_recorded_once(tmp_path: Path, db_url: str) -> None:
    arrival = Arrival("imap", "acct", "INBOX", 7, 42)
    other = RAW.replace(b"r1@", b"r2@")
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        stored = app.intake.receive_many(
            [(RAW, arrival), (RAW, arrival), (other, Arrival("imap", "acct", "INBOX", 7, 43))]
        )
        assert [s.new for s in stored] == [True, False, True]
        with app.sessions() as session:
            assert session.scalars(select(Message.times_received)).all() == [1, 1]
            assert len(session.scalars(select(MessageSource.id)).all()) == 2


def test_process_many_isolates_a_message_whose_record_fails(tmp_path: Path, db_url: str) -> None:
    def picky(raw: bytes) -> Record:
        def record(session: Session, message: Message) -> None:
            message.subject = "seen"
            if b"poison" in raw:
                raise ValueError("cannot record this one")

        return record

    raws = [RAW.replace(b"r1@", f"b{n}@".encode()) for n in range(4)]
    raws[2] += b"poison\r\n"
    with migrated_app(settings_for(tmp_path, db_url)) as app:
        stored = app.intake.receive_many([(raw, SMTP) for raw in raws])
        intake = Intake(app.sessions, stages=[picky])
        outcomes = intake.process_many([s.message_pk for s in stored])
        assert [o.status for o in outcomes] == [
            "processed",
            "processed",
            "quarantined",
            "processed",
        ]
        with app.sessions() as session:
            rows = session.execute(select(Message.status, Message.subject).order_by(Message.id))
            assert [tuple(row) for row in rows] == [
                ("processed", "seen"),
                ("processed", "seen"),
                ("quarantined", "Report an MP in danger: Jane Doe"),
                ("processed", "seen"),
            ]


def test_one_arrival_per_file_path_even_when_two_runs_race(tmp_path: Path, db_url: str) -> None:
    from datetime import UTC, datetime

    import pytest
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    with migrated_app(settings_for(tmp_path, db_url)) as app:
        stored = app.intake.receive(RAW, Arrival("file", path="/archive/a.eml"))
        row = {"message_pk": stored.message_pk, "received_at": datetime.now(UTC)}
        with app.sessions.begin() as session:  # other channels may repeat freely
            session.execute(insert(MessageSource), [{**row, "channel": "smtp"}] * 2)
        # What a second, concurrent `ingest` of the same file would write: refused, so its
        # transaction retries and then sees the arrival as already recorded.
        with pytest.raises(IntegrityError), app.sessions.begin() as session:
            session.execute(
                insert(MessageSource), [{**row, "channel": "file", "path": "/archive/a.eml"}]
            )
