"""What classification concludes about a message, and why: plain values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Fired:
    """One rule that fired: which rule, what it concluded, and the text that made it fire."""

    rule: str  # "<file stem>.<rule id>", e.g. "violations.murder"
    field: str  # the label field it decides, e.g. "violations"
    value: str  # the value it contributed, e.g. "murder"
    evidence: str  # the matched text (bounded), or a header name and value

    def describe(self) -> str:
        return f"{self.field}={self.value} by {self.rule}: {self.evidence!r}"


@dataclass(frozen=True, slots=True)
class FormSubmission:
    """The report form's fields (SCHEMA.md). Contains the reporter's identity: confidential,
    kept inside intake, never passed to an outbound template or an export meant for outside."""

    fields: tuple[tuple[str, str], ...]  # canonical English label -> value, in form order
    language: str  # "en" or "fr", from the labels used

    def get(self, label: str) -> str:
        return next((value for key, value in self.fields if key == label), "")


@dataclass(frozen=True, slots=True)
class Classification:
    """The label fields of SCHEMA.md for one message, plus the rules that decided them."""

    kind: str
    language: str | None
    case_codes: tuple[str, ...] = ()
    mp_names: tuple[str, ...] = ()
    country: str | None = None
    violations: tuple[str, ...] = ()
    urgent: bool = False
    reporter_type: str | None = None
    reporting_parliament: str | None = None
    action_types: tuple[str, ...] = ()
    bounced_recipients: tuple[str, ...] = ()
    bounce_type: str | None = None
    fired: tuple[Fired, ...] = ()
    form: FormSubmission | None = field(default=None, repr=False)

    def labels(self) -> dict[str, Any]:
        """The SCHEMA.md label fields, in its order, JSON-ready (no `file`)."""
        return {
            "kind": self.kind,
            "language": self.language,
            "case_codes": list(self.case_codes),
            "mp_names": list(self.mp_names),
            "country": self.country,
            "violations": list(self.violations),
            "urgent": self.urgent,
            "reporter_type": self.reporter_type,
            "reporting_parliament": self.reporting_parliament,
            "action_types": list(self.action_types),
            "bounced_recipients": list(self.bounced_recipients),
            "bounce_type": self.bounce_type,
        }
