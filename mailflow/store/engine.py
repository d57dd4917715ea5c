"""Engines, sessions and the translation of driver errors into mailflow's storage errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.orm import Session, sessionmaker

from mailflow.errors import StorageError, StorageUnavailable

# PostgreSQL SQLSTATEs that mean "not now" rather than "never": a read-only standby (25006)
# reaches us as InternalError, not OperationalError, but retrying later is still right.
_RETRYABLE_SQLSTATES = frozenset({"25006"})
# SQLite result codes (and their extended forms, e.g. SQLITE_BUSY_SNAPSHOT) meaning "not now":
# locked, read-only, cannot open the file, disk full or failing.
_RETRYABLE_SQLITE_CODES = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_PROTOCOL",
)
_MAX_DETAIL = 200
SQLITE_PAGE_SIZE = 16384
_DATABASE_ATTRIBUTE = "mailflow_database"


def make_engine(url: str | URL, *, busy_timeout_ms: int = 5000, echo: bool = False) -> Engine:
    """An Engine for `url` (SQLite file or PostgreSQL), configured the way mailflow needs.

    Bound parameters are never shown in logs or in exception text (`hide_parameters`): they
    may hold a reporter's name or address, which is confidential.
    """
    url = _normalise(make_url(url))
    if url.get_backend_name() == "sqlite":
        _create_parent_directory(url)
        engine = create_engine(url, echo=echo, hide_parameters=True)
        _configure_sqlite(engine, busy_timeout_ms)
    else:
        # pool_pre_ping: a connection that PostgreSQL (or a failover) closed while it sat in
        # the pool is replaced instead of failing the next intake transaction.
        engine = create_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True)
    database = describe_url(url)

    @event.listens_for(engine, "handle_error")
    def _name_database(context: ExceptionContext) -> None:
        # Lets translate_db_errors() name the database without being handed the engine.
        if context.sqlalchemy_exception is not None:
            setattr(context.sqlalchemy_exception, _DATABASE_ATTRIBUTE, database)

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit (no reload round-trip)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def describe_url(url: str | URL) -> str:
    """The URL as it may appear in messages and logs: the password replaced by ***."""
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def translate_db_errors(database: Engine | URL | str | None = None) -> Iterator[None]:
    """Turn driver errors raised inside the block into StorageUnavailable / StorageError.

    OperationalError (locked, read-only, refused, server gone) and other "retry later" states
    become StorageUnavailable; other driver errors StorageError. The message names the
    database without its password (taken from `database`, or from the engine that raised,
    when it was made by make_engine) and the driver's reason, never SQL parameters or row
    values. The original stays as __context__ but is not chained for display, because its
    text can quote row values (PostgreSQL's DETAIL lines do).

    IntegrityError passes through unchanged: a constraint conflict (two writers storing the
    same bytes) is a verdict on the data that the caller resolves, not a storage failure.
    """
    try:
        yield
    except exc.IntegrityError:
        raise
    except exc.DBAPIError as error:
        target = _database_name(database, error)
        reason = _reason(error)
        if _is_retryable(error):
            raise StorageUnavailable(
                f"database {target} is unavailable: {reason}",
                hint="check that the database is running and writable, then retry",
            ) from None
        raise StorageError(f"database {target} refused the operation: {reason}") from None


def _database_name(database: Engine | URL | str | None, error: exc.DBAPIError) -> str:
    if isinstance(database, Engine):
        return describe_url(database.url)
    if database is not None:
        return describe_url(database)
    tagged = getattr(error, _DATABASE_ATTRIBUTE, None)
    return tagged if isinstance(tagged, str) else "(unnamed)"


def _normalise(url: URL) -> URL:
    # Plain "postgresql://" means psycopg2 on SQLAlchemy 2.0; mailflow ships with psycopg 3.
    if url.drivername == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    return url


def _create_parent_directory(url: URL) -> None:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if in_memory or database.startswith("file:"):
        return  # nothing on disk, or a SQLite URI whose path is the caller's business
    Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (see
        # _on_begin); the PRAGMAs below must also run outside any transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # Wait for a competing writer (IMAP poller vs SMTP intake) instead of failing.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # 16 KiB pages, for a new database only (SQLite ignores this once the file has
            # pages): a message blob (typically 5-50 KB) then spans a few pages instead of a
            # chain of 4 KiB overflow pages. Measured on durable IMAP intake (10,000 messages,
            # 26 KiB mean): 10-13% less time, 15% less CPU; processing was faster too.
            cursor.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
            # WAL: readers never block the writer and vice versa.
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: every commit is on disk before it returns. SMTP intake answers 250 and the
            # IMAP poller moves its checkpoint (and may move the message on the server) right
            # after a commit, so that commit must survive a power loss too, not only a crash
            # of mailflow (which NORMAL would survive). Intake commits per batch, so this
            # costs one fsync per batch, not per message.
            cursor.execute("PRAGMA synchronous = FULL")
            # SQLite ignores foreign keys unless told otherwise, per connection.
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # The sqlite3 module's own (legacy) transaction handling runs SELECTs and DDL outside
        # transactions and does not nest SAVEPOINTs: migrations would not be atomic and
        # Session.begin_nested() would be broken. So SQLAlchemy begins every transaction.
        #
        # IMMEDIATE takes the write lock up front, waiting up to busy_timeout for it. With a
        # deferred BEGIN, a transaction that reads, then writes after another writer has
        # committed (two intake paths storing the same message) fails at once with "database
        # is locked": SQLite cannot upgrade a stale snapshot, and busy_timeout does not apply.
        # The price: transactions, even read-only ones, run one at a time, so keep them short.
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _is_retryable(error: exc.DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    sqlite_name = getattr(error.orig, "sqlite_errorname", None)
    if isinstance(sqlite_name, str):
        # sqlite3 raises OperationalError for mistakes too ("no such table"): go by the code.
        return sqlite_name.startswith(_RETRYABLE_SQLITE_CODES)
    if isinstance(error, exc.OperationalError):
        return True
    return _sqlstate(error.orig) in _RETRYABLE_SQLSTATES


def _sqlstate(orig: BaseException | None) -> str | None:
    diag = getattr(orig, "diag", None)
    state = getattr(diag, "sqlstate", None)
    return state if isinstance(state, str) else None


def _reason(error: exc.DBAPIError) -> str:
    """The driver's reason, without the SQL, its parameters or any quoted row values."""
    orig = error.orig
    diag = getattr(orig, "diag", None)
    if diag is not None and getattr(diag, "sqlstate", None):
        # PostgreSQL: the SQLSTATE and the names involved. The primary message can quote a
        # value ("invalid input syntax for type integer: ...") and DETAIL quotes whole rows.
        names = [
            f"{label} {value}"
            for label, value in (
                ("table", diag.table_name),
                ("column", diag.column_name),
                ("constraint", diag.constraint_name),
            )
            if value
        ]
        return " ".join([f"{type(orig).__name__} (SQLSTATE {diag.sqlstate})", *names])
    # SQLite's messages name tables, columns and constraints, never values; libpq's connection
    # errors name the host, never the password. Keep the first line only.
    first_line = next(iter(str(orig).strip().splitlines()), type(orig).__name__)
    return first_line[:_MAX_DETAIL]
