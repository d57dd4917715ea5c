"""The contenders of ``bench/intake``: mbsync, and mailflow into SQLite or PostgreSQL.

Every run starts cold: a new empty Maildir for mbsync, a new database (schema created, untimed)
for mailflow. Before each timed run the page cache is flushed to disk (``sync``), so no contender
pays for the previous one's writes. Each run is checked afterwards: mbsync must have copied every
message, mailflow must have stored every message exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from _dovecot_fill import Mailbox
from _measure import Run, run
from sqlalchemy.pool import NullPool

from tests.servers.postgres import PostgresCluster, create_database, drop_database

ACCOUNT = "bench"
MAILFLOW = (sys.executable, "-m", "mailflow")


@dataclass(frozen=True)
class Outcome:
    """One row of the table."""

    contender: str
    messages: int
    seconds: float
    peak_rss_kib: int
    tree_rss_kib: int
    note: str
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Features:
    """What the installed ``mailflow`` can do; the lead is adding the last two."""

    defer_flag: bool  # mailflow poll --defer-processing
    process_command: bool  # mailflow process
    workers_option: bool  # mailflow process --workers N


@dataclass(frozen=True)
class Workspace:
    """Where a run writes: its own directory, and the logs directory shared by all runs."""

    root: Path
    logs: Path

    def fresh(self, name: str) -> Path:
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


class Target(Protocol):
    """A database mailflow stores into; ``fresh`` hands out a new, empty one each time."""

    label: str

    def fresh(self, directory: Path) -> str: ...

    def settle(self) -> None:
        """Write out what earlier work left pending, so the next timed run does not pay it."""

    def discard(self, url: str) -> None: ...


class SqliteTarget:
    label = "SQLite"

    def fresh(self, directory: Path) -> str:
        return f"sqlite:///{directory / 'mailflow.db'}"

    def settle(self) -> None:
        """Nothing beyond the sync() before every timed run."""

    def discard(self, url: str) -> None:
        """The database lives in the run's directory, removed with it."""


class PostgresTarget:
    label = "PostgreSQL"

    def __init__(self, cluster: PostgresCluster) -> None:
        self._cluster = cluster

    def fresh(self, directory: Path) -> str:
        return create_database(self._cluster.url)

    def settle(self) -> None:
        """A CHECKPOINT: every run starts with clean shared buffers and a fresh WAL segment."""
        engine = sa.create_engine(
            self._cluster.url, isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("CHECKPOINT"))
        finally:
            engine.dispose()

    def discard(self, url: str) -> None:
        drop_database(self._cluster.url, url)


# -- mbsync ------------------------------------------------------------------------------------


def mbsync_config(mailbox: Mailbox, maildir: Path) -> str:
    """Plaintext IMAP on loopback, everything else at mbsync's defaults (FSync yes)."""
    return f"""\
IMAPAccount {ACCOUNT}
Host {mailbox.server.host}
Port {mailbox.server.port}
User {mailbox.user}
Pass {mailbox.password}
SSLType None
AuthMechs LOGIN

IMAPStore far
Account {ACCOUNT}

MaildirStore near
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel {ACCOUNT}
Far :far:
Near :near:
Patterns {mailbox.folder}
Sync Pull
Create Near
SyncState *
"""


def run_mbsync(mailbox: Mailbox, expected: int, space: Workspace) -> Outcome:
    directory = space.fresh("mbsync")
    maildir = directory / "mail"
    maildir.mkdir()  # mbsync opens the store's root; it creates the folder itself
    config = directory / "mbsyncrc"
    config.write_text(mbsync_config(mailbox, maildir), encoding="utf-8")
    config.chmod(0o600)
    os.sync()
    result = run(
        ["mbsync", "-c", str(config), ACCOUNT],
        env=os.environ,
        logs=space.logs,
        name="mbsync",
        cwd=directory,
    )
    copied = count_maildir(maildir / mailbox.folder)
    error = _run_error(result) or _count_error("mbsync copied", copied, expected)
    shutil.rmtree(directory, ignore_errors=True)
    return Outcome(
        "mbsync",
        expected,
        result.seconds,
        result.peak_rss_kib,
        result.tree_rss_kib,
        "IMAP -> Maildir, default FSync yes",
        error,
    )


def count_maildir(folder: Path) -> int:
    return sum(
        1
        for sub in ("cur", "new")
        if (folder / sub).is_dir()
        for entry in os.scandir(folder / sub)
        if entry.is_file()
    )


# -- mailflow ----------------------------------------------------------------------------------


def detect_features() -> Features:
    poll = _help("poll")
    process = _help("process")
    return Features(
        defer_flag="--defer-processing" in poll,
        process_command=bool(process),
        workers_option="--workers" in process,
    )


def mailflow_config(url: str, mailbox: Mailbox, batch_size: int, data_dir: Path) -> str:
    def q(value: object) -> str:
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string

    return f"""\
# Generated by bench/intake.
[service]
data_dir = {q(data_dir)}

[database]
url = {q(url)}

[smtp_intake]
enabled = false

[[imap_accounts]]
name = {q(ACCOUNT)}
host = {q(mailbox.server.host)}
port = {mailbox.server.port}
security = "plain"
username = {q(mailbox.user)}
folders = [{q(mailbox.folder)}]
batch_size = {batch_size}
"""


@dataclass(frozen=True)
class MailflowRun:
    """How to run one mailflow contender."""

    target: Target
    features: Features
    batch_size: int
    end_to_end: bool = False
    workers: int = 2


