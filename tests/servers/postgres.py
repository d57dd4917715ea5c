"""PostgreSQL for tests: a throwaway cluster, or an existing server named by the environment.

The throwaway cluster lives in a temporary directory (data, log and Unix socket), listens on a
free 127.0.0.1 port, trusts every local connection and runs with fsync off: fast to create,
and nothing in it needs to survive the session.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from . import ServerStartError
from .ports import LOOPBACK, free_port, tail

ENV_URL = "MAILFLOW_TEST_POSTGRES_URL"
DRIVER = "postgresql+psycopg"
SUPERUSER = "postgres"
START_TIMEOUT = 30
_START_ATTEMPTS = 3  # free_port() can race with another process; retry with a new port
_DEBIAN_BINDIRS = Path("/usr/lib/postgresql")
_TEST_DATABASE = re.compile(r"mailflow_test_[0-9a-f]{12}")


@dataclass(frozen=True)
class PostgresBinaries:
    bindir: Path  # holds initdb and pg_ctl


def external_url() -> str | None:
    """The server named by ``MAILFLOW_TEST_POSTGRES_URL``, as a psycopg 3 URL, if set."""
    url = os.environ.get(ENV_URL, "").strip()
    return normalize_url(url) if url else None


def normalize_url(url: str) -> str:
    """Rewrite any PostgreSQL URL (``postgres://``, ``postgresql+x://``) to use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"{ENV_URL} is not a PostgreSQL URL: {parsed!r}")
    return parsed.set(drivername=DRIVER).render_as_string(hide_password=False)


def find_postgres() -> PostgresBinaries | None:
    """initdb and pg_ctl from PATH, else from Debian's /usr/lib/postgresql/<major>/bin."""
    pg_ctl = shutil.which("pg_ctl")
    candidates = [Path(pg_ctl).parent] if pg_ctl else []
    # Newest major version first.
    candidates += sorted(
        _DEBIAN_BINDIRS.glob("*/bin"),
        key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else -1,
        reverse=True,
    )
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return PostgresBinaries(bindir)
    return None


class PostgresCluster:
    """A throwaway cluster; use as a context manager, or call :meth:`start` and :meth:`close`."""

    host: str = LOOPBACK

    def __init__(self, binaries: PostgresBinaries) -> None:
        self._bindir = binaries.bindir
        # initdb and postgres refuse to run as root; as root we run them as the postgres user.
        self._run_as = _system_user("postgres") if os.geteuid() == 0 else None
        self._root = Path(tempfile.mkdtemp(prefix="mailflow-pg-"))
        self._started = False
        self.port = 0

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """URL of the cluster's ``postgres`` database, as the superuser (no password: trust)."""
        return f"{DRIVER}://{SUPERUSER}@{self.host}:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self._root / "postgres.log"

    @property
    def _data(self) -> Path:
        return self._root / "data"

    def start(self) -> None:
        self._initdb()
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            self.log_path.unlink(missing_ok=True)
            started = self._pg_ctl(
                "start",
                "--wait",
                f"--timeout={START_TIMEOUT}",
                f"--log={self.log_path}",
                f"--options=-p {self.port}",
            )
            if started.returncode == 0:
                self._started = True
                return
            log = tail(self.log_path)
            if "already in use" not in log or attempt == _START_ATTEMPTS:
                raise ServerStartError(
                    f"PostgreSQL did not start on {self.host}:{self.port}\n"
                    f"{started.stdout}\n--- {self.log_path} ---\n{log}"
                )

    def stop(self) -> None:
        """``pg_ctl stop -m immediate``: nothing in the cluster is worth a clean shutdown."""
        if not self._started:
            return
        self._started = False
        stopped = self._pg_ctl("stop", "--wait", "--mode=immediate")
        if stopped.returncode != 0:
            self._kill_postmaster()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def _initdb(self) -> None:
        if self._run_as is not None:
            os.chown(self._root, self._run_as.pw_uid, self._run_as.pw_gid)
        created = self._run(
            self._bindir / "initdb",
            f"--pgdata={self._data}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        if created.returncode != 0:
            raise ServerStartError(f"initdb failed:\n{created.stdout}")
        with (self._data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# Added by tests/servers/postgres.py: loopback only, speed over durability.\n"
                f"listen_addresses = '{self.host}'\n"
                f"unix_socket_directories = '{self._root}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )

    def _pg_ctl(self, action: str, *options: str) -> subprocess.CompletedProcess[str]:
        return self._run(self._bindir / "pg_ctl", action, f"--pgdata={self._data}", *options)

    def _run(self, program: Path, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(program), *args]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as.pw_name, "--", *command]
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=START_TIMEOUT * 4,
            check=False,
        )

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl could not stop the cluster: never leave a server behind."""
        try:
            pid = int((self._data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # its backends notice and exit


def _system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise ServerStartError(
            f"running the tests as root needs the system user {name!r} to run initdb "
            "(Debian's postgresql package creates it)"
        ) from exc


def _admin_engine(admin_url: str) -> sa.Engine:
    # CREATE/DROP DATABASE cannot run in a transaction; NullPool leaves no idle connection
    # behind that would block DROP DATABASE or the server's shutdown.
    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def create_database(admin_url: str) -> str:
    """Create a fresh, uniquely named database; return its URL (same server and user)."""
    name = f"mailflow_test_{secrets.token_hex(6)}"
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    """Drop a database made by :func:`create_database`, even if connections remain open."""
    name = make_url(url).database or ""
    # Never drop anything we did not create: MAILFLOW_TEST_POSTGRES_URL may be a shared server.
    if not _TEST_DATABASE.fullmatch(name):
        raise ValueError(f"refusing to drop {name!r}: not a database made by create_database()")
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
