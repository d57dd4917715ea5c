"""Backfill: feed .eml files, Maildir folders and mbox files through the intake pipeline.

Reading is kept apart from storing. `plan` turns the paths a user named into sources, `read_all`
yields one message at a time from them (never a whole mbox in memory), and `Backfill.run`
pushes each through `Intake` with a 'file' arrival. Every message gets an identifier that stays
the same from one run to the next, and storage ignores an identifier already recorded for the
same bytes, so running a backfill again changes nothing. The identifiers:

- an .eml file: its absolute path (the path named resolved, symbolic links included, then for
  files found in a named directory, their place under it);
- an mbox: ``<absolute path>#<n>``, n counting messages from 1. Stable while the file is only
  appended to (an archive). Deleting messages from it renumbers the ones after; those then
  count as new arrivals of messages already stored (never as new messages: the bytes are the
  key);
- a Maildir: ``<absolute folder path>#<unique name>``: the file name without the ``:2,<flags>``
  suffix and without new/ or cur/, because a mail client renames the file whenever it reads,
  flags or files the message.

Maildir++ subfolders (``.Sent``, ``.Trash``, ``.Junk`` inside a Maildir) are not descended
into: they hold mail that is not intake. Name a subfolder to ingest it; `maildir_subfolders`
lists them so the command can say what it left out. In a plain directory, hidden files and
folders are skipped for the same reason (and ``._name.eml`` files are macOS metadata).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailflow.intake import Intake
from mailflow.logs import fields
from mailflow.store.messages import Arrival

log = logging.getLogger(__name__)
SourceKind = Literal["eml", "mbox", "maildir"]
Outcome = Literal["new", "already stored", "quarantined", "error"]
_BLANK = (b"\n", b"\r\n")
_NOT_MAIL = "not an .eml file, an mbox (first line 'From ...') or a Maildir folder"


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    path: Path  # absolute


@dataclass(frozen=True)
class Entry:
    """One message read from a source."""

    identifier: str
    raw: bytes


@dataclass(frozen=True)
class Unreadable:
    """A path, or a message in one, that could not be read; the run goes on without it."""

    identifier: str
    reason: str


@dataclass(frozen=True)
class Result:
    identifier: str
    outcome: Outcome
    message_pk: int | None = None
    detail: str | None = None
    """Why it is an error, or the quarantine error."""


@dataclass
class Tally:
    new: int = 0
    already_stored: int = 0
    quarantined: int = 0
    errors: int = 0

    def add(self, result: Result) -> None:
        if result.outcome == "new":
            self.new += 1
        elif result.outcome == "already stored":
            self.already_stored += 1
        elif result.outcome == "quarantined":
            self.quarantined += 1
        else:
            self.errors += 1

    def summary(self) -> str:
        """Quarantined messages are stored too; they are counted apart from `new`."""
        messages = self.new + self.already_stored + self.quarantined
        return (
            f"ingested {messages} message(s): {self.new} new, {self.already_stored} already "
            f"stored, {self.quarantined} quarantined, {self.errors} error(s)"
        )


class Backfill:
    """Runs messages through intake one at a time and keeps the tally."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.tally = Tally()

    def run(self, items: Iterable[Entry | Unreadable]) -> Iterator[Result]:
        """Store, then process, each message. A StorageError (the database, not a file) stops
        the run: everything stored so far is committed, and running again resumes."""
        for item in items:
            result = self._one(item)
            self.tally.add(result)
            yield result
        tally = self.tally
        log.info(
            "backfill done",
            extra=fields(
                new=tally.new,
                already_stored=tally.already_stored,
                quarantined=tally.quarantined,
                errors=tally.errors,
            ),
        )

    def _one(self, item: Entry | Unreadable) -> Result:
        if isinstance(item, Unreadable):
            return Result(item.identifier, "error", detail=item.reason)
        stored = self.intake.receive(item.raw, Arrival("file", path=item.identifier))
        if not stored.new:
            return Result(item.identifier, "already stored", stored.message_pk)
        outcome = self.intake.process(stored.message_pk)
        if outcome.status == "quarantined":
            return Result(item.identifier, "quarantined", stored.message_pk, outcome.error)
        return Result(item.identifier, "new", stored.message_pk)


# -- Finding sources -----------------------------------------------------------------------------


def plan(paths: Sequence[Path]) -> list[Source | Unreadable]:
    """The sources named by `paths`, in order; a path that is not usable is an Unreadable."""
    planned: list[Source | Unreadable] = []
    for given in paths:
        try:
            path = Path(given).resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
            planned.append(Unreadable(identifier(Path(given).absolute()), _reason(exc)))
            continue
        planned.extend(_classify(path))
    return planned


def _classify(path: Path) -> list[Source | Unreadable]:
    try:
        if path.is_dir():
            if is_maildir(path):
                return [Source("maildir", path)]
            found = _eml_files(path)
            return found or [Unreadable(identifier(path), "no .eml files in it, and no Maildir")]
        if not path.exists():
            return [Unreadable(identifier(path), "no such file or directory")]
        return [_classify_file(path)]
    except OSError as exc:
        return [Unreadable(identifier(path), _reason(exc))]


