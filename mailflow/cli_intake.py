"""Intake commands: `ingest` (backfill from files) and `quarantine list | show | retry`.

Text that comes from a message (headers, subjects, errors quoting them, file names) is shown
with control characters escaped: a message is written by a stranger, and escape sequences
printed raw would drive the operator's terminal.

`quarantine list` shows each message's subject but never its sender: the subject tells the
secretariat which message it is, while the reporter's identity is the confidential part, and
a listing is what gets pasted into a ticket when asking for help with a failure. `show` is the
deliberate look at one message and shows its headers, sender included.
"""

from __future__ import annotations

import argparse
import logging
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from mailflow import backfill
from mailflow.errors import MailflowError, StorageError
from mailflow.progress import Progress
from mailflow.service import App, build, prepare_database
from mailflow.settings import Settings
from mailflow.store import migrate, quarantine
from mailflow.store.engine import translate_db_errors
from mailflow.store.models import MessageSource

HEADER_LINES = 30
MAX_LINE = 200
MAX_SUBFOLDERS_NAMED = 10


# -- ingest --------------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    app = build(settings)
    try:
        prepare_database(app)
        planned = backfill.plan(args.paths)
        _note_subfolders(planned)
        return _ingest(app, planned, explicit_log_level=args.log_level is not None)
    finally:
        app.close()


def _ingest(
    app: App, planned: list[backfill.Source | backfill.Unreadable], *, explicit_log_level: bool
) -> int:
    tty = sys.stderr.isatty()
    # Counting reads every mbox once more; only worth it when there is a bar to show.
    total = backfill.count(planned) if tty else None
    bar = Progress(total, sys.stderr, label="ingest", unit="msg", isatty=tty)
    runner = backfill.Backfill(app.intake)
    try:
        with _logging_beside(bar, quiet=not explicit_log_level):
            for result in runner.run(backfill.read_all(planned)):
                _report(bar, result)
                tally = runner.tally
                bar.status = (
                    f"{tally.new} new, {tally.already_stored} stored, "
                    f"{tally.quarantined} quarantined, {tally.errors} errors"
                )
                bar.advance()
    except StorageError:
        bar.write(
            "stopped: the database failed. What was stored stays stored: run again to resume, "
            "and `mailflow process` to process a message left unprocessed"
        )
        raise
    finally:
        # Also after Ctrl-C or a database failure: what was stored by then stays stored.
        bar.close()
        print(runner.tally.summary())
    if runner.tally.quarantined:
        print("quarantined messages are stored: `mailflow quarantine list` shows them")
    return 1 if runner.tally.errors else 0


def _report(bar: Progress, result: backfill.Result) -> None:
    name = printable(result.identifier)
    if result.outcome == "error":
        bar.write(f"mailflow: error: {name}: {printable(result.detail or 'unreadable')}")
    elif result.outcome == "quarantined":
        error = printable(first_line(result.detail))
        bar.write(f"quarantined: {name} (id {result.message_pk}): {error}")


@contextmanager
def _logging_beside(bar: Progress, *, quiet: bool) -> Iterator[None]:
    """Keep log lines from being drawn over the bar, or from scrolling it away.

    Each log line erases the bar first. Intake logs every message at info level, which on a
    terminal would leave the bar no room: unless --log-level was given, only its warnings show.
    """
    if not bar.enabled:
        yield
        return
    intake_log = logging.getLogger("mailflow.intake")
    level = intake_log.level
    if quiet:
        intake_log.setLevel(logging.WARNING)

    def erase_bar(record: logging.LogRecord) -> bool:
        bar.clear()
        return True

    handlers = [h for h in logging.getLogger().handlers if h.get_name() == "mailflow"]
    for handler in handlers:
        handler.addFilter(erase_bar)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(erase_bar)
        intake_log.setLevel(level)


def _note_subfolders(planned: Sequence[backfill.Source | backfill.Unreadable]) -> None:
    for source in planned:
        if isinstance(source, backfill.Source) and source.kind == "maildir":
            names = backfill.maildir_subfolders(source.path)
            if names:
                shown = ", ".join(printable(name) for name in names[:MAX_SUBFOLDERS_NAMED])
                more = ", ..." if len(names) > MAX_SUBFOLDERS_NAMED else ""
                print(
                    f"note: {printable(str(source.path))}: Maildir++ subfolders not ingested "
                    f"(name them to ingest them): {shown}{more}",
                    file=sys.stderr,
                )


# -- quarantine ----------------------------------------------------------------------------------


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    app = build(settings)
    try:
        migrate.check_current(app.engine)
        if args.quarantine_command == "list":
            return _list(app)
        if args.quarantine_command == "show":
            return _show_raw(app, args.id) if args.raw else _show(app, args.id)
        return _retry(app, args.ids, every=args.all)
    finally:
        app.close()


