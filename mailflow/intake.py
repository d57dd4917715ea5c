"""The one intake pipeline every channel (SMTP, LMTP, IMAP, files) goes through.

Order matters: the raw bytes and their provenance are committed first, in their own
transaction, so nothing that happens later (a parser crash, a bug, a kill -9) can lose a
message. Processing (mailflow/stages.py) then runs outside any transaction and records its
findings in a second one; if it fails, the message is kept in quarantine with the error, to be
retried after a fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailflow.errors import StorageError, StorageUnavailable
from mailflow.headers import clean_text
from mailflow.logs import fields
from mailflow.stages import Record, Stage, record_headers
from mailflow.store.engine import translate_db_errors
from mailflow.store.messages import Arrival, Stored, store_many
from mailflow.store.models import Blob, Message

log = logging.getLogger(__name__)
STORE_ATTEMPTS = 3
MAX_ERROR_CHARS = 2000
PROCESS_BATCH = 50  # messages per processing transaction: one commit (fsync) each


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outcome:
    message_pk: int
    status: str
    error: str | None = None


class Intake:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        stages: Sequence[Stage],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.stages = tuple(stages)
        self.clock = clock

    def receive(self, raw: bytes, arrival: Arrival) -> Stored:
        """Store and commit the raw message. Raises StorageError if it could not commit."""
        [stored] = self.receive_many([(raw, arrival)])
        return stored

    def receive_many(
        self,
        items: Sequence[tuple[bytes, Arrival]],
        also: Callable[[Session], None] | None = None,
    ) -> list[Stored]:
        """Store several messages in one transaction (one fsync), plus ``also``'s writes.

        The IMAP poller passes its checkpoint update as ``also``, so the checkpoint moves if
        and only if the messages it covers are committed.
        """
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                with translate_db_errors(), self.sessions.begin() as session:
                    now = self.clock()
                    stored = store_many(session, items, now)
                    if also is not None:
                        also(session)
            except IntegrityError:
                # Another writer stored the same bytes or UID between our read and our
                # insert; the next attempt sees its rows and records repeats instead.
                if attempt == STORE_ATTEMPTS:
                    raise StorageError("could not store messages: conflicting writers") from None
                continue
            self._log_stored(items, stored)
            return stored
        raise AssertionError("unreachable")

    def _log_stored(self, items: Sequence[tuple[bytes, Arrival]], stored: list[Stored]) -> None:
        for (raw, arrival), result in zip(items, stored, strict=True):
            log.log(
                logging.INFO if len(items) == 1 else logging.DEBUG,
                "message stored" if result.new else "message seen again",
                extra=fields(
                    id=result.message_pk,
                    sha256=result.sha256[:16],
                    size=len(raw),
                    channel=arrival.channel,
                ),
            )

    def pending(
        self,
        limit: int = 1000,
        *,
        older_than: datetime | None = None,
        partition: tuple[int, int] = (0, 1),
    ) -> list[int]:
        """Ids of messages stored but not processed (a crash, or processing deferred).

        ``partition=(k, n)`` selects ids with ``id % n == k``, so n workers share the backlog
        without ever processing the same message twice at once.
        """
        index, count = partition
        query = select(Message.id).where(Message.status == "received").order_by(Message.id)
        if count > 1:
            query = query.where(Message.id % count == index)
        if older_than is not None:
            query = query.where(Message.first_received_at < older_than)
        with translate_db_errors(), self.sessions() as session:
            return list(session.scalars(query.limit(limit)))

    def process_pending(
        self, *, older_than: datetime | None = None, partition: tuple[int, int] = (0, 1)
    ) -> int:
        """Process every message left in 'received'; returns how many were processed."""
        done = 0
        while batch := self.pending(older_than=older_than, partition=partition):
            for start in range(0, len(batch), PROCESS_BATCH):
                self.process_many(batch[start : start + PROCESS_BATCH])
            done += len(batch)
        return done

    def process_many(self, message_pks: Sequence[int]) -> list[Outcome]:
        """Process several messages: one read, the stages' pure halves, one write transaction.

        If that shared write fails for any reason but an unavailable store, each message is
        processed again on its own, so one bad message never holds up the others.
        """
        with translate_db_errors(), self.sessions() as session:
            rows = session.execute(
                select(Message.id, Blob.data)
                .join(Blob, Blob.sha256 == Message.sha256)
                .where(Message.id.in_(message_pks))
            )
            raws = {pk: data for pk, data in rows}
        findings = {pk: self._analyse(raws[pk]) for pk in message_pks}
        try:
            with translate_db_errors(), self.sessions.begin() as session:
                return [
                    self._write(session, session.get_one(Message, pk), raws[pk], found)
                    for pk, found in findings.items()
                ]
        except StorageUnavailable:
            raise
        except Exception:  # isolate the culprit, message by message
            return [self.process(pk) for pk in message_pks]

    def _analyse(self, raw: bytes) -> list[Record] | Exception:
        try:
            return [stage(raw) for stage in self.stages]
        except Exception as exc:  # any stage failure quarantines, never drops
            return exc

    def _write(
        self, session: Session, message: Message, raw: bytes, found: list[Record] | Exception
    ) -> Outcome:
        if isinstance(found, Exception):
            return self._quarantine(session, message, raw, found)
        for record in found:
            record(session, message)
        message.status = "processed"
        message.error = None
        message.processed_at = self.clock()
        return Outcome(message.id, "processed")

    def process(self, message_pk: int) -> Outcome:
        """Run the stages. Message problems end in quarantine; only an unavailable store raises.

        The stages' pure halves run outside any transaction; their records are then written,
        with the new status, in one short transaction. If anything fails, nothing the stages
        found is kept and the quarantine is recorded instead, so a half-processed message is
        never left behind.
        """
        with translate_db_errors(), self.sessions() as session:
            raw = session.scalars(
                select(Blob.data)
                .join(Message, Message.sha256 == Blob.sha256)
                .where(Message.id == message_pk)
            ).one()
        try:
            found = self._analyse(raw)
            with translate_db_errors(), self.sessions.begin() as session:
                return self._write(session, session.get_one(Message, message_pk), raw, found)
        except StorageUnavailable:
            raise
        except Exception as exc:  # a record failed to write: quarantine, in a new transaction
            with translate_db_errors(), self.sessions.begin() as session:
                return self._quarantine(session, session.get_one(Message, message_pk), raw, exc)

    def accept(self, raw: bytes, arrival: Arrival) -> Stored:
        """Receive, then process. Only a failure to store is reported to the caller."""
        stored = self.receive(raw, arrival)
        if stored.new:
            try:
                self.process(stored.message_pk)
            except StorageUnavailable as exc:
                # Stored and committed already: it stays 'received' and a retry picks it up.
                log.warning(
                    "processing deferred", extra=fields(id=stored.message_pk, error=str(exc))
                )
        return stored

    def _quarantine(
        self, session: Session, message: Message, raw: bytes, exc: Exception
    ) -> Outcome:
        # Nothing the stages found was kept; the basic headers (a total function) still let
        # the secretariat see what the quarantined message is.
        record_headers(raw)(session, message)
        error = clean_text(f"{type(exc).__name__}: {exc}", MAX_ERROR_CHARS)
        message.status = "quarantined"
        message.error = error
        message.processed_at = self.clock()
        log.warning("message quarantined", extra=fields(id=message.id, error=type(exc).__name__))
        return Outcome(message.id, "quarantined", error)
