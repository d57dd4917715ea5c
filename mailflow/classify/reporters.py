"""Who writes a report or follow-up: `rules/reporters.toml`, first matching rule in file order.

The form's "Relationship to the MP" field is read with the `form_*` rules (bare words); the
message's own text with the others (first-person cues). Nothing found: other_reliable, the
Committee's category for anyone else who writes in good faith.
"""

from __future__ import annotations

from mailflow.classify.model import Fired, FormSubmission
from mailflow.classify.rules import Document, RuleSet

FORM_FIELD = "Relationship to the MP"
DEFAULT = "other_reliable"


def find_reporter_type(
    doc: Document, rules: RuleSet, form: FormSubmission | None
) -> tuple[str, Fired]:
    relationship = form.get(FORM_FIELD).strip() if form is not None else ""
    if relationship:
        field_doc = Document({"new_text": relationship})
        for rule in rules.rules("reporters"):
            if rule.id.startswith("form_") and rule.first(field_doc, ("new_text",)):
                return rule.value, Fired(rule.name, "reporter_type", rule.value, relationship)
    # A follow-up's writer often said who they are only in the first message, which the
    # reply quotes: the quoted history is read when the new text says nothing.
    for scopes in (None, ("quoted_text",)):
        for rule in rules.rules("reporters"):
            if rule.id.startswith("form_"):
                continue
            hit = rule.first(doc, scopes)
            if hit is not None:
                evidence = f"{hit.scope}: {hit.matched}"
                return rule.value, Fired(rule.name, "reporter_type", rule.value, evidence)
    return DEFAULT, Fired("reporters.default", "reporter_type", DEFAULT, "no cue")
