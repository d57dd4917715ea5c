"""IMAP poller: fetch new messages by UID and push them through the intake pipeline.

Messages are read with BODY.PEEK[] so \\Seen is never set, and selected read-only unless the
account asks to flag or move stored messages. The checkpoint (UIDVALIDITY, highest UID) is only
an optimisation: storage is keyed on UIDVALIDITY+UID and on the bytes' hash, so fetching a UID
again (after a crash, or a UIDVALIDITY reset that forces a rescan) stores nothing twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import imapclient
from imapclient.exceptions import IMAPClientError

from mailflow import imap
from mailflow.errors import ImapError, MailflowError, StorageError
from mailflow.intake import Intake
from mailflow.logs import fields
from mailflow.settings import ImapAccountSettings
from mailflow.store import checkpoints
from mailflow.store.checkpoints import Checkpoint
from mailflow.store.messages import Arrival

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 900
STORED_FLAG = b"$MailflowStored"


class ImapPoller:
    def __init__(
        self, account: ImapAccountSettings, intake: Intake, clock: Callable[[], datetime]
    ) -> None:
        self.account = account
        self.intake = intake
        self.clock = clock

    def poll_once(self) -> int:
        """One pass over every folder; returns how many new messages were stored."""
        try:
            with imap.session(self.account) as client:
                return sum(self._poll_folder(client, folder) for folder in self.account.folders)
        except (ImapError, StorageError) as exc:
            self._record_error(str(exc))
            raise
        except (OSError, IMAPClientError) as exc:
            error = f"IMAP account {self.account.name!r}: {type(exc).__name__}: {exc}"
            self._record_error(error)
            raise ImapError(error) from None

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; failures back off, and never end the loop."""
        delay = self.account.poll_interval_seconds
        while not stop.is_set():
            try:
                count = self.poll_once()
                delay = self.account.poll_interval_seconds
                log.info("poll done", extra=fields(account=self.account.name, new=count))
            except MailflowError as exc:
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                log.error(
                    "poll failed",
                    extra=fields(account=self.account.name, error=str(exc), retry_in=delay),
                )
            stop.wait(delay)

    def _poll_folder(self, client: imapclient.IMAPClient, folder: str) -> int:
        readonly = self.account.after_commit == "none"
        info = client.select_folder(folder, readonly=readonly)
        uidvalidity = int(info[b"UIDVALIDITY"])
        with self.intake.sessions.begin() as session:
            mark = checkpoints.load(session, self.account.name, folder)
        last_uid = mark.last_uid if mark and mark.uidvalidity == uidvalidity else 0
        if mark and mark.uidvalidity != uidvalidity:
            log.warning(
                "UIDVALIDITY changed, rescanning",
                extra=fields(
                    account=self.account.name, folder=folder, old=mark.uidvalidity, new=uidvalidity
                ),
            )
        # "N:*" always matches the highest UID, even when it is below N.
        uids = sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)
        stored = 0
        for batch in _chunks(uids, self.account.batch_size):
            stored += self._fetch_batch(client, folder, uidvalidity, batch)
        return stored

    def _fetch_batch(
        self, client: imapclient.IMAPClient, folder: str, uidvalidity: int, batch: list[int]
    ) -> int:
        response = client.fetch(batch, ["BODY.PEEK[]"])
        stored = 0
        for uid in batch:
            item = response.get(uid)
            if item is None or b"BODY[]" not in item:
                continue  # expunged between SEARCH and FETCH
            arrival = Arrival("imap", self.account.name, folder, uidvalidity, uid)
            stored += self.intake.accept(bytes(item[b"BODY[]"]), arrival).new
        with self.intake.sessions.begin() as session:
            checkpoints.save(
                session, self.account.name, folder, Checkpoint(uidvalidity, batch[-1]), self.clock()
            )
        self._after_commit(client, batch)
        return stored

    def _after_commit(self, client: imapclient.IMAPClient, uids: list[int]) -> None:
        if self.account.after_commit == "flag":
            client.add_flags(uids, [STORED_FLAG])
        elif self.account.after_commit == "move":
            client.move(uids, self.account.move_to)

    def _record_error(self, error: str) -> None:
        try:
            with self.intake.sessions.begin() as session:
                checkpoints.record_error(
                    session, self.account.name, self.account.folders, error, self.clock()
                )
        except Exception:
            log.exception("could not record poll error", extra=fields(account=self.account.name))


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
