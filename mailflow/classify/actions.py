"""Action types an action report says were taken: `rules/actions.toml`.

Each rule looks for a past or perfect tense and vetoes, in the same sentence, the language of
plans. A list of plans is often introduced once ("The Sub-Committee intends to:") and then
bulleted, so a veto sentence does not see it: matches inside such a list, or under a heading
such as "Planned", are dropped here too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailflow.classify.model import Fired
from mailflow.classify.rules import Document, RuleSet, fold
from mailflow.vocabulary import ACTION_TYPES

_BULLET = re.compile(r"^\s*(?:[-*•·\u2013]|\(?\d+[.)]|\(?[a-z][.)])\s+")


def _plan_patterns(rules: RuleSet, key: str) -> tuple[re.Pattern[str], ...]:
    sources = (rules.table("actions", "plans") or {}).get(key, [])
    return tuple(re.compile(fold(s), re.IGNORECASE | re.MULTILINE) for s in sources)


def planned_spans(
    text: str, intro: Sequence[re.Pattern[str]], heading: Sequence[re.Pattern[str]]
) -> list[tuple[int, int]]:
    """Character spans of `text` that list plans: the bullets after a plan-opening line up to
    the first line that is neither a bullet nor its continuation, and everything after a
    "Planned" heading."""
    spans: list[tuple[int, int]] = []
    offset = 0
    open_at: int | None = None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if any(p.search(stripped) for p in heading):
            spans.append((offset, len(text)))
            break
        if open_at is not None and stripped and not _BULLET.match(line) and not line[:1].isspace():
            spans.append((open_at, offset))
            open_at = None
        if open_at is None and any(p.search(stripped) for p in intro):
            open_at = offset + len(line)
        offset += len(line)
    if open_at is not None:
        spans.append((open_at, len(text)))
    return spans


def find_actions(doc: Document, rules: RuleSet) -> tuple[tuple[str, ...], list[Fired]]:
    intro, heading = _plan_patterns(rules, "intro"), _plan_patterns(rules, "heading")
    planned = {
        scope: planned_spans(doc.folded(scope), intro, heading)
        for scope in ("new_text", "attachments", "forwarded")
    }
    fired: list[Fired] = []
    for rule in rules.rules("actions"):
        for hit in rule.hits(doc):
            spans = planned.get(hit.scope, [])
            if any(start <= hit.start < end for start, end in spans):
                continue
            fired.append(
                Fired(rule.name, "action_types", rule.value, f"{hit.scope}: {hit.matched}")
            )
            break
    values = {f.value for f in fired}
    return tuple(term.code for term in ACTION_TYPES if term.code in values), fired
