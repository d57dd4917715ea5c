"""bench/outreach: sending one campaign, mailflow against a bare smtplib loop and smtp-source.

See bench/README.md for what each row means. Run as ``bench/outreach``. Each campaign is set up
(untimed) through mailflow's own commands: `contacts import`, `decision add`, `campaign create`
and `campaign approve`; the enqueue row times `mailflow campaign send`, the send row `mailflow
send --once`. The overlapped run and the smtplib loop run as child processes of this file
(``python bench/_outreach.py overlap|loop ...``), so that each is timed and its memory measured
on its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import sqlalchemy as sa
from _measure import Run, check_gnu_time
from _measure import run as measure
from _outreach_setup import mailflow_command, setup_campaign

ROOT = Path(__file__).resolve().parent.parent
SELF = Path(__file__).resolve()
SMTP_SINK, SMTP_SOURCE = "/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"
FROM, BOUNCES, CHUNK = "committee@ipu.example", "bounces.ipu.example", 500
SCALE_TARGET = 1.25  # peak memory at the larger campaign within 25% of the smaller
DOCUMENT_URL_BASE = "https://www.ipu.example/decisions"


# -- the two children: the overlapped campaign and the smtplib loop -----------------------------


def child_overlap(url: str, campaign_id: int, config: Path) -> None:
    """The campaign as it runs with the worker up: `mailflow send` (no --once) started first,
    delivering each batch once `mailflow campaign send` (run next, as its own process)
    commits it; done when every row of the ledger is sent, then the worker is stopped
    (SIGTERM)."""
    worker = subprocess.Popen(mailflow_command(config, "send"), cwd=ROOT)
    engine = sa.create_engine(url)
    try:
        enqueue = subprocess.run(
            mailflow_command(config, "campaign", "send", str(campaign_id)),
            cwd=ROOT,
            check=False,
            stdout=subprocess.DEVNULL,
        )
        if enqueue.returncode != 0:
            raise SystemExit(f"bench: mailflow campaign send exited ({enqueue.returncode})")
        query = sa.text("SELECT count(*) FROM deliveries WHERE state != 'sent'")
        while True:
            with engine.connect() as conn:
                if conn.execute(query).scalar_one() == 0:
                    return
            if worker.poll() is not None:
                raise SystemExit(f"bench: mailflow send exited ({worker.returncode})")
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait()
        engine.dispose()


def child_loop(path: Path, port: int) -> None:
    """The bare loop: the same rendered messages, one smtplib connection, sendmail() each."""
    with smtplib.SMTP("127.0.0.1", port) as client:
        for envelope_from, to, raw in read_messages(path):
            client.sendmail(envelope_from, [to], raw)


def write_messages(url: str, path: Path) -> tuple[int, int]:
    """Dump what mailflow sent (envelope and bytes, in ledger order); (count, mean size)."""
    from mailflow.delivery import return_path  # noqa: PLC0415
    from mailflow.store.models import Blob, Delivery  # noqa: PLC0415

    engine, count, total = sa.create_engine(url), 0, 0
    query = (
        sa.select(Delivery.verp_token, Delivery.to_address, Blob.data)
        .join(Blob, Blob.sha256 == Delivery.body_sha256)
        .order_by(Delivery.id)
    )
    with engine.connect() as conn, path.open("wb") as out:
        for verp, to, raw in conn.execution_options(yield_per=CHUNK).execute(query):
            sender = return_path(verp, BOUNCES).encode()
            out.write(struct.pack(">III", len(sender), len(to), len(raw)))
            out.write(sender + to.encode() + raw)
            count, total = count + 1, total + len(raw)
    engine.dispose()
    return count, total // max(count, 1)


def read_messages(path: Path) -> Iterator[tuple[str, str, bytes]]:
    with path.open("rb") as source:
        while header := source.read(12):
            lengths = struct.unpack(">III", header)
            sender, to, raw = (source.read(n) for n in lengths)
            yield sender.decode(), to.decode(), raw


# -- setting up (untimed): the sink, databases, a campaign made with mailflow's commands --------


def start_sink(stack: ExitStack) -> int:
    from tests.servers.ports import free_port, wait_until  # noqa: PLC0415

    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [SMTP_SINK, *user, f"127.0.0.1:{port}", "1000"], stdout=subprocess.DEVNULL
    )
    stack.callback(proc.wait)
    stack.callback(proc.kill)
    if not wait_until(lambda: _listening(port), timeout=10):
        raise SystemExit("bench: smtp-sink did not start")
    return port


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def fresh_database(backend: str, space: Path, admin_url: str | None, name: str) -> str:
    from mailflow.store import upgrade  # noqa: PLC0415
    from tests.servers.postgres import create_database  # noqa: PLC0415

    if backend == "sqlite":
        url = f"sqlite:///{space / name / 'mailflow.db'}"
        (space / name).mkdir(parents=True)
    else:
        assert admin_url is not None
        url = create_database(admin_url)
    upgrade(url)
    return url


def queued_count(url: str, campaign_id: int) -> int:
    """Ledger rows of the campaign's mailing waiting for the worker."""
    engine = sa.create_engine(url)
    query = sa.text(
        "SELECT count(*) FROM deliveries WHERE campaign_id = :campaign AND purpose = 'decision'"
        " AND round = 0 AND state = 'pending'"
    )
    with engine.connect() as conn:
        value = int(conn.execute(query, {"campaign": campaign_id}).scalar_one())
    engine.dispose()
    return value


