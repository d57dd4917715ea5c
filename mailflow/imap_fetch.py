"""Fetching message bytes by UID in bounded batches, the next batch requested ahead.

Batches are bounded by count and by bytes, so memory stays flat however large the folder and
however the messages are sized. A message larger than one batch's byte budget is fetched on its
own, in partial-fetch chunks spooled to a temporary file, so the IMAP layer never holds more
than one chunk of it besides the final bytes handed to the store.

Pipelining: the UID FETCH for batch N+1 is sent before batch N is handed to the caller, so the
server reads and sends N+1 (into the socket buffers) while the caller stores and commits N.
imapclient only has fetch() = send and wait, so the requests go through the imaplib connection
underneath (``client._imap``), exactly as imapclient's own fetch() sends them; that use of
imaplib's internals is confined to ``_Wire`` and this module. Nothing about durability changes:
what the caller commits, and when, is its business; a request sent ahead is only a read.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from typing import Any, Protocol

import imapclient
from imapclient.exceptions import IMAPClientError
from imapclient.response_parser import parse_fetch_response

SIZE_QUERY_CHUNK = 1000  # UIDs per RFC822.SIZE request
BATCH_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
SPOOL_IN_MEMORY_BYTES = 1024 * 1024
Fetched = list[tuple[int, bytes]]
Plan = list[tuple[int, int]]  # (uid, size) of one batch

# The shapes Dovecot (and most servers) answer with, as imaplib hands them over (the "* " and
# "FETCH" removed). Parsed with one regex each; anything else goes to imapclient's parser.
_BODY_HEAD = re.compile(rb"\d+ \(UID (\d+) BODY\[\] \{\d+\}")
_SIZE_LINE = re.compile(rb"\d+ \(UID (\d+) RFC822\.SIZE (\d+)\)")


class _Wire(Protocol):
    """The slice of imaplib.IMAP4 used to send a command now and read its response later."""

    def _command(self, name: str, *args: str) -> bytes: ...

    def _command_complete(self, name: str, tag: bytes) -> tuple[str, list[Any]]: ...

    def _untagged_response(self, typ: str, dat: list[Any], name: str) -> tuple[str, list[Any]]: ...


class _Request:
    """A UID FETCH sent ahead; ``bodies`` once its response has been read."""

    def __init__(self, wire: _Wire, uids: list[int]) -> None:
        self.tag = wire._command("UID", "FETCH", _uid_set(uids), "(BODY.PEEK[])")
        self.uids = uids
        self.bodies: dict[int, bytes] | None = None


class BatchFetcher:
    """Iterate ``[(uid, raw), ...]`` in UID order; messages expunged meanwhile are skipped.

    At most one request is on the wire at a time: the next batch's, sent just after the current
    batch's response was read. While it is out the connection must carry nothing else, so call
    ``drain()`` before using ``client`` during the iteration (to flag or move a stored batch).
    """

    def __init__(self, client: imapclient.IMAPClient, uids: list[int], batch_size: int) -> None:
        self.client = client
        self.uids = uids
        self.batch_size = batch_size
        self._wire: _Wire = client._imap
        self._ahead: _Request | None = None

    def __iter__(self) -> Iterator[Fetched]:
        plans = _plan(self._wire, self.uids, self.batch_size)
        plan = next(plans, None)
        while plan is not None:
            if _is_large(plan):
                [(uid, size)] = plan
                raw = _fetch_large(self.client, uid, size)
                batch = [(uid, raw)] if raw is not None else []
            else:
                # Sent ahead in the previous round, except the first batch.
                batch = self._take(self._ahead or _Request(self._wire, [u for u, _ in plan]))
            plan = next(plans, None)  # nothing is outstanding here: it may query sizes
            if plan is not None and not _is_large(plan):
                self._ahead = _Request(self._wire, [uid for uid, _ in plan])
            if batch:
                yield batch

    def drain(self) -> None:
        """Read the response to the request sent ahead, so the connection is free."""
        if self._ahead is not None and self._ahead.bodies is None:
            self._ahead.bodies = _bodies(_complete(self._wire, self._ahead.tag))

    def _take(self, request: _Request) -> Fetched:
        self._ahead = request
        self.drain()
        self._ahead = None
        bodies = request.bodies or {}
        return [(uid, bodies[uid]) for uid in request.uids if uid in bodies]


def _plan(wire: _Wire, uids: list[int], batch_size: int) -> Iterator[Plan]:
    """Group (uid, size) pairs into batches within the count and byte budgets."""
    batch: Plan = []
    total = 0
    for start in range(0, len(uids), SIZE_QUERY_CHUNK):
        chunk = uids[start : start + SIZE_QUERY_CHUNK]
        tag = wire._command("UID", "FETCH", _uid_set(chunk), "(RFC822.SIZE)")
        sizes = _sizes(_complete(wire, tag))
        for uid in chunk:
            if uid not in sizes:
                continue  # expunged since SEARCH
            size = sizes[uid]
            if batch and (len(batch) >= batch_size or total + size > BATCH_BYTES):
                yield batch
                batch, total = [], 0
            batch.append((uid, size))
            total += size
    if batch:
        yield batch


def _is_large(plan: Plan) -> bool:
    return len(plan) == 1 and plan[0][1] > BATCH_BYTES


def _complete(wire: _Wire, tag: bytes) -> list[Any]:
    """Wait for the tagged response to ``tag``; the untagged FETCH data, as imapclient does."""
    typ, data = wire._command_complete("FETCH", tag)
    if typ != "OK":
        raise IMAPClientError(f"fetch failed: {data}")
    return wire._untagged_response(typ, data, "FETCH")[1]


def _uid_set(uids: list[int]) -> str:
    """A compact UID set ("1:100,205"): the UIDs of a batch are mostly consecutive."""
    runs: list[str] = []
    start = previous = uids[0]
    for uid in [*uids[1:], None]:
        if uid is not None and uid == previous + 1:
            previous = uid
            continue
        runs.append(str(start) if start == previous else f"{start}:{previous}")
        if uid is not None:
            start = previous = uid
    return ",".join(runs)


def _bodies(data: list[Any]) -> dict[int, bytes]:
    """UID -> BODY[] from imaplib's FETCH data: items ``(head, literal)`` each followed by ")"."""
    found: dict[int, bytes] = {}
    pairs = zip(data[::2], data[1::2], strict=False)
    if len(data) % 2 == 0:
        for head, trailer in pairs:
            if not isinstance(head, tuple) or trailer != b")":
                break
            match = _BODY_HEAD.fullmatch(head[0])
            if match is None:
                break
            found[int(match[1])] = head[1]
        else:
            return found
    # imapclient's generic parser: the UID after the body, other items, unsolicited FLAGS...
    parsed = parse_fetch_response(data, True, True)
    return {
        uid: bytes(item[b"BODY[]"])
        for uid, item in parsed.items()
        if item.get(b"BODY[]") is not None
    }


def _sizes(data: list[Any]) -> dict[int, int]:
    """UID -> RFC822.SIZE from imaplib's FETCH data."""
    found: dict[int, int] = {}
    for line in data:
        match = _SIZE_LINE.fullmatch(line) if isinstance(line, bytes) else None
        if match is None:
            break
        found[int(match[1])] = int(match[2])
    else:
        return found
    parsed = parse_fetch_response(data, True, True)
    return {uid: int(item.get(b"RFC822.SIZE", 0)) for uid, item in parsed.items()}


def _fetch_large(client: imapclient.IMAPClient, uid: int, size: int) -> bytes | None:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
        offset = 0
        while True:
            part = f"BODY[]<{offset}>".encode()
            response = client.fetch([uid], [f"BODY.PEEK[]<{offset}.{CHUNK_BYTES}>"])
            if uid not in response:
                return None
            data = bytes(response[uid].get(part, b"") or b"")
            spool.write(data)
            offset += len(data)
            # RFC822.SIZE is the server's count; stop on a short chunk whatever it said.
            if len(data) < CHUNK_BYTES or offset >= max(size, 1) + CHUNK_BYTES * 64:
                break
        spool.seek(0)
        return spool.read()
