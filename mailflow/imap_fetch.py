"""Fetching message bytes by UID in bounded batches.

Batches are bounded by count and by bytes, so memory stays flat however large the folder and
however the messages are sized. A message larger than one batch's byte budget is fetched on its
own, in partial-fetch chunks spooled to a temporary file, so the IMAP layer never holds more
than one chunk of it besides the final bytes handed to the store.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import imapclient

SIZE_QUERY_CHUNK = 1000  # UIDs per RFC822.SIZE request
BATCH_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
SPOOL_IN_MEMORY_BYTES = 1024 * 1024
Fetched = list[tuple[int, bytes]]


def fetch_batches(
    client: imapclient.IMAPClient, uids: list[int], batch_size: int
) -> Iterator[Fetched]:
    """Yield ``[(uid, raw), ...]`` in UID order; messages expunged meanwhile are skipped."""
    for plan in _plan(client, uids, batch_size):
        if len(plan) == 1 and plan[0][1] > BATCH_BYTES:
            uid, size = plan[0]
            raw = _fetch_large(client, uid, size)
            if raw is not None:
                yield [(uid, raw)]
            continue
        wanted = [uid for uid, _ in plan]
        response = client.fetch(wanted, ["BODY.PEEK[]"])
        batch = [
            (uid, bytes(response[uid][b"BODY[]"]))
            for uid in wanted
            if uid in response and b"BODY[]" in response[uid]
        ]
        if batch:
            yield batch


def _plan(
    client: imapclient.IMAPClient, uids: list[int], batch_size: int
) -> Iterator[list[tuple[int, int]]]:
    """Group (uid, size) pairs into batches within the count and byte budgets."""
    batch: list[tuple[int, int]] = []
    total = 0
    for start in range(0, len(uids), SIZE_QUERY_CHUNK):
        chunk = uids[start : start + SIZE_QUERY_CHUNK]
        sizes = client.fetch(chunk, ["RFC822.SIZE"])
        for uid in chunk:
            if uid not in sizes:
                continue  # expunged since SEARCH
            size = int(sizes[uid].get(b"RFC822.SIZE", 0))
            if batch and (len(batch) >= batch_size or total + size > BATCH_BYTES):
                yield batch
                batch, total = [], 0
            batch.append((uid, size))
            total += size
    if batch:
        yield batch


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