def _classify_file(path: Path) -> Source | Unreadable:
    if path.suffix.lower() == ".eml":
        return Source("eml", path)
    with path.open("rb") as file:
        head = file.read(5)
    if head == b"From " or (head == b"" and path.suffix.lower() == ".mbox"):
        return Source("mbox", path)
    return Unreadable(identifier(path), _NOT_MAIL)


def _eml_files(root: Path) -> list[Source | Unreadable]:
    found: list[Source | Unreadable] = []

    def failed(exc: OSError) -> None:
        # os.walk skips a folder it cannot list unless told: that would lose mail silently.
        where = Path(exc.filename) if exc.filename else root
        found.append(Unreadable(identifier(where), _reason(exc)))

    for folder, folders, files in os.walk(root, onerror=failed):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(".eml") and not name.startswith("."):
                found.append(Source("eml", Path(folder, name)))
    return found


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def maildir_subfolders(root: Path) -> list[str]:
    """Names of the Maildir++ subfolders of `root` (which a backfill of `root` leaves out)."""
    try:
        names = sorted(entry.name for entry in os.scandir(root) if entry.name.startswith("."))
    except OSError:
        return []
    return [name for name in names if name not in (".", "..") and is_maildir(root / name)]


def count(planned: Iterable[Source | Unreadable]) -> int:
    """How many items `read_all(planned)` will yield, for a progress display (may read mboxes)."""
    total = 0
    for source in planned:
        if isinstance(source, Unreadable) or source.kind == "eml":
            total += 1
            continue
        try:
            if source.kind == "maildir":
                total += len(_maildir_files(source.path))
            else:
                with source.path.open("rb") as file:
                    total += sum(1 for _ in split_mbox(file))
        except OSError:
            total += 1  # it will be one error
    return total


# -- Reading messages ----------------------------------------------------------------------------


def read_all(planned: Iterable[Source | Unreadable]) -> Iterator[Entry | Unreadable]:
    for source in planned:
        if isinstance(source, Unreadable):
            yield source
        elif source.kind == "eml":
            yield _read_file(source.path, identifier(source.path))
        elif source.kind == "mbox":
            yield from _read_mbox(source.path)
        else:
            yield from _read_maildir(source.path)


def _read_file(path: Path, name: str) -> Entry | Unreadable:
    try:
        return Entry(name, path.read_bytes())
    except OSError as exc:
        return Unreadable(name, _reason(exc))


def _read_mbox(path: Path) -> Iterator[Entry | Unreadable]:
    base = identifier(path)
    number = 0
    try:
        with path.open("rb") as file:
            for number, raw in enumerate(split_mbox(file), start=1):
                yield Entry(f"{base}#{number}", raw)
    except OSError as exc:
        # The messages before this point are stored; the rest of the file is not readable.
        yield Unreadable(f"{base}#{number + 1}", _reason(exc))


def split_mbox(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The messages of an mbox, one at a time, without their ``From `` separator lines.

    A ``From `` line starts a message only at the top of the file or after an empty line, so a
    body line that a careless writer left unescaped ("...\\nFrom what I hear") stays in its
    message (Python's mailbox.mbox would split there). The empty line before a separator, and
    at the end of the file, belongs to the format, not to the message. ``>From`` quoting is
    left as it is: mboxo and mboxrd files cannot be told apart.
    """
    current: list[bytes] | None = None
    after_blank = True
    for line in lines:
        if after_blank and line.startswith(b"From "):
            if current is not None:
                yield _join_message(current)
            current = []
            after_blank = False
            continue
        after_blank = line in _BLANK
        if current is not None:
            current.append(line)
    if current is not None:
        yield _join_message(current)


def _join_message(lines: list[bytes]) -> bytes:
    if lines and lines[-1] in _BLANK:
        lines.pop()
    return b"".join(lines)


def _read_maildir(root: Path) -> Iterator[Entry | Unreadable]:
    base = identifier(root)
    try:
        files = _maildir_files(root)
    except OSError as exc:
        yield Unreadable(base, _reason(exc))
        return
    for unique, path in sorted(files.items()):
        yield _read_maildir_message(root, unique, path, f"{base}#{identifier(Path(unique))}")


def _read_maildir_message(root: Path, unique: str, path: Path, name: str) -> Entry | Unreadable:
    entry = _read_file(path, name)
    if isinstance(entry, Entry) or path.exists():
        return entry
    # A mail client renamed it (read, flagged, or moved it from new/ to cur/) since we listed
    # the folder: look for it once more under its new name.
    try:
        moved = _maildir_files(root).get(unique)
    except OSError as exc:
        return Unreadable(name, _reason(exc))
    return _read_file(moved, name) if moved else Unreadable(name, "deleted while reading")


def _maildir_files(root: Path) -> dict[str, Path]:
    """Unique name → current file, over new/ and cur/ (tmp/ holds deliveries in progress)."""
    files: dict[str, Path] = {}
    for sub in ("new", "cur"):
        with os.scandir(root / sub) as entries:
            for entry in entries:
                if not entry.name.startswith(".") and entry.is_file():
                    # A file moved from new/ to cur/ while we listed both shows up twice.
                    files.setdefault(entry.name.split(":", 1)[0], Path(entry.path))
    return files


def identifier(path: Path) -> str:
    """`path` as text a database accepts: undecodable file-name bytes become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
