"""The storage layer: engine settings, constraints, column types and error translation.

Tests taking `db_url` run on SQLite and PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from mailflow.errors import StorageError, StorageUnavailable
from mailflow.store import make_engine, session_factory, translate_db_errors, upgrade
from mailflow.store.engine import SQLITE_PAGE_SIZE
from mailflow.store.models import (
    AuditLog,
    Base,
    Blob,
    Campaign,
    Case,
    Contact,
    Delivery,
    Message,
    MessageSource,
    Reporter,
    is_case_code,
)
from mailflow.store.types import UTCDateTime

SECRET = "confidential-reporter@example.org"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def _message(session: Session, raw: bytes) -> Message:
    digest = hashlib.sha256(raw).hexdigest()
    session.add(Blob(sha256=digest, size=len(raw), data=raw))
    message = Message(sha256=digest, message_id="<m@example.org>")
    session.add(message)
    session.flush()
    return message


# -- engine -------------------------------------------------------------------------------------


def test_sqlite_pragmas_are_in_force_on_every_new_connection(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'm.db'}", busy_timeout_ms=1234)
    try:
        # Two connections checked out at once: the pool cannot hand back the same one.
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                pragma = connection.exec_driver_sql
                assert pragma("PRAGMA journal_mode").scalar() == "wal"
                assert pragma("PRAGMA foreign_keys").scalar() == 1
                assert pragma("PRAGMA busy_timeout").scalar() == 1234
                assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
                connection.commit()  # transactions take the write lock: end this one
    finally:
        engine.dispose()
    assert (tmp_path / "deep" / "dir" / "m.db").is_file()  # parent directories were created


def test_new_sqlite_databases_get_large_pages_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(old)) as conn:  # made before mailflow chose 16 KiB
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (x)")
    for path, size in ((tmp_path / "new.db", SQLITE_PAGE_SIZE), (old, 4096)):
        engine = make_engine(f"sqlite:///{path}")
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS u (y)")
                connection.exec_driver_sql("INSERT INTO u VALUES (1)")
                assert connection.exec_driver_sql("PRAGMA page_size").scalar() == size
        finally:
            engine.dispose()


def test_sqlite_ddl_and_savepoints_are_transactional(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with pytest.raises(RuntimeError), engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            raise RuntimeError("roll back")
        with engine.begin() as connection:
            tables = connection.exec_driver_sql("SELECT name FROM sqlite_master").scalars()
            assert "t" not in list(tables)  # the CREATE TABLE was rolled back
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            nested = connection.begin_nested()
            connection.exec_driver_sql("INSERT INTO t VALUES (2)")
            nested.rollback()
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT x FROM t").scalars().all() == [1]
    finally:
        engine.dispose()


def test_sqlite_read_then_write_waits_for_a_concurrent_writer(tmp_path: Path) -> None:
    # Two intake paths storing the same message both read, then write. With a deferred BEGIN
    # the second writer fails at once ("database is locked", stale snapshot); make_engine's
    # BEGIN IMMEDIATE makes it wait for the first instead.
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}", busy_timeout_ms=5000)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        other_done = threading.Event()
        errors: list[BaseException] = []

        def other_writer() -> None:
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            except BaseException as error:
                errors.append(error)
            finally:
                other_done.set()

        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT count(*) FROM t").scalar()
            thread = threading.Thread(target=other_writer)
            thread.start()
            other_done.wait(0.3)  # give the other writer the chance to commit first
            connection.exec_driver_sql("INSERT INTO t VALUES (2)")
            connection.commit()
        thread.join(10)
        assert errors == []
        with engine.connect() as connection:
            assert sorted(connection.exec_driver_sql("SELECT x FROM t").scalars()) == [1, 2]
    finally:
        engine.dispose()


def test_plain_postgresql_url_uses_psycopg_3() -> None:
    engine = make_engine("postgresql://mailflow@db.invalid/mailflow")
    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.pool._pre_ping


def test_sessions_keep_objects_loaded_after_commit(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        entry = AuditLog(actor="test", action="create", entity="case")
        session.add(entry)
        session.commit()
        assert "actor" in entry.__dict__  # not expired: readable without a new query


# -- constraints --------------------------------------------------------------------------------


def test_foreign_key_violation_is_rejected(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        session.add(Message(sha256="0" * 64))  # no such blob


def test_foreign_key_closing_the_messages_deliveries_cycle_holds(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session, session.begin():
        message = _message(session, b"bounce")
        delivery = Delivery(
            in_reply_to_message_pk=message.id,
            purpose="ack",
            to_address="x@example.org",
            language="en",
            message_id="<d1@mailflow>",
            verp_token="v1",
        )
        session.add(delivery)
        session.flush()
        message.delivery_id = delivery.id
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        session.get_one(Message, message.id).delivery_id = delivery.id + 1000


def test_messages_sha256_is_unique(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, session.begin():
        first = _message(session, b"same bytes")
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        session.add(Message(sha256=first.sha256, message_id="<other@example.org>"))
    with sessions() as session:
        # A Message-ID may repeat: a different message can reuse it.
        second = _message(session, b"other bytes")
        assert second.message_id == first.message_id


def _source(message_pk: int, **fields: object) -> MessageSource:
    return MessageSource(message_pk=message_pk, **fields)


def test_message_sources_imap_uid_is_unique(sessions: sessionmaker[Session]) -> None:
    uid = {"channel": "imap", "account": "a", "mailbox": "INBOX", "uidvalidity": 7, "uid": 42}
    with sessions() as session, session.begin():
        pk = _message(session, b"imap").id
        session.add(_source(pk, **uid))
        session.add(_source(pk, **{**uid, "uidvalidity": 8}))  # a new UIDVALIDITY era
        session.add(_source(pk, channel="smtp", smtp_session="s1"))  # NULLs never collide
        session.add(_source(pk, channel="smtp", smtp_session="s2"))
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        session.add(_source(pk, **uid))
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        session.add(_source(pk, **{**uid, "uid": None}))  # would slip past the unique key


def test_check_constraints_reject_unknown_states(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        message = _message(session, b"status")
        message.status = "deleted"
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        # Not approved, so it may not leave the draft state.
        session.add(Campaign(name="TUR", purpose="decision", created_by="x", status="sending"))


def test_case_codes_are_validated() -> None:
    assert all(map(is_case_code, ["TUR-69", "BDI-42", "UGA-Coll-01", "VEN-10"]))
    assert not any(map(is_case_code, ["MDV16", "MLD/16", "tur-69", "TUR-", "UGA-Coll-1"]))
    with pytest.raises(ValueError, match="case code"):
        Case(code="MLD/16", country="MDV")


def test_contact_addresses_are_lower_cased() -> None:
    assert Contact(email=" Speaker@Parliament.EXAMPLE ", role="speaker").email == (
        "speaker@parliament.example"
    )


def test_reporters_table_is_marked_confidential() -> None:
    assert Base.metadata.tables["reporters"].info["confidential"] is True


# -- UTCDateTime --------------------------------------------------------------------------------


def test_utc_datetime_round_trips_aware_datetimes(sessions: sessionmaker[Session]) -> None:
    geneva = timezone(timedelta(hours=2))
    written = datetime(2026, 6, 1, 14, 30, 15, 123456, tzinfo=geneva)
    with sessions() as session, session.begin():
        entry = AuditLog(at=written, actor="t", action="a", entity="e")
        session.add(entry)
    with sessions() as session:
        read = session.get_one(AuditLog, entry.id).at
        assert read == written
        assert read.utcoffset() == timedelta(0)
        assert read.hour == 12  # normalised to UTC
        later = written + timedelta(seconds=1)
        found = session.scalars(select(AuditLog.id).where(AuditLog.at < later)).all()
        assert found == [entry.id]


def test_utc_datetime_rejects_naive_datetimes(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(StatementError, match="naive"), sessions() as session:
        session.add(AuditLog(at=datetime(2026, 6, 1, 12), actor="t", action="a", entity="e"))
        session.flush()


def test_utc_datetime_rejects_strings_and_tags_stored_values_utc() -> None:
    dialect = sqlite.dialect()
    with pytest.raises(TypeError):
        UTCDateTime().process_bind_param("2026-06-01", dialect)  # type: ignore[arg-type]
    stored = UTCDateTime().process_result_value(datetime(2026, 1, 1), dialect)
    assert stored == datetime(2026, 1, 1, tzinfo=UTC)


# -- error translation --------------------------------------------------------------------------


def test_write_to_read_only_sqlite_is_storage_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    upgrade(f"sqlite:///{path}")
    # mode=ro rather than chmod: root (as in CI containers) may write to a 0444 file.
    engine = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with (
            pytest.raises(StorageUnavailable) as caught,
            translate_db_errors(),
            Session(engine) as session,
            session.begin(),
        ):
            session.add(Reporter(name="A. Reporter", email=SECRET))
        message = str(caught.value)
        assert "readonly" in message
        assert str(path) in message  # names the database, taken from the engine that failed
        assert SECRET not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    finally:
        engine.dispose()


def test_unreachable_postgresql_is_unavailable_and_password_is_hidden() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine(f"postgresql://mailflow:s3cret-pw@127.0.0.1:{port}/mailflow")
    try:
        with pytest.raises(StorageUnavailable) as caught, translate_db_errors(engine):
            engine.connect()
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert f"mailflow:***@127.0.0.1:{port}/mailflow" in message
    assert caught.value.hint


def test_mistakes_are_storage_error_not_unavailable(engine: Engine) -> None:
    with (
        pytest.raises(StorageError) as caught,
        translate_db_errors(engine),
        engine.connect() as connection,
    ):
        connection.execute(text("SELECT * FROM no_such_table"))
    assert not isinstance(caught.value, StorageUnavailable)
    assert "no_such_table" in str(caught.value) or "42P01" in str(caught.value)


def test_integrity_errors_pass_through_for_the_caller(engine: Engine) -> None:
    # Intake retries on IntegrityError (two writers storing the same bytes).
    with (
        pytest.raises(IntegrityError) as caught,
        translate_db_errors(engine),
        Session(engine) as session,
    ):
        session.add(Message(sha256="f" * 64, subject=SECRET))
        session.commit()
    # Its text may quote the key (PostgreSQL's DETAIL), but never the bound parameters.
    assert "parameters hidden" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_postgresql_errors_never_quote_row_values(postgres_url: str) -> None:
    # PostgreSQL's messages can quote values (SQLite's name tables and columns only).
    engine = make_engine(postgres_url)
    with (
        pytest.raises(StorageError) as caught,
        translate_db_errors(engine),
        engine.connect() as connection,
    ):
        connection.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": SECRET})
    engine.dispose()
    assert SECRET not in str(caught.value)
    assert "22P02" in str(caught.value)  # the SQLSTATE says what went wrong
