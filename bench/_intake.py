"""bench/intake: durable IMAP intake, mailflow against mbsync on the same Dovecot (issue #3).

See bench/README.md for what each row means. Run as ``bench/intake`` (this module is its body:
ruff does not look at files without a .py suffix).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import FrameType

import sqlalchemy as sa
from _contenders import (
    Features,
    MailflowRun,
    Outcome,
    PostgresTarget,
    SqliteTarget,
    Target,
    Workspace,
    detect_features,
    run_mailflow,
    run_mbsync,
)
from _dovecot_fill import FillReport, fill
from _measure import check_gnu_time
from sqlalchemy.pool import NullPool

from mailflow import __version__
from mailflow.store.engine import make_engine
from tests.servers.dovecot import DovecotServer, find_dovecot
from tests.servers.ports import wait_until
from tests.servers.postgres import PostgresCluster, find_postgres

ROOT = Path(__file__).resolve().parent.parent
FOLDER = "Bench"
SCALE_TARGET = 1.25  # peak memory at the larger size within 25% of the smaller
DURABLE_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")
SQLITE_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
Job = tuple[str, Callable[[], Outcome]]  # label, and the run that produces one table row


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    check_gnu_time()
    if not args.scale and shutil.which("mbsync") is None:
        raise SystemExit("bench: mbsync is missing (apt-get install isync)")
    if args.tmpdir:
        tempfile.tempdir = str(args.tmpdir)  # the servers' directories too
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        try:
            return run_scale(args, stack) if args.scale else run_comparison(args, stack)
        except KeyboardInterrupt:
            print("\nbench: interrupted; stopping servers and removing files", file=sys.stderr)
            return 130


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/intake",
        description="Time mbsync and mailflow copying the same Dovecot folder, cold, in one run.",
    )
    parser.add_argument(
        "--messages",
        type=_positive,
        default=10_000,
        metavar="N",
        help="messages in the folder (default: 10000)",
    )
    parser.add_argument("--seed", type=int, default=3, help="corpus seed (default: 3)")
    parser.add_argument(
        "--batch-size", type=_positive, default=400, help="mailflow batch_size (default: 400)"
    )
    parser.add_argument(
        "--workers", type=_positive, default=2, help="mailflow process --workers (default: 2)"
    )
    parser.add_argument(
        "--backends",
        type=_backends,
        default=("sqlite", "postgresql"),
        help="comma-separated: sqlite, postgresql (default: both)",
    )
    parser.add_argument(
        "--fill",
        choices=("maildir", "append"),
        default="maildir",
        help="write Maildir files directly (default) or IMAP MULTIAPPEND",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="instead: durable intake into SQLite at each --scale-sizes, compare peak memory",
    )
    parser.add_argument(
        "--scale-sizes",
        type=_sizes,
        default=(10_000, 50_000),
        metavar="N,M",
        help="comma-separated folder sizes for --scale (default: 10000,50000)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        metavar="K",
        help="run each contender K times and report the median (default: 1)",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        metavar="DIR",
        help="copy every command's stdout/stderr there before cleaning up",
    )
    parser.add_argument(
        "--tmpdir", type=Path, help="parent of every temporary directory (must not be tmpfs)"
    )
    return parser.parse_args(argv)


# -- the two modes -----------------------------------------------------------------------------


def run_comparison(args: argparse.Namespace, stack: ExitStack) -> int:
    dovecot = start_dovecot(stack)
    postgres = start_postgres(stack) if "postgresql" in args.backends else None
    space = workspace(stack, args.logs)
    features = detect_features()
    mailboxes, report = fill(dovecot, {FOLDER: args.messages}, args.seed, args.fill)
    print_header(args, report, space, postgres, features)
    targets: list[Target] = [SqliteTarget()] if "sqlite" in args.backends else []
    if postgres is not None:
        targets.append(PostgresTarget(postgres))
    mailbox, count = mailboxes[0], args.messages
    jobs: list[Job] = [("mbsync", partial(run_mbsync, mailbox, count, space))]
    for end_to_end in (False, True):
        for target in targets:
            spec = MailflowRun(target, features, args.batch_size, end_to_end, args.workers)
            jobs.append((_describe(spec), partial(run_mailflow, mailbox, count, spec, space)))
    outcomes = run_jobs(jobs, args.repeat)
    print_table(outcomes, baseline=outcomes[0])
    return 0 if all(outcome.error is None for outcome in outcomes) else 1


def run_scale(args: argparse.Namespace, stack: ExitStack) -> int:
    dovecot = start_dovecot(stack)
    space = workspace(stack, args.logs)
    features = detect_features()
    sizes = args.scale_sizes  # sorted, distinct
    folders = {f"{FOLDER}{size}": size for size in sizes}
    mailboxes, report = fill(dovecot, folders, args.seed, args.fill)
    print_header(args, report, space, None, features)
    spec = MailflowRun(SqliteTarget(), features, args.batch_size)
    jobs: list[Job] = [
        (f"{_describe(spec)}, {size:,} messages", partial(run_mailflow, mailbox, size, spec, space))
        for mailbox, size in zip(mailboxes, sizes, strict=True)
    ]
    outcomes = run_jobs(jobs, args.repeat)
    print_table(outcomes, baseline=None)
    small, large = outcomes[0], outcomes[-1]
    ratio = large.peak_rss_kib / small.peak_rss_kib if small.peak_rss_kib else float("inf")
    verdict = "OK" if ratio <= SCALE_TARGET else "OVER TARGET"
    print(
        f"\npeak RSS at {large.messages:,} / at {small.messages:,} messages: {ratio:.2f} "
        f"(target <= {SCALE_TARGET:.2f}): {verdict}"
    )
    failed = any(outcome.error for outcome in outcomes)
    return 1 if failed or ratio > SCALE_TARGET else 0


def run_jobs(jobs: Sequence[Job], repeat: int) -> list[Outcome]:
    """Run each job ``repeat`` times in turn; keep the run with the median time.

    A failed run is kept instead, so a failure is never hidden by a later success.
    """
    outcomes = []
    for step, (label, work) in enumerate(jobs, start=1):
        runs = []
        for attempt in range(1, repeat + 1):
            counter = f" (run {attempt}/{repeat})" if repeat > 1 else ""
            print(
                f"[{step}/{len(jobs)}] {label}{counter} ...", end=" ", file=sys.stderr, flush=True
            )
            outcome = work()
            status = f"FAILED: {outcome.error}" if outcome.error else "ok"
            print(f"{outcome.seconds:.1f} s, {status}", file=sys.stderr, flush=True)
            runs.append(outcome)
        outcomes.append(_median(runs))
    return outcomes


def _median(runs: list[Outcome]) -> Outcome:
    failed = [outcome for outcome in runs if outcome.error]
    if failed or len(runs) == 1:
        return (failed or runs)[0]
    ranked = sorted(runs, key=lambda outcome: outcome.seconds)
    spread = f"median of {len(runs)}, {ranked[0].seconds:.1f}-{ranked[-1].seconds:.1f} s"
    median = ranked[len(ranked) // 2]
    return replace(median, note=f"{median.note}; {spread}")


# -- servers and workspace ---------------------------------------------------------------------


def start_dovecot(stack: ExitStack) -> DovecotServer:
    binary = find_dovecot()
    if binary is None:
        raise SystemExit("bench: dovecot is missing (apt-get install dovecot-imapd)")
    return stack.enter_context(DovecotServer(binary))


def start_postgres(stack: ExitStack) -> PostgresCluster | None:
    binaries = find_postgres()
    if binaries is None:
        print("bench: PostgreSQL not found (initdb, pg_ctl); skipping its rows", file=sys.stderr)
        return None
    cluster = stack.enter_context(PostgresCluster(binaries))
    make_durable(cluster)
    return cluster


def make_durable(cluster: PostgresCluster) -> None:
    """The test fixture trades durability for speed (fsync off); the benchmark must not."""
    engine = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            for setting in DURABLE_SETTINGS:
                conn.execute(sa.text(f"ALTER SYSTEM SET {setting} = on"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))
        if not wait_until(lambda: _all_on(engine), timeout=10):
            raise SystemExit("bench: PostgreSQL did not turn fsync back on")
    finally:
        engine.dispose()


def _all_on(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return all(conn.execute(sa.text(f"SHOW {s}")).scalar() == "on" for s in DURABLE_SETTINGS)


def workspace(stack: ExitStack, keep_logs: Path | None) -> Workspace:
    """A temporary directory for every run's files, removed on exit (logs copied first if asked)."""
    root = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    stack.callback(shutil.rmtree, root, ignore_errors=True)
    logs = root / "logs"
    logs.mkdir()
    if keep_logs is not None:
        stack.callback(shutil.copytree, logs, keep_logs, dirs_exist_ok=True)
    return Workspace(root, logs)