def run_mailflow(mailbox: Mailbox, expected: int, spec: MailflowRun, space: Workspace) -> Outcome:
    kind = "end-to-end" if spec.end_to_end else "durable intake"
    name = f"mailflow-{'e2e' if spec.end_to_end else 'durable'}-{spec.target.label.lower()}"
    contender = f"mailflow {kind} -> {spec.target.label}"
    directory = space.fresh(name)
    url = spec.target.fresh(directory)
    try:
        config = directory / "mailflow.toml"
        config.write_text(
            mailflow_config(url, mailbox, spec.batch_size, directory), encoding="utf-8"
        )
        env = _mailflow_env(mailbox.password)
        prepared = run(
            [*MAILFLOW, "db", "upgrade", "--config", str(config)],
            env=env,
            logs=space.logs,
            name=f"{name}-schema",
            cwd=directory,
        )
        if not prepared.ok:
            return _failed(contender, expected, "creating the schema", prepared)
        runs, note = _timed_runs(spec, config, env, space, name, directory)
        failed = next((r for r in runs if not r.ok), None)
        error = _run_error(failed) if failed else verify_store(url, expected, spec.end_to_end)
    finally:
        spec.target.discard(url)
        shutil.rmtree(directory, ignore_errors=True)
    return Outcome(
        contender,
        expected,
        sum(r.seconds for r in runs),
        max(r.peak_rss_kib for r in runs),
        max(r.tree_rss_kib for r in runs),
        note,
        error,
    )


def _timed_runs(
    spec: MailflowRun, config: Path, env: Mapping[str, str], space: Workspace, name: str, cwd: Path
) -> tuple[list[Run], str]:
    features = spec.features
    options = ["--config", str(config)]
    defer = features.defer_flag and (features.process_command or not spec.end_to_end)
    poll = ["poll", "--once", *(["--defer-processing"] if defer else [])]
    _settle(spec.target)
    runs = [run([*MAILFLOW, *poll, *options], env=env, logs=space.logs, name=name, cwd=cwd)]
    batch = f"batch_size={spec.batch_size}"
    if not spec.end_to_end:
        if defer:
            return runs, f"poll --once --defer-processing, {batch}"
        return runs, f"poll --once, {batch}; processing inline: flag not available yet"
    if not features.process_command:
        return runs, f"poll --once, {batch}, processing inline (1 core): no `mailflow process` yet"
    workers = ["--workers", str(spec.workers)] if features.workers_option else []
    process = ["process", *workers]
    _settle(spec.target)
    runs.append(
        run(
            [*MAILFLOW, *process, *options],
            env=env,
            logs=space.logs,
            name=f"{name}-process",
            cwd=cwd,
        )
    )
    note = f"{' '.join(poll)} ({runs[0].seconds:.1f} s)"
    note += f" + {' '.join(process)} ({runs[1].seconds:.1f} s)"
    if not features.workers_option:
        note += "; no --workers option yet"
    return runs, note


def _settle(target: Target) -> None:
    target.settle()
    os.sync()


def _mailflow_env(password: str) -> dict[str, str]:
    """The caller's environment without any MAILFLOW_* setting that could redirect the run."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILFLOW_")}
    env[f"MAILFLOW_IMAP_{ACCOUNT.upper()}_PASSWORD"] = password
    return env


def verify_store(url: str, expected: int, processed: bool) -> str | None:
    """None if every message is stored exactly once (and processed, if asked); else the problem.

    Plain SQL on the tables' names, not mailflow's models: those are being changed right now.
    """
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows, ids, hashes = conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT message_id), count(DISTINCT sha256) "
                    "FROM messages"
                )
            ).one()
            sources, uids = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT uid) FROM message_sources")
            ).one()
            done = conn.execute(
                sa.text("SELECT count(*) FROM messages WHERE status = 'processed'")
            ).scalar_one()
            # The folder is new, so its UIDs are 1..expected: the checkpoint must reach the end.
            last_uid = conn.execute(sa.text("SELECT max(last_uid) FROM imap_checkpoints")).scalar()
    finally:
        engine.dispose()
    checks = [
        ("rows in messages", rows),
        ("distinct Message-IDs", ids),
        ("distinct sha256", hashes),
        ("rows in message_sources", sources),
        ("distinct UIDs", uids),
        ("checkpoint last UID", last_uid or 0),
    ]
    if processed:
        checks.append(("processed messages", done))
    problems = [f"{label} {count} != {expected}" for label, count in checks if count != expected]
    return "; ".join(problems) or None


def _help(command: str) -> str:
    """``mailflow COMMAND --help``, or '' when the command does not exist."""
    done = subprocess.run(
        [*MAILFLOW, command, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=_mailflow_env(""),
    )
    return done.stdout if done.returncode == 0 and done.stdout.startswith("usage:") else ""


def _failed(contender: str, expected: int, step: str, result: Run) -> Outcome:
    return Outcome(contender, expected, 0.0, 0, 0, step, f"{step}: {_run_error(result)}")


def _run_error(result: Run | None) -> str | None:
    if result is None or result.ok:
        return None
    tail = result.stderr.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    return f"exit {result.returncode}: {' | '.join(tail)}"


def _count_error(what: str, count: int, expected: int) -> str | None:
    return None if count == expected else f"{what} {count} messages, expected {expected}"
