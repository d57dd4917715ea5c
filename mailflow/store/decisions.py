"""Decisions in the database: adding one with its cases and documents, listing, reading.

Document bytes are content-addressed in `blobs` (sha256), so the same file given for two
languages or two decisions is stored once. Every function works in the caller's session; the
caller commits, so a decision lands with all its documents or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from mailflow.outreach.decisions import NewDecision
from mailflow.store.models import Blob, Case, Decision, DecisionDocument


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: int
    language: str
    media_type: str
    filename: str | None
    official: bool
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class DecisionInfo:
    id: int
    session: str
    adopted_on: date
    body: str
    symbol: str | None
    visibility: str
    created_at: datetime
    case_codes: tuple[str, ...]
    documents: tuple[DocumentInfo, ...]

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(doc.language for doc in self.documents))


@dataclass(frozen=True, slots=True)
class AddedDecision:
    id: int
    new_cases: tuple[str, ...]  # case codes that had no row before this decision
    new_blobs: int  # documents whose bytes were not stored yet


def add_decision(session: Session, new: NewDecision, now: datetime) -> AddedDecision:
    """Store `new` with its cases (created when unknown) and documents; flushes, no commit."""
    cases, created = _cases(session, new.case_codes, now)
    decision = Decision(
        session=new.session,
        adopted_on=new.adopted_on,
        body=new.body,
        symbol=new.symbol,
        visibility=new.visibility,
        created_at=now,
        cases=cases,
    )
    new_blobs = 0
    for doc in new.documents:
        new_blobs += _store_blob(session, doc.sha256, doc.data, now)
        decision.documents.append(
            DecisionDocument(
                language=doc.language,
                blob_sha256=doc.sha256,
                media_type=doc.media_type,
                filename=doc.filename,
                official=doc.official,
            )
        )
    session.add(decision)
    session.flush()
    return AddedDecision(decision.id, created, new_blobs)


def list_decisions(session: Session) -> list[DecisionInfo]:
    """Every decision, most recently adopted first."""
    query = _with_details().order_by(Decision.adopted_on.desc(), Decision.id.desc())
    decisions = list(session.scalars(query))
    sizes = _sizes(session, {doc.blob_sha256 for d in decisions for doc in d.documents})
    return [_info(decision, sizes) for decision in decisions]


def decision_info(session: Session, decision_id: int) -> DecisionInfo | None:
    decision = session.scalars(_with_details().where(Decision.id == decision_id)).first()
    if decision is None:
        return None
    return _info(decision, _sizes(session, {doc.blob_sha256 for doc in decision.documents}))


def document_bytes(session: Session, document_id: int) -> bytes | None:
    """The bytes of one decision document (a `DocumentInfo.id`), e.g. to attach it."""
    return session.scalar(
        select(Blob.data)
        .join(DecisionDocument, DecisionDocument.blob_sha256 == Blob.sha256)
        .where(DecisionDocument.id == document_id)
    )


def _with_details() -> Select[Decision]:
    return select(Decision).options(selectinload(Decision.cases), selectinload(Decision.documents))


def _info(decision: Decision, sizes: dict[str, int]) -> DecisionInfo:
    documents = sorted(decision.documents, key=lambda d: (not d.official, d.language, d.id))
    return DecisionInfo(
        id=decision.id,
        session=decision.session,
        adopted_on=decision.adopted_on,
        body=decision.body,
        symbol=decision.symbol,
        visibility=decision.visibility,
        created_at=decision.created_at,
        case_codes=tuple(sorted(case.code for case in decision.cases)),
        documents=tuple(
            DocumentInfo(
                id=doc.id,
                language=doc.language,
                media_type=doc.media_type,
                filename=doc.filename,
                official=doc.official,
                sha256=doc.blob_sha256,
                size=sizes.get(doc.blob_sha256, 0),
            )
            for doc in documents
        ),
    )


def _sizes(session: Session, digests: set[str]) -> dict[str, int]:
    if not digests:
        return {}
    query = select(Blob.sha256, Blob.size).where(Blob.sha256.in_(sorted(digests)))
    return {digest: size for digest, size in session.execute(query)}


def _cases(
    session: Session, codes: tuple[str, ...], now: datetime
) -> tuple[list[Case], tuple[str, ...]]:
    existing = {
        case.code: case for case in session.scalars(select(Case).where(Case.code.in_(codes)))
    }
    created = []
    for code in codes:
        if code not in existing:
            # The country of a case is its code's prefix (SCHEMA.md): TUR-69 is Türkiye's.
            existing[code] = Case(code=code, country=code[:3], created_at=now, updated_at=now)
            session.add(existing[code])
            created.append(code)
    return [existing[code] for code in codes], tuple(created)


def _store_blob(session: Session, digest: str, data: bytes, now: datetime) -> int:
    """1 when the bytes were new, 0 when already stored (counted, not loaded: they can be
    megabytes). Autoflush makes a blob added earlier in this transaction count too."""
    known = session.scalar(select(func.count()).select_from(Blob).where(Blob.sha256 == digest))
    if known:
        return 0
    session.add(Blob(sha256=digest, size=len(data), data=data, created_at=now))
    return 1