# -- output ------------------------------------------------------------------------------------


def print_header(
    args: argparse.Namespace,
    report: FillReport,
    space: Workspace,
    postgres: PostgresCluster | None,
    features: Features,
) -> None:
    corpus = report.corpus
    mib = corpus.total_bytes / 2**20
    how = "Maildir files written" if report.method == "maildir" else "IMAP MULTIAPPEND"
    lines = [
        "bench/intake: durable IMAP intake, mailflow against mbsync (issue #3)",
        f"machine   {_machine()}",
        f"python    {platform.python_version()}, mailflow {_mailflow_revision()}",
        f"sqlite    {sqlite3.sqlite_version} ({_sqlite_settings(space)})",
        f"postgres  {_postgres_settings(postgres)}",
        f"servers   Dovecot {_version(['dovecot', '--version'])}, "
        f"{_version(['mbsync', '--version'])}",
        f"features  poll --defer-processing: {_yes(features.defer_flag)}; "
        f"process: {_yes(features.process_command)}; "
        f"process --workers: {_yes(features.workers_option)}",
        f"work dir  {space.root} on {_filesystem(space.root)}",
        f"corpus    {corpus.messages:,} messages, seed {args.seed}: {mib:,.1f} MiB "
        f"(mean {corpus.total_bytes / corpus.messages / 1024:.1f} KiB), "
        f"{corpus.attachments:,} with a 200 KB attachment",
        f"fill      {how} in {report.fill_seconds:.1f} s, indexed by Dovecot in "
        f"{report.index_seconds:.1f} s (untimed)",
        f"load      {_load()} before the timed runs",
    ]
    print("\n".join(lines), flush=True)


