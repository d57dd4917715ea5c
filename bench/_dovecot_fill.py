"""Fill a folder of the test Dovecot with generated mail, then have Dovecot index it.

Two ways, so they can be compared (``bench/intake --fill``):

- ``maildir`` (default): write each message straight into the folder's Maildir ``cur/`` with
  the name Dovecot would give it (``S=`` size and ``W=`` CRLF size, so Dovecot never has to
  read a file to learn its size), owned by the Maildir's owner (``nobody`` when run as root,
  see ``tests/servers/dovecot.py``), mtime = the message's Date (Dovecot's INTERNALDATE).
- ``append``: IMAP MULTIAPPEND, ``APPEND_CHUNK`` messages per command.

Either way, indexing is done before anything is timed: one ``SELECT`` and one
``FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)`` make Dovecot build the folder's index, UID
list and cache, so no contender pays for that alone.
"""

from __future__ import annotations

import imaplib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from itertools import islice
from pathlib import Path

from _mailgen import Corpus, generate, has_attachment
from imapclient import IMAPClient

from tests.servers.dovecot import DovecotServer

APPEND_CHUNK = 200
GENERATE_CHUNK = 250
GENERATE_WINDOW = 5_000
FIRST_MTIME = 1_700_000_000  # Maildir names start with a time; Dovecot assigns UIDs in its order


@dataclass(frozen=True)
class Mailbox:
    """A filled folder: where it is and how to log in."""

    server: DovecotServer
    user: str
    password: str
    folder: str


@dataclass(frozen=True)
class FillReport:
    corpus: Corpus
    method: str
    fill_seconds: float
    index_seconds: float


def fill(
    server: DovecotServer,
    folders: dict[str, int],
    seed: int,
    method: str = "maildir",
) -> tuple[list[Mailbox], FillReport]:
    """Create one user with one folder per entry of ``folders`` (name -> message count).

    Message ``i`` goes into every folder holding more than ``i`` messages, so a smaller folder
    is a prefix of a larger one and each message is generated once.
    """
    user, password = server.new_user()
    mailboxes = [Mailbox(server, user, password, folder) for folder in folders]
    with _session(server, user) as client:
        for folder in folders:
            client.create_folder(folder)
    started = time.perf_counter()
    if method == "maildir":
        corpus = _fill_maildir(server, user, folders, seed)
    elif method == "append":
        corpus = _fill_append(server, user, folders, seed)
    else:
        raise ValueError(f"unknown fill method {method!r}")
    filled = time.perf_counter()
    for mailbox in mailboxes:
        index(mailbox, folders[mailbox.folder])
    os.sync()  # the source's dirty pages must not slow the first contender's fsyncs
    report = FillReport(corpus, method, filled - started, time.perf_counter() - filled)
    return mailboxes, report


def index(mailbox: Mailbox, expected: int) -> None:
    """Make Dovecot index the folder and check it sees ``expected`` messages.

    Plain imaplib: imapclient's fetch() cannot take the range ``1:*``.
    """
    imap = imaplib.IMAP4(mailbox.server.host, mailbox.server.port)
    try:
        imap.login(mailbox.user, mailbox.password)
        status, data = imap.select(_quoted(mailbox.folder), readonly=True)
        exists = int(data[0] or 0) if status == "OK" else -1
        if exists != expected:
            found = f"Dovecot sees {exists} messages"
            raise RuntimeError(f"{mailbox.folder}: {found}, expected {expected}")
        status, _ = imap.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
        if status != "OK":
            raise RuntimeError(f"FETCH 1:* failed in {mailbox.folder}")
    finally:
        imap.logout()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def generated(seed: int, count: int) -> Iterator[bytes]:
    """Messages 0..count-1 in order, generated on every core.

    A window at a time, so no more than ``GENERATE_WINDOW`` messages wait in memory.
    """
    workers = os.cpu_count() or 1
    if count < GENERATE_CHUNK or workers == 1:
        yield from (generate(seed, i) for i in range(count))
        return
    make = partial(generate, seed)
    with ProcessPoolExecutor(workers) as pool:
        for start in range(0, count, GENERATE_WINDOW):
            window = range(start, min(count, start + GENERATE_WINDOW))
            yield from pool.map(make, window, chunksize=GENERATE_CHUNK)


def _fill_maildir(server: DovecotServer, user: str, folders: dict[str, int], seed: int) -> Corpus:
    targets = {folder: server.maildir(user) / f".{folder}" / "cur" for folder in folders}
    owner = {folder: _owner(path) for folder, path in targets.items()}
    total = attachments = 0
    for i, raw in enumerate(generated(seed, max(folders.values()))):
        total += len(raw)
        attachments += has_attachment(raw)
        name = _maildir_name(i, raw)
        mtime = _date_of(raw)
        for folder, count in folders.items():
            if i < count:
                _write(targets[folder] / name, raw, owner[folder], mtime)
    return Corpus(max(folders.values()), total, attachments)


def _fill_append(server: DovecotServer, user: str, folders: dict[str, int], seed: int) -> Corpus:
    total = attachments = 0
    with _session(server, user) as client:
        messages = generated(seed, max(folders.values()))
        start = 0
        while chunk := list(islice(messages, APPEND_CHUNK)):
            total += sum(len(raw) for raw in chunk)
            attachments += sum(has_attachment(raw) for raw in chunk)
            crlf = [raw.replace(b"\n", b"\r\n") for raw in chunk]
            for folder, count in folders.items():
                wanted = crlf[: max(0, count - start)]
                if wanted:
                    client.multiappend(folder, wanted)
            start += len(chunk)
    return Corpus(max(folders.values()), total, attachments)


def _maildir_name(i: int, raw: bytes) -> str:
    """A name as Dovecot makes them: unique base, S=size, W=size with CRLF, :2,flags (none).

    The leading number orders the files, and Dovecot gives new files UIDs in that order.
    """
    crlf_size = len(raw) + raw.count(b"\n")
    return f"{FIRST_MTIME + i}.M{i}P{os.getpid()}.mailflow-bench,S={len(raw)},W={crlf_size}:2,"


def _date_of(raw: bytes) -> float:
    start = raw.index(b"\nDate: ") + 7
    return parsedate_to_datetime(raw[start : raw.index(b"\n", start)].decode()).timestamp()


def _owner(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_uid, stat.st_gid


def _write(path: Path, raw: bytes, owner: tuple[int, int], mtime: float) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        os.fchown(fd, *owner)
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


@contextmanager
def _session(server: DovecotServer, user: str) -> Iterator[IMAPClient]:
    """A logged-in IMAP connection to the test Dovecot, logged out on exit."""
    client = server.client(user)
    try:
        yield client
    finally:
        client.logout()