def sent_count(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM deliveries WHERE state = 'sent'"))
        value = int(count.scalar_one())
    engine.dispose()
    return value


def write_config(
    directory: Path, url: str, port: int, connections: int, interval: int = 30
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mailflow.toml"
    path.write_text(
        f'[service]\ndata_dir = "{directory}"\nlog_level = "warning"\n'
        f'[database]\nurl = "{url}"\n'
        f'[outbound]\nfrom_address = "{FROM}"\nbounce_domain = "{BOUNCES}"\n'
        f'relay_host = "127.0.0.1"\nrelay_port = {port}\nrelay_security = "none"\n'
        f"connections = {connections}\nsend_interval_seconds = {interval}\n"
        f'[campaigns]\nattach_documents = false\ndocument_url_base = "{DOCUMENT_URL_BASE}"\n',
        encoding="utf-8",
    )
    return path


# -- timed rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    messages: int
    seconds: float
    peak_rss_kib: int  # largest single process (GNU time), largest of the row's commands
    detail: str = ""
    ok: bool = True

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def timed(command: Sequence[str], space: Path, name: str) -> Run:
    result = measure(command, env=dict(os.environ), logs=space / "logs", name=name, cwd=ROOT)
    if not result.ok:
        print(f"bench: {name} failed; see {result.stderr}", file=sys.stderr)
    return result


def mailflow_rows(
    args: argparse.Namespace, ctx: Context, backend: str, n: int, tag: str
) -> list[Row]:
    """`mailflow campaign send` (render + ledger) then `mailflow send --once`, each timed, both
    summed, on a campaign set up beforehand with mailflow's commands (untimed)."""
    url = fresh_database(backend, ctx.space, ctx.admin_url, f"{backend}-{tag}")
    run_dir = ctx.space / f"{backend}-{tag}-run"
    config = write_config(run_dir, url, ctx.port, args.connections)
    setup = setup_campaign(config, run_dir, n, args.domains)
    print(f"setup {backend}-{tag} (untimed): {setup.describe()}", flush=True)
    campaign = str(setup.campaign_id)
    enqueue = timed(
        mailflow_command(config, "campaign", "send", campaign),
        ctx.space,
        f"enqueue-{backend}-{tag}",
    )
    queued = queued_count(url, setup.campaign_id)
    send = timed(mailflow_command(config, "send", "--once"), ctx.space, f"send-{backend}-{tag}")
    sent = sent_count(url)
    queued_ok, sent_ok = enqueue.ok and queued == n, send.ok and sent == n
    ok = queued_ok and sent_ok
    if ctx.messages_file is None and ok:
        ctx.messages_file = ctx.space / "messages.bin"
        _, ctx.mean_size = write_messages(url, ctx.messages_file)
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
    queued_check = "" if queued_ok else f" FAILED ({queued} of {n} queued)"
    sent_check = "" if sent_ok else f" FAILED ({sent} of {n} sent)"
    return [
        Row(
            f"mailflow {name}: enqueue",
            n,
            enqueue.seconds,
            enqueue.peak_rss_kib,
            "`campaign send`: render + ledger" + queued_check,
            queued_ok,
        ),
        Row(
            f"mailflow {name}: send",
            n,
            send.seconds,
            send.peak_rss_kib,
            f"{args.connections} connections{sent_check}",
            sent_ok,
        ),
        Row(
            f"mailflow {name}: total",
            n,
            enqueue.seconds + send.seconds,
            max(enqueue.peak_rss_kib, send.peak_rss_kib),
            "end to end" + (queued_check or sent_check),
            ok,
        ),
    ]


def overlap_row(args: argparse.Namespace, ctx: Context, backend: str, n: int, tag: str) -> Row:
    """The campaign with the worker already running (`child_overlap`): enqueue and send
    overlap, on a fresh database. The worker looks for due rows every second when idle."""
    url = fresh_database(backend, ctx.space, ctx.admin_url, f"{backend}-{tag}-overlap")
    run_dir = ctx.space / f"{backend}-{tag}-overlap-run"
    config = write_config(run_dir, url, ctx.port, args.connections, interval=1)
    setup = setup_campaign(config, run_dir, n, args.domains)
    print(f"setup {backend}-{tag}-overlap (untimed): {setup.describe()}", flush=True)
    command = [sys.executable, str(SELF), "overlap", url, str(setup.campaign_id), str(config)]
    run = timed(command, ctx.space, f"overlap-{backend}-{tag}")
    sent = sent_count(url)
    ok = run.ok and sent == n
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
    check = "" if ok else f" FAILED ({sent} of {n} sent)"
    return Row(
        f"mailflow {name}: overlapped",
        n,
        run.seconds,
        run.peak_rss_kib,
        "`campaign send` with `mailflow send` running" + check,
        ok,
    )


def loop_row(ctx: Context, n: int) -> Row:
    assert ctx.messages_file is not None
    run = timed(
        [sys.executable, str(SELF), "loop", str(ctx.messages_file), str(ctx.port)],
        ctx.space,
        "smtplib-loop",
    )
    return Row(
        "smtplib loop", n, run.seconds, run.peak_rss_kib, "1 connection, pre-rendered", run.ok
    )


def source_row(ctx: Context, n: int, sessions: int) -> Row:
    command = [
        SMTP_SOURCE,
        "-d",
        "-s",
        str(sessions),
        "-m",
        str(n),
        "-l",
        str(ctx.mean_size),
        "-f",
        FROM,
        "-t",
        "speaker@parliament.example",
        f"127.0.0.1:{ctx.port}",
    ]
    run = timed(command, ctx.space, "smtp-source")
    return Row(
        "smtp-source (the limit)",
        n,
        run.seconds,
        run.peak_rss_kib,
        f"{sessions} sessions, {ctx.mean_size} B",
        run.ok,
    )


@dataclass
class Context:
    space: Path
    port: int
    admin_url: str | None
    messages_file: Path | None = None
    mean_size: int = 0


def run_comparison(args: argparse.Namespace, ctx: Context) -> int:
    rows: list[Row] = []
    n = args.recipients
    for backend in args.backends:
        for attempt in range(args.repeat):
            rows += mailflow_rows(args, ctx, backend, n, f"r{attempt}")
            rows.append(overlap_row(args, ctx, backend, n, f"r{attempt}"))
        if ctx.messages_file is not None and not any(r.label == "smtplib loop" for r in rows):
            rows += [loop_row(ctx, n) for _ in range(args.repeat)]
            rows += [source_row(ctx, n, args.connections) for _ in range(args.repeat)]
    baseline = _best(rows, "smtplib loop")
    print_table(rows, baseline)
    return 0 if all(row.ok for row in rows) else 1


def run_scale(args: argparse.Namespace, ctx: Context) -> int:
    rows = [
        row for n in args.scale_sizes for row in mailflow_rows(args, ctx, "sqlite", n, f"scale{n}")
    ]
    print_table(rows, None)
    for step in ("enqueue", "send"):
        picked = [row for row in rows if row.label.endswith(step)]
        ratio = picked[-1].peak_rss_kib / max(picked[0].peak_rss_kib, 1)
        print(
            f"peak RSS of {step}, {picked[-1].messages} over {picked[0].messages}: {ratio:.2f}"
            f" (target <= {SCALE_TARGET})"
        )
        if ratio > SCALE_TARGET:
            return 1
    return 0 if all(row.ok for row in rows) else 1


def _best(rows: Sequence[Row], label: str) -> Row | None:
    matching = [row for row in rows if row.label == label and row.ok]
    return min(matching, key=lambda row: row.seconds) if matching else None


def print_table(rows: Sequence[Row], baseline: Row | None) -> None:
    print(
        f"{'row':<31} {'messages':>8} {'seconds':>8} {'msg/s':>8} {'x loop':>7} "
        f"{'peak RSS':>9}  detail"
    )
    for row in rows:
        ratio = f"{row.rate / baseline.rate:.2f}" if baseline and row.ok else "-"
        print(
            f"{row.label:<31} {row.messages:>8} {row.seconds:>8.2f} {row.rate:>8.0f} "
            f"{ratio:>7} {row.peak_rss_kib / 1024:>7.1f}Mi  {row.detail}"
        )


# -- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    check_gnu_time()
    for tool in (SMTP_SINK, SMTP_SOURCE):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"bench: {tool} is missing (apt-get install postfix)")
    if args.tmpdir:
        tempfile.tempdir = str(args.tmpdir)
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        try:
            ctx = setup(args, stack)
            print(
                f"bench/outreach: {args.recipients if not args.scale else args.scale_sizes} "
                f"recipients, {args.domains} domains, {args.connections} connections; "
                f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
            )
            return run_scale(args, ctx) if args.scale else run_comparison(args, ctx)
        except KeyboardInterrupt:
            print("\nbench: interrupted; stopping servers and removing files", file=sys.stderr)
            return 130


def setup(args: argparse.Namespace, stack: ExitStack) -> Context:
    space = Path(tempfile.mkdtemp(prefix="mailflow-outreach-"))
    stack.callback(shutil.rmtree, space, ignore_errors=True)
    (space / "logs").mkdir()
    if args.logs is not None:
        stack.callback(shutil.copytree, space / "logs", args.logs, dirs_exist_ok=True)
    admin_url = None
    if "postgresql" in args.backends and not args.scale:
        from _intake import start_postgres  # noqa: PLC0415 (durable settings, as intake's)

        cluster = start_postgres(stack)
        if cluster is None:
            args.backends = tuple(b for b in args.backends if b != "postgresql")
        else:
            admin_url = cluster.url
    return Context(space, start_sink(stack), admin_url)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/outreach",
        description="Time one campaign through mailflow, a bare smtplib loop and smtp-source.",
    )
    parser.add_argument("--recipients", type=int, default=20_000, help="default: 20000")
    parser.add_argument("--domains", type=int, default=200, help="default: 200")
    parser.add_argument("--connections", type=int, default=4, help="mailflow's (default: 4)")
    parser.add_argument(
        "--backends",
        type=lambda t: tuple(t.split(",")),
        default=("sqlite", "postgresql"),
        help="default: sqlite,postgresql",
    )
    parser.add_argument("--repeat", type=int, default=1, help="run each row K times")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="instead: mailflow on SQLite at each --scale-sizes, compare memory",
    )
    parser.add_argument(
        "--scale-sizes",
        type=lambda t: tuple(int(x) for x in t.split(",")),
        default=(5_000, 20_000),
        help="default: 5000,20000",
    )
    parser.add_argument("--logs", type=Path, help="copy every command's output there")
    parser.add_argument("--tmpdir", type=Path, help="parent of the temporary directories")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _child(argv: Sequence[str]) -> int:
    if argv[0] == "overlap":
        child_overlap(argv[1], int(argv[2]), Path(argv[3]))
    elif argv[0] == "loop":
        child_loop(Path(argv[1]), int(argv[2]))
    else:
        raise SystemExit(f"unknown child command {argv[0]!r}")
    return 0


if __name__ == "__main__":  # a child: bench/ is on sys.path as the script's directory
    sys.exit(_child(sys.argv[1:]))
