"""The declarative Base, its naming convention, the CHECK helper, vocabularies and audit log.

Import models from `mailflow.store.models`, which loads every module of the schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import CheckConstraint, Index, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mailflow.store.types import UTCDateTime, utcnow
from mailflow.vocabulary import Term

# Every constraint and index gets a deterministic name, identical on SQLite and PostgreSQL, so a
# later migration can drop it by name on both. All names stay under PostgreSQL's 63-byte limit
# (a test checks), because PostgreSQL would otherwise truncate them and the backends diverge.
NAMING_CONVENTION: dict[str, str] = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
}

_CODE = re.compile(r"^[a-z][a-z0-9_]*$")


class Base(DeclarativeBase):
    """Base of every mailflow table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every `Mapped[datetime]` is a UTCDateTime: no naive timestamps anywhere in the schema.
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def check_in(column: str, values: Iterable[str | Term]) -> CheckConstraint:
    """A CHECK constraint `column IN (values)`, named after the column (ck_<table>_<column>)."""
    codes = [value.code if isinstance(value, Term) else value for value in values]
    for code in codes:
        # The codes are spliced into SQL text: accept identifiers only.
        if not _CODE.match(code):
            raise ValueError(f"not a plain code: {code!r}")
    listed = ", ".join(f"'{code}'" for code in codes)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


class _VocabularyMixin:
    """(code, label_en, label_fr): a controlled vocabulary seeded from mailflow.vocabulary."""

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    label_en: Mapped[str] = mapped_column(String(255))
    label_fr: Mapped[str] = mapped_column(String(255))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.code}>"


class MessageKind(_VocabularyMixin, Base):
    """What a message is: report, followup, action_report, auto_reply, bounce, spam, other."""

    __tablename__ = "message_kinds"


class Violation(_VocabularyMixin, Base):
    """An alleged violation of an MP's rights, as worded in the Committee's decisions."""

    __tablename__ = "violations"


class ActionType(_VocabularyMixin, Base):
    """An action a parliament can take on cases (and report to the Committee)."""

    __tablename__ = "action_types"


class ReporterType(_VocabularyMixin, Base):
    """Who wrote a report: the MP, a relative, a lawyer, an NGO..."""

    __tablename__ = "reporter_types"


class RecipientRole(_VocabularyMixin, Base):
    """The role of an outreach contact: Speaker, IPU group, committee, MP, media..."""

    __tablename__ = "recipient_roles"


class AuditLog(Base):
    """Who did what to which record, and when. Append-only by convention."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str | None] = mapped_column(Text)  # JSON text
