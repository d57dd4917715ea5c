"""From raw bytes to what mailflow understands of a message: parse, then classify. Pure.

This is the one function behind the intake stage, `mailflow classify` and `mailflow explain`,
so what the command line shows is exactly what intake records.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailflow.classify import classify
from mailflow.classify.model import Classification
from mailflow.classify.rules import RuleSet
from mailflow.parse import ParseLimits, parse_message
from mailflow.parse.model import ParsedMessage


@dataclass(frozen=True, slots=True)
class Understanding:
    parsed: ParsedMessage
    classification: Classification


def understand(raw: bytes, rules: RuleSet, limits: ParseLimits | None = None) -> Understanding:
    """Raises `MessageError` (only) when the message cannot be parsed within `limits`."""
    parsed = parse_message(raw, limits or ParseLimits())
    return Understanding(parsed, classify(parsed, rules))
