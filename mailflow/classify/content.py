"""What a message says: case codes, MPs, country, violations, urgency, reporter, actions.

Interface stub; the content helper fills it in (see `extract_content`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailflow.classify.model import Fired, FormSubmission
from mailflow.classify.rules import Document, RuleSet
from mailflow.parse.model import ParsedMessage


@dataclass(frozen=True, slots=True)
class ContentFindings:
    case_codes: tuple[str, ...] = ()
    mp_names: tuple[str, ...] = ()
    country: str | None = None
    violations: tuple[str, ...] = ()
    urgent: bool = False
    reporter_type: str | None = None
    reporting_parliament: str | None = None
    action_types: tuple[str, ...] = ()
    fired: tuple[Fired, ...] = ()


def extract_content(
    doc: Document,
    parsed: ParsedMessage,
    rules: RuleSet,
    *,
    kind: str,
    language: str | None,
    form: FormSubmission | None,
) -> ContentFindings:
    """Fields that depend on what the message says. `kind` decides which apply: country,
    violations, urgent, mp_names and reporter_type for report/followup; reporting_parliament
    and action_types for action_report; case_codes for any kind."""
    return ContentFindings()
