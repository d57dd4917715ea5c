"""Resolving an audience against the contacts table: who a campaign would go to, right now.

The selection itself is pure (mailflow.outreach.audience.resolve); this module only reads
contacts (narrowed by role in SQL), the suppression list and the decision's countries.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.outreach.audience import (
    Audience,
    ContactFacts,
    Geography,
    Resolution,
    resolve,
    selected_roles,
)
from mailflow.store.models import Case, Contact, Suppression, decision_cases


def concerned_countries(session: Session, decision_id: int | None) -> frozenset[str]:
    """The countries of the decision's cases (upper-case ISO3)."""
    if decision_id is None:
        return frozenset()
    rows = session.scalars(
        select(Case.country)
        .join(decision_cases, decision_cases.c.case_id == Case.id)
        .where(decision_cases.c.decision_id == decision_id)
    )
    return frozenset(country.upper() for country in rows if country)


def resolve_audience(
    session: Session, audience: Audience, decision_id: int | None, geography: Geography
) -> Resolution:
    """The recipients (one per address) and the matched-but-suppressed contacts."""
    query = select(Contact.id, Contact.email, Contact.role, Contact.country)
    roles = selected_roles(audience)
    if roles is not None:
        query = query.where(Contact.role.in_(sorted(roles)))
    contacts = [
        ContactFacts(id=row.id, email=row.email, role=row.role, country=row.country)
        for row in session.execute(query.order_by(Contact.id))
    ]
    # The whole list: suppressions are few, and one query beats one per contact.
    suppressed = frozenset(session.scalars(select(Suppression.email)))
    return resolve(
        audience,
        contacts,
        concerned_countries(session, decision_id),
        geography,
        suppressed,
    )
