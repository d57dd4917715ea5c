"""Fixtures that start real servers on loopback: Dovecot, an SMTP sink and PostgreSQL.

Dovecot and PostgreSQL start once per session, lazily (only if a selected test needs them);
each test gets its own IMAP user or database. The SMTP sink is cheap and starts per test.

Tests that use Dovecot or PostgreSQL are marked ``integration`` automatically (and should say
so themselves too). When a server cannot run here they are skipped, except under ``CI=true``,
where they fail and a skipped integration test fails the whole session (servers/ci_guard.py).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

# Test code imports `tests.servers`. `python -m pytest` puts the working directory on sys.path,
# the bare `pytest` script does not; make the repository root importable either way.
REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tests.servers import ci_guard, require  # noqa: E402
from tests.servers.dovecot import Credentials, DovecotServer, find_dovecot  # noqa: E402
from tests.servers.postgres import (  # noqa: E402
    PostgresCluster,
    create_database,
    drop_database,
    external_url,
    find_postgres,
)
from tests.servers.smtp_sink import SMTPSink  # noqa: E402

# Fixtures that need a real external server; a test using any of them is an integration test.
INTEGRATION_FIXTURES = frozenset({"dovecot", "imap_user", "postgres_server", "postgres_url"})


def pytest_configure(config: pytest.Config) -> None:
    ci_guard.install(config)
    _tear_down_on_sigterm()


def _tear_down_on_sigterm() -> None:
    """Let SIGTERM (``timeout``, a CI runner) interrupt pytest the way Ctrl-C does.

    Interrupted, pytest still tears down its fixtures, so Dovecot and PostgreSQL are stopped;
    killed by the default SIGTERM action it would leave them running. A handler installed by
    someone else is left alone.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set signal handlers

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


# tryfirst: the marker must be in place before `-m "not integration"` deselects.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


# -- Dovecot (IMAP) ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """A Dovecot IMAP server on 127.0.0.1 for the whole session; see servers/dovecot.py."""
    binary = find_dovecot()
    require(binary is not None, "dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    assert binary is not None
    with DovecotServer(binary) as server:
        yield server


@pytest.fixture
def imap_user(dovecot: DovecotServer) -> Credentials:
    """A fresh IMAP user with an empty mailbox: ``username, password = imap_user``."""
    return dovecot.new_user()


# -- SMTP ----------------------------------------------------------------------------------------


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    """An aiosmtpd sink on 127.0.0.1 recording what it accepts; see servers/smtp_sink.py."""
    with SMTPSink() as sink:
        yield sink


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """SQLAlchemy URL of a PostgreSQL server's maintenance database, for the whole session.

    ``MAILFLOW_TEST_POSTGRES_URL`` names an existing server; otherwise a throwaway cluster is
    created with the local PostgreSQL binaries.
    """
    url = external_url()
    if url is not None:
        yield url
        return
    binaries = find_postgres()
    require(
        binaries is not None,
        "PostgreSQL binaries (initdb, pg_ctl) not found and MAILFLOW_TEST_POSTGRES_URL is unset "
        "(Debian: apt-get install postgresql)",
    )
    assert binaries is not None
    with PostgresCluster(binaries) as cluster:
        yield cluster.url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """URL of a new, empty database for this test only; dropped afterwards."""
    url = create_database(postgres_server)
    yield url
    drop_database(postgres_server, url)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for the test, once per backend: SQLite file, then PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mailflow.db'}"
    # Looked up lazily so that SQLite-only runs never start PostgreSQL.
    url: str = request.getfixturevalue("postgres_url")
    return url
