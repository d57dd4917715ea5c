"""The Committee's records: reporters, MPs, cases, reports, action reports, decisions."""

from __future__ import annotations

import re
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from mailflow.store.models_base import Base, Violation, check_in
from mailflow.store.types import utcnow
from mailflow.vocabulary import CASE_STATUSES, MP_STATUSES

REPORT_STATUSES = ("new", "triaged", "linked", "closed")
VISIBILITIES = ("public", "confidential")

# ISO3-N (BDI-42) or ISO3-Coll-NN (UGA-Coll-01): the normalised form of SCHEMA.md.
_CASE_CODE = re.compile(r"^[A-Z]{3}-(?:[0-9]{1,4}|Coll-[0-9]{2,3})$")


def is_case_code(code: str) -> bool:
    """True when `code` is a normalised IPU case code such as `TUR-69` or `UGA-Coll-01`."""
    return bool(_CASE_CODE.match(code))


def _link(name: str, left: str, left_target: str, right: str, right_target: str) -> Table:
    """A many-to-many table; rows go with the record on the left or right (never a vocabulary
    code: deleting a code still in use must fail, not silently unlink it)."""
    right_delete = None if right_target.endswith(".code") else "CASCADE"
    return Table(
        name,
        Base.metadata,
        Column(left, ForeignKey(left_target, ondelete="CASCADE"), primary_key=True),
        Column(right, ForeignKey(right_target, ondelete=right_delete), primary_key=True),
        Index(None, right),  # the primary key already serves lookups by `left`
    )


case_persons = _link("case_persons", "case_id", "cases.id", "person_id", "persons.id")
case_violations = _link("case_violations", "case_id", "cases.id", "violation", "violations.code")
report_violations = _link(
    "report_violations", "report_id", "reports.id", "violation", "violations.code"
)
report_cases = _link("report_cases", "report_id", "reports.id", "case_id", "cases.id")
report_persons = _link("report_persons", "report_id", "reports.id", "person_id", "persons.id")
action_report_cases = _link(
    "action_report_cases", "action_report_id", "action_reports.id", "case_id", "cases.id"
)
decision_cases = _link("decision_cases", "decision_id", "decisions.id", "case_id", "cases.id")


class Reporter(Base):
    """A person who reported an MP in danger.

    CONFIDENTIAL (table info {"confidential": True}): reporters risk reprisals. Their identity
    is disclosed only where `identity_disclosable` is true, and never appears in logs, error
    messages or exports that do not check this flag.
    """

    __tablename__ = "reporters"
    __table_args__ = ({"info": {"confidential": True}},)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(64))
    reporter_type: Mapped[str | None] = mapped_column(ForeignKey("reporter_types.code"))
    language: Mapped[str | None] = mapped_column(String(8))
    identity_disclosable: Mapped[bool | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Person(Base):
    """A member (or former member) of parliament the Committee hears about."""

    __tablename__ = "persons"
    __table_args__ = (check_in("mp_status", MP_STATUSES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    family_name: Mapped[str | None] = mapped_column(String(255), index=True)
    country: Mapped[str] = mapped_column(String(3), index=True)  # ISO 3166-1 alpha-3
    sex: Mapped[str | None] = mapped_column(String(16))
    mp_status: Mapped[str | None] = mapped_column(String(8))
    political_affiliation: Mapped[str | None] = mapped_column(String(255))
    parliament: Mapped[str | None] = mapped_column(String(255))  # parliament or chamber
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Case(Base):
    """A case of the Committee, e.g. TUR-69 (one MP) or UGA-Coll-01 (several)."""

    __tablename__ = "cases"
    __table_args__ = (check_in("status", CASE_STATUSES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    country: Mapped[str] = mapped_column(String(3), index=True)
    title: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="open")
    urgent: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    persons: Mapped[list[Person]] = relationship(secondary=case_persons)
    violations: Mapped[list[Violation]] = relationship(secondary=case_violations)

    @validates("code")
    def _validate_code(self, _key: str, code: str) -> str:
        if not is_case_code(code):
            raise ValueError(f"not a case code (ISO3-N or ISO3-Coll-NN): {code!r}")
        return code


class Report(Base):
    """A report of an MP in danger, built from one or more messages (see messages.report_id)."""

    __tablename__ = "reports"
    __table_args__ = (check_in("status", REPORT_STATUSES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)  # e.g. R-2026-000123
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("reporters.id"), index=True)
    country: Mapped[str | None] = mapped_column(String(3), index=True)
    language: Mapped[str | None] = mapped_column(String(8))
    urgent: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    reporter: Mapped[Reporter | None] = relationship()
    violations: Mapped[list[Violation]] = relationship(secondary=report_violations)
    cases: Mapped[list[Case]] = relationship(secondary=report_cases)
    persons: Mapped[list[Person]] = relationship(secondary=report_persons)


class ActionReport(Base):
    """A parliament's account of what it did about cases (often answering a campaign)."""

    __tablename__ = "action_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The reporting parliament (ISO3); None until someone can tell which parliament wrote.
    country: Mapped[str | None] = mapped_column(String(3), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    summary: Mapped[str | None] = mapped_column(Text)

    actions: Mapped[list[ActionReportAction]] = relationship(
        back_populates="action_report", cascade="all, delete-orphan"
    )
    cases: Mapped[list[Case]] = relationship(secondary=action_report_cases)


class ActionReportAction(Base):
    """One action an action report says was taken (not merely planned)."""

    __tablename__ = "action_report_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    action_report_id: Mapped[int] = mapped_column(
        ForeignKey("action_reports.id", ondelete="CASCADE"), index=True
    )
    action_type: Mapped[str] = mapped_column(ForeignKey("action_types.code"))
    description: Mapped[str | None] = mapped_column(Text)

    action_report: Mapped[ActionReport] = relationship(back_populates="actions")


class Decision(Base):
    """A decision on cases adopted by the Committee or the Governing Council."""

    __tablename__ = "decisions"
    __table_args__ = (check_in("visibility", VISIBILITIES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session: Mapped[str] = mapped_column(String(100))  # e.g. "213th session"
    adopted_on: Mapped[date]
    body: Mapped[str] = mapped_column(String(100))  # e.g. "Governing Council"
    symbol: Mapped[str | None] = mapped_column(String(100))  # document symbol
    # Confidential until someone decides otherwise: publishing by mistake cannot be undone.
    visibility: Mapped[str] = mapped_column(String(16), default="confidential")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cases: Mapped[list[Case]] = relationship(secondary=decision_cases)
    documents: Mapped[list[DecisionDocument]] = relationship(
        back_populates="decision", cascade="all, delete-orphan"
    )


class DecisionDocument(Base):
    """A decision's text in one language (PDF, DOCX...); bytes in `blobs`."""

    __tablename__ = "decision_documents"
    __table_args__ = (UniqueConstraint("decision_id", "language", "blob_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(8))
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    media_type: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str | None] = mapped_column(Text)
    official: Mapped[bool] = mapped_column(default=False)

    decision: Mapped[Decision] = relationship(back_populates="documents")


class LinkSuggestion(Base):
    """A possible link triage should look at, never applied on its own: a message whose MP
    name and country match an existing case or report, but nothing firmer (no reply header,
    no case code)."""

    __tablename__ = "link_suggestions"
    __table_args__ = (
        CheckConstraint("(report_id IS NOT NULL) <> (case_id IS NOT NULL)", name="one_target"),
        UniqueConstraint("message_pk", "report_id", "case_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)  # e.g. "MP name 'Batsukh' and country MNG"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
