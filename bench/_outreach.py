"""bench/outreach: sending one campaign, mailflow against a bare smtplib loop and smtp-source.

See bench/README.md for what each row means. Run as ``bench/outreach``. The enqueue step and
the smtplib loop run as child processes of this file (``python bench/_outreach.py enqueue|loop
...``), so that each is timed and its memory measured on its own, like ``mailflow send``.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import sqlalchemy as sa
from _measure import Run, check_gnu_time
from _measure import run as measure

if TYPE_CHECKING:
    from mailflow.delivery.ledger import Queued
    from mailflow.store.models import Contact
    from mailflow.templates import Templates

ROOT = Path(__file__).resolve().parent.parent
SELF = Path(__file__).resolve()
SMTP_SINK, SMTP_SOURCE = "/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"
FROM, BOUNCES, CHUNK = "committee@ipu.example", "bounces.ipu.example", 500
SCALE_TARGET = 1.25  # peak memory at the larger campaign within 25% of the smaller
LANGUAGES = ("en", "en", "fr", "es", "en", "fr", "ar")  # the contacts' preferred languages


@dataclass(frozen=True)
class Decision:
    """The context of the bench's campaign template: what a decision mailing shows."""

    recipient: str
    parliament: str
    country: str
    title: str
    session: str
    cases: tuple[str, ...]
    document_url: str


# -- the two children: enqueue (mailflow's part) and the smtplib loop ----------------------------


def child_enqueue(url: str, templates_dir: Path, campaign_id: int) -> None:
    """Render and enqueue one message per contact of the campaign, CHUNK per transaction,
    with `enqueue_many` as `mailflow campaign send` does: read a page of contacts, render it
    outside any transaction, then write it."""
    from mailflow.delivery.ledger import enqueue_many  # noqa: PLC0415 (child only)
    from mailflow.store import make_engine, session_factory  # noqa: PLC0415
    from mailflow.store.models import Contact  # noqa: PLC0415
    from mailflow.templates import Templates  # noqa: PLC0415

    sessions = session_factory(make_engine(url))
    templates, last, now = Templates(templates_dir), 0, datetime.now(UTC) - timedelta(seconds=1)
    while True:  # keyset pages: memory stays flat whatever the campaign's size
        with sessions.begin() as session:
            page = session.scalars(
                sa.select(Contact).where(Contact.id > last).order_by(Contact.id).limit(CHUNK)
            ).all()
        batch = [_queued(templates, contact) for contact in page]
        with sessions.begin() as session:
            enqueue_many(session, batch, now=now, campaign_id=campaign_id)
        if len(page) < CHUNK:
            return
        last = page[-1].id


def _queued(templates: Templates, contact: Contact) -> Queued:
    from mailflow.delivery import OutboundMessage  # noqa: PLC0415 (child only)
    from mailflow.delivery.ledger import Queued  # noqa: PLC0415

    context = Decision(
        contact.person_name or "Speaker",
        contact.organisation or "",
        contact.country or "",
        "Decision adopted by the Committee at its 176th session",
        "176th",
        (f"{contact.country}-{contact.id % 97:02d}", f"{contact.country}-07"),
        f"https://www.ipu.example/decisions/176/{contact.id}.pdf",
    )
    rendered = templates.render("decision", contact.languages, context)
    message = OutboundMessage(
        purpose="decision",
        to_address=contact.email,
        from_address=FROM,
        from_name="IPU Committee on the Human Rights of Parliamentarians",
        subject="Decision of the Committee",
        text=rendered.text,
        html=rendered.html,
        language=rendered.language,
        to_name=contact.person_name or "",
    )
    return Queued(message, contact.id)


def child_overlap(url: str, templates_dir: Path, campaign_id: int, config: Path) -> None:
    """The campaign as it runs with the worker up: `mailflow send` (no --once) started first,
    delivering each batch once the enqueue (this process, as `child_enqueue`) commits it;
    done when every contact's row is sent, then the worker is stopped (SIGTERM)."""
    command = [sys.executable, "-m", "mailflow", "--config", str(config), "send"]
    worker = subprocess.Popen(command, cwd=ROOT)
    engine = sa.create_engine(url)
    try:
        child_enqueue(url, templates_dir, campaign_id)
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


# -- setting up (untimed): templates, the sink, databases, contacts -----------------------------


def write_templates(root: Path) -> Path:
    """A decision mailing of realistic size: ~3 KB of text and an HTML version, 4 languages."""
    paragraph = (
        "The Committee examined the situation of the parliamentarians named below, in the "
        "light of the information provided by the authorities and by the complainants, and "
        "of the hearings held during its session. It recalls that freedom of expression is "
        "essential to the work of every member of parliament, and that it "
        "protects opinions that may offend, shock or disturb. "
    )
    text = (
        "Dear {{ recipient }},\n\nOn behalf of the Committee on the Human Rights of "
        "Parliamentarians, I have the honour to send you the decision on the cases of "
        "{{ country }} ({% for case in cases %}{{ case }}{% if not loop.last %}, "
        "{% endif %}{% endfor %}) adopted at its {{ session }} session, for the attention of "
        "{{ parliament }}.\n\n"
        + (paragraph * 2 + "\n\n")
        * 4
        + "The full decision: {{ document_url }}\n\nYours sincerely,\n\nThe Secretary of the "
        "Committee\n"
    )
    html = "<html><body>" + "".join(f"<p>{part}</p>" for part in text.split("\n\n"))
    directory = root / "templates" / "decision"
    directory.mkdir(parents=True)
    for language in ("en", "fr", "es", "ar"):
        (directory / f"{language}.txt").write_text(text, encoding="utf-8")
        (directory / f"{language}.html").write_text(html + "</body></html>", encoding="utf-8")
    return root / "templates"


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


