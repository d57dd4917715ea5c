"""Contacts and suppressions in the database: upsert by address, listing, suppression.

Every function works in the caller's session and transaction; the caller commits. An import
is one transaction (`upsert_contacts` for the whole file), so it lands whole or not at all.
Nothing here reads `reporters`: contacts are the people campaigns write to, reporters are
confidential and never an audience.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailflow.outreach.contacts import (
    ContactRow,
    ListedContact,
    languages_from_store,
    stored_languages,
)
from mailflow.store.models import SUPPRESSION_REASONS, Contact, Suppression, normalise_email

MANUAL_REASONS = ("opt_out", "manual")  # hard_bounce is the delivery worker's to set
_CHUNK = 500  # addresses per IN (...): well under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True, slots=True)
class ImportCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class SuppressionEntry:
    email: str
    reason: str
    created_at: datetime
    detail: str | None


def upsert_contacts(session: Session, rows: Sequence[ContactRow], now: datetime) -> ImportCounts:
    """Add new addresses and update changed ones; contacts not in `rows` are left alone."""
    existing = {
        contact.email: contact
        for chunk in _chunks([row.email for row in rows])
        for contact in session.scalars(select(Contact).where(Contact.email.in_(chunk)))
    }
    added = updated = unchanged = 0
    for row in rows:
        contact = existing.get(row.email)
        if contact is None:
            session.add(_new_contact(row, now))
            added += 1
        elif _as_row(contact) == row:
            unchanged += 1
        else:
            _update(contact, row, now)
            updated += 1
    session.flush()
    return ImportCounts(added, updated, unchanged)


def list_contacts(
    session: Session,
    *,
    roles: Collection[str] = (),
    countries: Collection[str] = (),
    mailable_only: bool = False,
) -> list[ListedContact]:
    """Contacts by role and country (empty: any), ordered by country, role, address.

    Each comes with its suppression reason; `mailable_only` leaves suppressed ones out, which
    is what an audience for a campaign needs.
    """
    query = (
        select(Contact, Suppression.reason)
        .outerjoin(Suppression, Suppression.email == Contact.email)
        .order_by(Contact.country, Contact.role, Contact.email)
    )
    if roles:
        query = query.where(Contact.role.in_(sorted(roles)))
    if countries:
        query = query.where(Contact.country.in_(sorted(countries)))
    if mailable_only:
        query = query.where(Suppression.email.is_(None))
    return [
        ListedContact(contact.id, _as_row(contact), reason)
        for contact, reason in session.execute(query)
    ]


def contact_by_address(session: Session, address: str) -> ListedContact | None:
    """The contact with this address (any case), with its suppression reason; None if none."""
    email = normalise_email(address)
    contact = session.scalars(select(Contact).where(Contact.email == email)).first()
    if contact is None:
        return None
    return ListedContact(contact.id, _as_row(contact), suppression_reason(session, email))


def suppression_reason(session: Session, address: str) -> str | None:
    """Why this address must not be mailed (opt_out, hard_bounce, manual), or None."""
    entry = session.get(Suppression, normalise_email(address))
    return entry.reason if entry is not None else None


def suppressed_among(session: Session, addresses: Iterable[str]) -> dict[str, str]:
    """{address: reason} for those of `addresses` (normalised) that are suppressed."""
    found: dict[str, str] = {}
    for chunk in _chunks(sorted({normalise_email(a) for a in addresses})):
        query = select(Suppression.email, Suppression.reason).where(Suppression.email.in_(chunk))
        found.update({email: reason for email, reason in session.execute(query)})
    return found


def suppress(
    session: Session, address: str, reason: str, now: datetime, detail: str | None = None
) -> SuppressionEntry | None:
    """Suppress `address`; None when new, else the existing entry, which is kept as it is
    (an opt-out must not be turned into a `manual` block that someone later lifts lightly)."""
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"not a suppression reason: {reason!r}")
    existing = session.get(Suppression, normalise_email(address))
    if existing is not None:
        return _entry(existing)
    session.add(Suppression(email=address, reason=reason, created_at=now, detail=detail))
    session.flush()
    return None


def unsuppress(session: Session, address: str) -> SuppressionEntry | None:
    """Lift the suppression of `address`; the entry removed, or None if there was none."""
    existing = session.get(Suppression, normalise_email(address))
    if existing is None:
        return None
    entry = _entry(existing)
    session.execute(delete(Suppression).where(Suppression.email == existing.email))
    return entry


def _entry(row: Suppression) -> SuppressionEntry:
    return SuppressionEntry(row.email, row.reason, row.created_at, row.detail)


def _as_row(contact: Contact) -> ContactRow:
    return ContactRow(
        organisation=contact.organisation,
        person=contact.person_name,
        role=contact.role,
        country=contact.country,
        languages=languages_from_store(contact.languages),
        email=contact.email,
    )


def _new_contact(row: ContactRow, now: datetime) -> Contact:
    return Contact(
        organisation=row.organisation,
        person_name=row.person,
        role=row.role,
        country=row.country,
        languages=stored_languages(row.languages),
        email=row.email,
        created_at=now,
        updated_at=now,
    )


def _update(contact: Contact, row: ContactRow, now: datetime) -> None:
    contact.organisation = row.organisation
    contact.person_name = row.person
    contact.role = row.role
    contact.country = row.country
    contact.languages = stored_languages(row.languages)
    contact.updated_at = now


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
