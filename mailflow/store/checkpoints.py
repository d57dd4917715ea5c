"""IMAP checkpoints: per (account, folder), the UIDVALIDITY and the highest UID stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailflow.headers import clean_text
from mailflow.store.models import ImapCheckpoint


@dataclass(frozen=True)
class Checkpoint:
    uidvalidity: int
    last_uid: int


def load(session: Session, account: str, folder: str) -> Checkpoint | None:
    row = session.get(ImapCheckpoint, (account, folder))
    if row is None:
        return None
    return Checkpoint(row.uidvalidity, row.last_uid)


def save(
    session: Session,
    account: str,
    folder: str,
    checkpoint: Checkpoint,
    now: datetime,
    *,
    backlog: int | None = None,
) -> None:
    """Move the mark forward; never back, unless UIDVALIDITY changed (a rescan)."""
    row = session.get(ImapCheckpoint, (account, folder))
    if row is None:
        row = ImapCheckpoint(account=account, folder=folder, uidvalidity=0, last_uid=0)
        session.add(row)
    if row.uidvalidity == checkpoint.uidvalidity:
        # A second poller on the same folder may have gone further already.
        row.last_uid = max(row.last_uid, checkpoint.last_uid)
    else:
        row.uidvalidity = checkpoint.uidvalidity
        row.last_uid = checkpoint.last_uid
    row.last_success_at = now
    if backlog is not None:
        row.backlog = backlog


def record_error(
    session: Session, account: str, folders: tuple[str, ...], error: str, now: datetime
) -> None:
    """Remember the last failure for `mailflow status`, without touching the UID mark."""
    for folder in folders:
        row = session.get(ImapCheckpoint, (account, folder))
        if row is None:
            row = ImapCheckpoint(account=account, folder=folder, uidvalidity=0, last_uid=0)
            session.add(row)
        row.last_error = clean_text(error, 2000)
        row.last_error_at = now
