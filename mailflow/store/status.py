"""What `mailflow status` reports, read from the store in one go."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from mailflow.store.models import ImapCheckpoint, Message, MessageSource, Report


@dataclass(frozen=True)
class FolderStatus:
    account: str
    folder: str
    uidvalidity: int
    last_uid: int
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    backlog: int | None

    @property
    def failing(self) -> bool:
        """The last attempt failed (an error newer than the last success)."""
        if self.last_error_at is None:
            return False
        return self.last_success_at is None or self.last_error_at > self.last_success_at


@dataclass(frozen=True)
class IntakeStatus:
    by_status: dict[str, int]
    folders: tuple[FolderStatus, ...]
    quarantined_by_account: dict[str, int]
    urgent_untriaged: int = 0  # urgent reports still in status "new"
    by_kind: dict[str, int] | None = None


def intake_status(session: Session) -> IntakeStatus:
    counts = session.execute(select(Message.status, func.count()).group_by(Message.status))
    quarantined = session.execute(
        select(MessageSource.account, func.count(distinct(Message.id)))
        .join(Message, Message.id == MessageSource.message_pk)
        .where(Message.status == "quarantined", MessageSource.account.is_not(None))
        .group_by(MessageSource.account)
    )
    rows = session.scalars(
        select(ImapCheckpoint).order_by(ImapCheckpoint.account, ImapCheckpoint.folder)
    )
    folders = tuple(
        FolderStatus(
            row.account,
            row.folder,
            row.uidvalidity,
            row.last_uid,
            row.last_success_at,
            row.last_error,
            row.last_error_at,
            row.backlog,
        )
        for row in rows
    )
    kinds = session.execute(
        select(Message.kind, func.count()).where(Message.kind.is_not(None)).group_by(Message.kind)
    )
    urgent = session.scalar(
        select(func.count()).select_from(Report).where(Report.urgent, Report.status == "new")
    )
    return IntakeStatus(
        by_status={str(state): int(n) for state, n in counts},
        folders=folders,
        quarantined_by_account={str(acct): int(n) for acct, n in quarantined},
        urgent_untriaged=int(urgent or 0),
        by_kind={str(kind): int(n) for kind, n in kinds},
    )
