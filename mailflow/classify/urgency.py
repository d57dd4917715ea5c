"""Urgency: any rule of `rules/urgency.toml`, the form's "Urgent: yes", or a trial or hearing
set for the coming days. Recall comes first: a missed urgent case costs far more than a
message read early."""

from __future__ import annotations

import re
from datetime import date, datetime

from mailflow.classify.model import Fired, FormSubmission
from mailflow.classify.rules import Document, RuleSet

IMMINENT_DAYS = 14
_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "janvier", "enero", "janeiro"),
            ("february", "fevrier", "febrero", "fevereiro"),
            ("march", "mars", "marzo", "marco"),
            ("april", "avril", "abril"),
            ("may", "mai", "mayo", "maio"),
            ("june", "juin", "junio", "junho"),
            ("july", "juillet", "julio", "julho"),
            ("august", "aout", "agosto"),
            ("september", "septembre", "septiembre", "setiembre", "setembro"),
            ("october", "octobre", "octubre", "outubro"),
            ("november", "novembre", "noviembre", "novembro"),
            ("december", "decembre", "diciembre", "dezembro"),
        ],
        start=1,
    )
    for name in names
}
_HEARING = re.compile(
    r"\b(?:trial|hearing|appeal hearing|court date|proces|audience|juicio|audiencia|"
    r"julgamento)\b[^.\n]{0,80}?\b(\d{1,2})(?:er|st|nd|rd|th)?(?: de)? ("
    + "|".join(sorted(_MONTHS, key=len, reverse=True))
    + r")\b(?: de)?(?: (\d{4}))?",
    re.IGNORECASE,
)


def _imminent_hearing(doc: Document, sent: datetime | None) -> str | None:
    """The text of a trial or hearing date 0 to IMMINENT_DAYS days after the message date."""
    if sent is None:
        return None
    today = sent.date()
    for scope in ("subject", "new_text", "forwarded"):
        for match in _HEARING.finditer(doc.folded(scope)):
            day, month_name, year = match.groups()
            try:
                when = date(int(year or today.year), _MONTHS[month_name.lower()], int(day))
            except ValueError:
                continue
            if 0 <= (when - today).days <= IMMINENT_DAYS:
                return match.group(0)
    return None


def find_urgency(
    doc: Document, rules: RuleSet, form: FormSubmission | None, sent: datetime | None
) -> tuple[bool, list[Fired]]:
    fired: list[Fired] = []
    if form is not None and form.get("Urgent").strip().lower() in ("yes", "oui", "si", "sim"):
        fired.append(Fired("form.urgent", "urgent", "true", f"Urgent: {form.get('Urgent')}"))
    for rule in rules.rules("urgency"):
        hit = rule.first(doc)
        if hit is not None:
            fired.append(Fired(rule.name, "urgent", "true", f"{hit.scope}: {hit.matched}"))
    hearing = _imminent_hearing(doc, sent)
    if hearing is not None:
        fired.append(Fired("urgency.imminent_hearing", "urgent", "true", hearing))
    return bool(fired), fired