def print_table(outcomes: Sequence[Outcome], baseline: Outcome | None) -> None:
    headers = ["contender", "messages", "seconds", "msg/s"]
    if baseline is not None:
        headers.append("x mbsync")
    headers += ["peak RSS", "tree RSS", "what was timed"]
    rows = [_row(outcome, baseline) for outcome in outcomes]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    numeric = {1, 2, 3, 4, 5, 6} if baseline is not None else {1, 2, 3, 4, 5}
    print()
    for row in [headers, ["-" * width for width in widths], *rows]:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    print(
        "\nx mbsync: seconds / mbsync's seconds (lower is better). peak RSS: largest single "
        "process (/usr/bin/time %M);\ntree RSS: peak of the summed RSS of all its processes "
        "(sampled every 0.1 s)."
        if baseline is not None
        else "\npeak RSS: largest single process (/usr/bin/time %M); tree RSS: sampled sum."
    )
    print(f"load: {_load()} at the end")
    for outcome in outcomes:
        if outcome.error:
            print(f"FAILED {outcome.contender}: {outcome.error}")


def _row(outcome: Outcome, baseline: Outcome | None) -> list[str]:
    row = [
        outcome.contender,
        f"{outcome.messages:,}",
        f"{outcome.seconds:.1f}",
        f"{outcome.rate:,.0f}",
    ]
    if baseline is not None:
        usable = baseline.error is None and outcome.error is None and baseline.seconds > 0
        row.append(f"{outcome.seconds / baseline.seconds:.2f}" if usable else "-")
    row += [_mib(outcome.peak_rss_kib), _mib(outcome.tree_rss_kib)]
    row.append(f"FAILED ({outcome.note})" if outcome.error else outcome.note)
    return row


