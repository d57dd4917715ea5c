"""IMAP poller: fetch new messages by UID and push them through the intake pipeline.

Messages are read with BODY.PEEK[] so \\Seen is never set, and folders are selected read-only
unless the account asks to flag or move stored messages. Each batch of messages is committed in
one transaction together with the checkpoint (UIDVALIDITY, highest UID), and only then flagged or
moved. While a batch is stored, the next one is already being fetched (mailflow.imap_fetch):
that is only a read, so a crash still loses only batches not yet committed, which the
checkpoint makes the next pass fetch again. Storage is keyed on UIDVALIDITY+UID and on the
bytes' hash, so fetching a UID again (after a crash, a dropped connection, a second poller, or a
UIDVALIDITY reset that forces a rescan) stores nothing twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import imapclient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.orm import Session

from mailflow import imap
from mailflow.errors import ImapError, MailflowError
from mailflow.imap_fetch import BatchFetcher
from mailflow.intake import Intake
from mailflow.logs import fields
from mailflow.settings import ImapAccountSettings
from mailflow.store import checkpoints
from mailflow.store.checkpoints import Checkpoint
from mailflow.store.engine import translate_db_errors
from mailflow.store.messages import Arrival

log = logging.getLogger(__name__)
FIRST_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 900.0
IDLE_MAX_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE at least every 29 minutes
IDLE_CHECK_SECONDS = 1.0  # how quickly a stop request interrupts IDLE
STORED_FLAG = b"$MailflowStored"
NEW_MAIL = frozenset({b"EXISTS", b"RECENT"})


class ImapPoller:
    def __init__(
        self,
        account: ImapAccountSettings,
        intake: Intake,
        clock: Callable[[], datetime],
        *,
        defer_processing: bool = False,
    ) -> None:
        self.account = account
        self.intake = intake
        self.clock = clock
        self.defer_processing = defer_processing

    def poll_once(self) -> int:
        """One pass over every folder; returns how many new messages were stored."""
        with self._errors_recorded(), imap.session(self.account) as client:
            return self._pass(client)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set: IDLE where the server has it, else sleep between passes.

        Any failure closes the connection and reconnects after an exponential backoff; it never
        ends the loop, and it never affects another account's poller.
        """
        backoff = FIRST_BACKOFF_SECONDS
        while not stop.is_set():
            try:
                with self._errors_recorded(), imap.session(self.account) as client:
                    while not stop.is_set():
                        count = self._pass(client)
                        backoff = FIRST_BACKOFF_SECONDS
                        log.info("poll done", extra=fields(account=self.account.name, new=count))
                        self._wait(client, stop)
            except MailflowError as exc:
                log.error(
                    "poll failed",
                    extra=fields(account=self.account.name, error=str(exc), retry_in=backoff),
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _pass(self, client: imapclient.IMAPClient) -> int:
        return sum(self._poll_folder(client, folder) for folder in self.account.folders)

    def _poll_folder(self, client: imapclient.IMAPClient, folder: str) -> int:
        readonly = self.account.after_commit == "none"
        info = client.select_folder(folder, readonly=readonly)
        uidvalidity = int(info[b"UIDVALIDITY"])
        with translate_db_errors(), self.intake.sessions.begin() as session:
            mark = checkpoints.load(session, self.account.name, folder)
        last_uid = mark.last_uid if mark and mark.uidvalidity == uidvalidity else 0
        if mark and mark.uidvalidity not in (uidvalidity, 0):
            log.warning(
                "UIDVALIDITY changed, rescanning",
                extra=fields(account=self.account.name, folder=folder, new=uidvalidity),
            )
        # "N:*" always matches the highest UID, even when it is below N.
        uids = sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)
        stored = 0
        remaining = len(uids)
        fetcher = BatchFetcher(client, uids, self.account.batch_size)
        for batch in fetcher:
            remaining -= len(batch)
            stored += self._store_batch(fetcher, folder, uidvalidity, batch, remaining)
        self._mark_done(folder, Checkpoint(uidvalidity, uids[-1] if uids else last_uid))
        return stored

    def _store_batch(
        self,
        fetcher: BatchFetcher,
        folder: str,
        uidvalidity: int,
        batch: list[tuple[int, bytes]],
        remaining: int,
    ) -> int:
        items = [
            (raw, Arrival("imap", self.account.name, folder, uidvalidity, uid))
            for uid, raw in batch
        ]
        mark = Checkpoint(uidvalidity, batch[-1][0])

        def advance(session: Session) -> None:
            checkpoints.save(
                session, self.account.name, folder, mark, self.clock(), backlog=remaining
            )

        stored = self.intake.receive_many(items, also=advance)
        self._after_commit(fetcher, [uid for uid, _ in batch])
        if not self.defer_processing:
            self.intake.process_many([result.message_pk for result in stored if result.new])
        return sum(result.new for result in stored)

    def _mark_done(self, folder: str, mark: Checkpoint) -> None:
        with translate_db_errors(), self.intake.sessions.begin() as session:
            checkpoints.save(session, self.account.name, folder, mark, self.clock(), backlog=0)

    def _after_commit(self, fetcher: BatchFetcher, uids: list[int]) -> None:
        if self.account.after_commit == "none":
            return
        fetcher.drain()  # the next batch's FETCH may be out; its response must be read first
        if self.account.after_commit == "flag":
            fetcher.client.add_flags(uids, [STORED_FLAG], silent=True)
        elif self.account.after_commit == "move":
            fetcher.client.move(uids, self.account.move_to)

    def _wait(self, client: imapclient.IMAPClient, stop: threading.Event) -> None:
        """Until new mail (IDLE) or the poll interval passes, whichever is first."""
        interval = self.account.poll_interval_seconds
        if b"IDLE" not in client.capabilities():
            stop.wait(interval)
            return
        client.select_folder(self.account.folders[0], readonly=True)
        deadline = time.monotonic() + min(interval, IDLE_MAX_SECONDS)
        client.idle()
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                responses = client.idle_check(timeout=IDLE_CHECK_SECONDS)
                if any(len(item) > 1 and item[1] in NEW_MAIL for item in responses):
                    return
        finally:
            client.idle_done()

    @contextlib.contextmanager
    def _errors_recorded(self) -> Iterator[None]:
        """Translate connection failures to ImapError and remember them for `status`."""
        try:
            yield
        except MailflowError as exc:  # includes a failing token command (SecretError)
            self._record_error(str(exc))
            raise
        except (OSError, IMAPClientError) as exc:
            error = f"IMAP account {self.account.name!r}: {type(exc).__name__}: {exc}"
            self._record_error(error)
            raise ImapError(error) from None

    def _record_error(self, error: str) -> None:
        try:
            with self.intake.sessions.begin() as session:
                checkpoints.record_error(
                    session, self.account.name, self.account.folders, error, self.clock()
                )
        except Exception:  # the store may be the thing that failed
            log.exception("could not record poll error", extra=fields(account=self.account.name))