def add_contacts(url: str, recipients: int, domains: int) -> int:
    """`recipients` contacts across `domains` domains, and an approved campaign; its id."""
    from mailflow.store.models import Campaign, Contact  # noqa: PLC0415

    engine = sa.create_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Contact),
            [
                {
                    "role": "speaker",
                    "email": f"speaker{n}@parliament{n % domains}.example",
                    "person_name": f"Speaker {n}",
                    "organisation": f"Parliament {n % domains}",
                    "country": f"C{n % domains:02d}"[:3],
                    "languages": LANGUAGES[n % 7],
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(recipients)
            ],
        )
        campaign = conn.execute(
            sa.insert(Campaign).returning(Campaign.id),
            {
                "name": "bench",
                "purpose": "decision",
                "status": "sending",
                "created_by": "bench",
                "approved_by": "bench",
                "approved_at": now,
                "approved_digest": "0" * 64,
                "created_at": now,
            },
        ).scalar_one()
    engine.dispose()
    return int(campaign)


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
        f"connections = {connections}\nsend_interval_seconds = {interval}\n",
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
    """Enqueue (render + ledger) then `mailflow send --once`, each timed, both summed."""
    url = fresh_database(backend, ctx.space, ctx.admin_url, f"{backend}-{tag}")
    campaign = add_contacts(url, n, args.domains)
    config = write_config(ctx.space / f"{backend}-{tag}-run", url, ctx.port, args.connections)
    python = sys.executable
    enqueue = timed(
        [python, str(SELF), "enqueue", url, str(ctx.templates), str(campaign)],
        ctx.space,
        f"enqueue-{backend}-{tag}",
    )
    send = timed(
        [python, "-m", "mailflow", "--config", str(config), "send", "--once"],
        ctx.space,
        f"send-{backend}-{tag}",
    )
    sent = sent_count(url)
    ok = enqueue.ok and send.ok and sent == n
    if ctx.messages_file is None and ok:
        ctx.messages_file = ctx.space / "messages.bin"
        _, ctx.mean_size = write_messages(url, ctx.messages_file)
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
    check = "" if ok else f" FAILED ({sent} of {n} sent)"
    return [
        Row(
            f"mailflow {name}: enqueue", n, enqueue.seconds, enqueue.peak_rss_kib, "render + ledger"
        ),
        Row(
            f"mailflow {name}: send",
            n,
            send.seconds,
            send.peak_rss_kib,
            f"{args.connections} connections{check}",
            ok,
        ),
        Row(
            f"mailflow {name}: total",
            n,
            enqueue.seconds + send.seconds,
            max(enqueue.peak_rss_kib, send.peak_rss_kib),
            "end to end" + check,
            ok,
        ),
    ]


def overlap_row(args: argparse.Namespace, ctx: Context, backend: str, n: int, tag: str) -> Row:
    """The campaign with the worker already running (`child_overlap`): enqueue and send
    overlap, on a fresh database. The worker looks for due rows every second when idle."""
    url = fresh_database(backend, ctx.space, ctx.admin_url, f"{backend}-{tag}-overlap")
    campaign = add_contacts(url, n, args.domains)
    config = write_config(
        ctx.space / f"{backend}-{tag}-overlap-run", url, ctx.port, args.connections, interval=1
    )
    command = [sys.executable, str(SELF), "overlap", url, str(ctx.templates), str(campaign)]
    run = timed([*command, str(config)], ctx.space, f"overlap-{backend}-{tag}")
    sent = sent_count(url)
    ok = run.ok and sent == n
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
    check = "" if ok else f" FAILED ({sent} of {n} sent)"
    return Row(
        f"mailflow {name}: overlapped",
        n,
        run.seconds,
        run.peak_rss_kib,
        "enqueue with `mailflow send` running" + check,
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
    templates: Path
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
        f"{'row':<28} {'messages':>8} {'seconds':>8} {'msg/s':>8} {'x loop':>7} "
        f"{'peak RSS':>9}  detail"
    )
    for row in rows:
        ratio = f"{row.rate / baseline.rate:.2f}" if baseline and row.ok else "-"
        print(
            f"{row.label:<28} {row.messages:>8} {row.seconds:>8.2f} {row.rate:>8.0f} "
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
    return Context(space, start_sink(stack), write_templates(space), admin_url)


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
    if argv[0] == "enqueue":
        child_enqueue(argv[1], Path(argv[2]), int(argv[3]))
    elif argv[0] == "overlap":
        child_overlap(argv[1], Path(argv[2]), int(argv[3]), Path(argv[4]))
    elif argv[0] == "loop":
        child_loop(Path(argv[1]), int(argv[2]))
    else:
        raise SystemExit(f"unknown child command {argv[0]!r}")
    return 0


if __name__ == "__main__":  # a child: bench/ is on sys.path as the script's directory
    sys.exit(_child(sys.argv[1:]))