def _describe(spec: MailflowRun) -> str:
    kind = "end-to-end" if spec.end_to_end else "durable intake"
    return f"mailflow {kind} -> {spec.target.label}"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB" if kib else "-"


def _yes(flag: bool) -> str:
    return "yes" if flag else "not yet"


# -- describing the machine --------------------------------------------------------------------


def _machine() -> str:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = model or platform.machine()
    return f"{os.cpu_count()} cores ({cpu}), {memory:.1f} GiB RAM, Linux {platform.release()}"


def _load() -> str:
    """How busy the CPUs are while this script idles for a second: other people's work."""
    before = _cpu_times()
    time.sleep(1.0)
    after = _cpu_times()
    busy, total = (a - b for a, b in zip(after, before, strict=True))
    share = busy / total if total else 0.0
    warning = " (figures will be noisy; try --repeat 3)" if share > 0.1 else ""
    return f"{share:.0%} of the CPUs busy with other processes{warning}"


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from the first line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _mailflow_revision() -> str:
    git = ["git", "-C", str(ROOT)]
    commit = _version([*git, "rev-parse", "--short", "HEAD"])
    dirty = _version([*git, "status", "--porcelain", "--untracked-files=no", "--", "mailflow"])
    return f"{__version__} at {commit}{' + uncommitted changes' if dirty else ''}"


def _sqlite_settings(space: Workspace) -> str:
    """What mailflow's own engine sets, read back from a scratch database."""
    try:
        engine = make_engine(f"sqlite:///{space.root / 'probe.db'}")
        with engine.connect() as conn:
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        engine.dispose()
    except Exception as exc:  # a benchmark header must not fail on a moving API
        return f"mailflow's settings unknown: {type(exc).__name__}"
    sync_name = SQLITE_SYNCHRONOUS.get(int(sync or 0), sync)
    return f"as mailflow opens it: journal_mode={journal}, synchronous={sync_name}"


def _postgres_settings(cluster: PostgresCluster | None) -> str:
    if cluster is None:
        return "not used"
    engine = sa.create_engine(cluster.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            names = ("server_version", *DURABLE_SETTINGS, "wal_sync_method")
            values = {name: conn.execute(sa.text(f"SHOW {name}")).scalar() for name in names}
    finally:
        engine.dispose()
    version = values.pop("server_version")
    return f"{version} ({', '.join(f'{k}={v}' for k, v in values.items())})"


def _filesystem(path: Path) -> str:
    """The type and device of the mount holding ``path`` (fsync means little on tmpfs)."""
    best = ("", "?", "?")
    with open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            device, mount, kind = line.split()[:3]
            if str(path).startswith(mount.rstrip("/") + "/") and len(mount) >= len(best[0]):
                best = (mount, kind, device)
    return f"{best[1]} ({best[2]})"


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "?"
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


# -- argument types and signals ----------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(sorted({_positive(part) for part in text.split(",")}))
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError("give at least two different sizes, e.g. 10000,50000")
    return sizes


def _backends(text: str) -> tuple[str, ...]:
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = set(names) - {"sqlite", "postgresql"}
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown back end(s): {', '.join(sorted(unknown))}")
    return names


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C
