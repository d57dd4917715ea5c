"""Alleged violations: `rules/violations.toml` on the message's own text, plus the form's
"Alleged violations" field mapped back to codes through the Committee's labels."""

from __future__ import annotations

from mailflow.classify.model import Fired, FormSubmission
from mailflow.classify.rules import Document, RuleSet, fold
from mailflow.vocabulary import VIOLATIONS

FORM_FIELD = "Alleged violations"


def _label_key(text: str) -> str:
    return " ".join(fold(text).lower().replace("\u2019", "'").split())


_BY_LABEL = {
    _label_key(label): term.code
    for term in VIOLATIONS
    for label in (term.label_en, term.label_fr, term.code)
}


def form_violations(form: FormSubmission | None) -> list[Fired]:
    """The codes ticked on the report form (one label a line, English or French)."""
    if form is None:
        return []
    fired = []
    for line in form.get(FORM_FIELD).splitlines():
        code = _BY_LABEL.get(_label_key(line.strip(" -•*;,")))
        if code is not None:
            fired.append(Fired("form.alleged_violations", "violations", code, line.strip()))
    return fired


def find_violations(
    doc: Document, rules: RuleSet, form: FormSubmission | None
) -> tuple[tuple[str, ...], list[Fired]]:
    """Codes in vocabulary order. A rule with `requires_any` counts only next to one of those
    codes (impunity is recorded for grave violations left unpunished); a marker rule with
    `suppresses` removes codes (no investigation-stage complaint once a sentence is served)."""
    fired = form_violations(form)
    suppressed: set[str] = set()
    candidates: list[tuple[Fired, tuple[str, ...]]] = []
    for rule in rules.rules("violations"):
        hit = rule.first(doc)
        if hit is None:
            continue
        if rule.extra.get("suppresses"):
            suppressed.update(rule.extra["suppresses"])
            continue
        evidence = f"{hit.scope}: {hit.matched}"
        requires = tuple(rule.extra.get("requires_any", ()))
        candidates.append((Fired(rule.name, "violations", rule.value, evidence), requires))
    from_form = {f.value for f in fired}
    found = from_form | {f.value for f, _ in candidates}
    for item, requires in candidates:
        if requires and not found & set(requires):
            continue
        if item.value in suppressed and item.value not in from_form:
            continue
        fired.append(item)
    values = {f.value for f in fired}
    ordered = tuple(term.code for term in VIOLATIONS if term.code in values)
    return ordered, fired