def _list(app: App) -> int:
    with translate_db_errors(), app.sessions() as session:
        rows = quarantine.quarantined(session)
    if not rows:
        print("no quarantined messages")
        return 0
    print(f"{'ID':>7}  {'RECEIVED (UTC)':<16}  {'SIZE':>8}  {'ERROR':<50}  SUBJECT")
    for row in rows:
        error = _clip(printable(first_line(row.error)), 50)
        subject = _clip(printable(row.subject or "(no subject)"), 60)
        print(f"{row.id:>7}  {row.received_at:%Y-%m-%d %H:%M}  {human_size(row.size):>8}  ", end="")
        print(f"{error:<50}  {subject}")
    print(f"{len(rows)} quarantined; `mailflow quarantine show ID` for one, `retry` to reprocess")
    return 0


def _show(app: App, message_pk: int) -> int:
    with translate_db_errors(), app.sessions() as session:
        found = quarantine.detail(session, message_pk)
    if found is None:
        raise _no_such_message(message_pk)
    message = found.message
    print(f"message {message.id}: {message.status}")
    for label, value in (
        ("sha256", message.sha256),
        ("size", f"{found.size} bytes"),
        ("message-id", printable(message.message_id or "(none)")),
        ("first received", _when(message.first_received_at)),
        ("last received", f"{_when(message.last_received_at)} ({message.times_received}x)"),
        (f"{message.status} at", _when(message.processed_at)),
    ):
        print(f"  {label + ':':<16} {value}")
    if message.error:
        print("error:")
        for line in message.error.splitlines():
            print(f"  {printable(line)}")
    print("arrivals:")
    for source in found.sources:
        print(f"  {_when(source.received_at)}  {_arrival(source)}")
    print("headers:")
    for line in header_lines(found.head, complete=found.size <= len(found.head)):
        print(f"  {line}")
    return 0


def _show_raw(app: App, message_pk: int) -> int:
    if sys.stdout.isatty():
        raise MailflowError(
            "refusing to write a raw message to a terminal (it can hold escape sequences)",
            hint=f"redirect it: mailflow quarantine show {message_pk} --raw > {message_pk}.eml",
        )
    with translate_db_errors(), app.sessions() as session:
        raw = quarantine.raw_bytes(session, message_pk)
    if raw is None:
        raise _no_such_message(message_pk)
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()
    return 0


def _retry(app: App, ids: list[int], *, every: bool) -> int:
    if every:
        with translate_db_errors(), app.sessions() as session:
            ids = quarantine.quarantined_ids(session)
        if not ids:
            print("no quarantined messages")
            return 0
    processed = failed = 0
    for message_pk in ids:
        with translate_db_errors(), app.sessions() as session:
            status = quarantine.status_of(session, message_pk)
        if status is None:
            print(f"mailflow: error: no message with id {message_pk}", file=sys.stderr)
            failed += 1
        elif status != "quarantined":
            print(f"{message_pk}: skipped, not quarantined ({status})")
        else:
            outcome = app.intake.process(message_pk)
            if outcome.status == "processed":
                processed += 1
                print(f"{message_pk}: processed")
            else:
                failed += 1
                print(f"{message_pk}: still quarantined: {printable(first_line(outcome.error))}")
    print(f"retried {len(ids)}: {processed} processed, {failed} failed")
    return 1 if failed else 0


def _no_such_message(message_pk: int) -> MailflowError:
    return MailflowError(
        f"no message with id {message_pk}", hint="`mailflow quarantine list` shows the ids"
    )


def _arrival(source: MessageSource) -> str:
    parts = [source.channel]
    for label, value in (
        ("account", source.account),
        ("mailbox", source.mailbox),
        ("uidvalidity", source.uidvalidity),
        ("uid", source.uid),
        ("session", source.smtp_session),
        ("peer", source.smtp_peer),
        ("from", source.envelope_from),
        ("to", source.envelope_to),
        ("path", source.path),
    ):
        if value is not None:
            parts.append(f"{label}={printable(str(value))}")
    return " ".join(parts)


# -- display helpers (pure) ----------------------------------------------------------------------


def header_lines(head: bytes, *, complete: bool) -> list[str]:
    """The first lines of the header block of a raw message, made safe to print."""
    ends = [at for at in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if at >= 0]
    block = head[: min(ends)] if ends else head
    lines = [line.rstrip(b"\r") for line in block.split(b"\n")] if block else []
    shown = [_clip(printable(line.decode("utf-8", "replace")), MAX_LINE) for line in lines]
    if len(shown) > HEADER_LINES:
        more = len(shown) - HEADER_LINES
        return [*shown[:HEADER_LINES], f"... {more} more line(s); --raw for the whole message"]
    if not ends and not complete:
        shown.append("... (headers go on; --raw for the whole message)")
    return shown or ["(none)"]


def printable(text: str) -> str:
    """Control, format and unassigned characters escaped (\\x1b, \\u202e ...), tabs kept."""
    return "".join(
        ch if ch == "\t" or not unicodedata.category(ch).startswith("C") else _escape(ch)
        for ch in text
    )


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} kB"
    return f"{size / (1024 * 1024):.1f} MB"


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"
