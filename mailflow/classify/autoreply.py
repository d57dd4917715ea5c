"""Automatic replies (RFC 3834): out-of-office and vacation answers.

The signals live in `rules/autoreply.toml`. Headers are the reliable evidence (RFC 3834
`Auto-Submitted`, vendor headers); subject conventions come next. A body phrase alone is weak,
because a person can write "I am away" in a real message: it counts only with a second signal.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailflow.classify.model import Fired
from mailflow.classify.rules import Document, RuleSet

CONCERN = "autoreply"
# Out-of-office texts are short; a long text with "I am away" in it is a person writing.
SHORT_TEXT_CHARS = 900
_BODY_RULE = "body_away"


@dataclass(frozen=True, slots=True)
class AutoReplyVerdict:
    is_auto_reply: bool
    fired: tuple[Fired, ...]


def detect_auto_reply(doc: Document, rules: RuleSet) -> AutoReplyVerdict:
    """Whether the message was written by a program answering automatically, and why."""
    strong: list[Fired] = []
    weak: list[Fired] = []
    body_sentences: set[str] = set()
    for rule in rules.rules(CONCERN):
        hits = list(rule.hits(doc))
        if not hits:
            continue
        fired = Fired(rule.name, "kind", "auto_reply", f"{hits[0].scope}: {hits[0].matched}")
        if rule.extra.get("strength", "weak") == "strong":
            strong.append(fired)
        else:
            weak.append(fired)
        if rule.id == _BODY_RULE:
            body_sentences.update(hit.sentence for hit in hits)
    if strong:
        return AutoReplyVerdict(True, tuple(strong + weak))
    if len(weak) >= 2:
        return AutoReplyVerdict(True, tuple(weak))
    # A short text saying two separate away-things ("I am on leave until ...", "limited access
    # to e-mail") is an out-of-office answer even when the client set no header.
    short = len(doc.raw("new_text")) <= SHORT_TEXT_CHARS
    if short and len(body_sentences) >= 2:
        evidence = f"{len(body_sentences)} away sentences in a short text"
        return AutoReplyVerdict(
            True, (*weak, Fired(f"{CONCERN}.short_away_text", "kind", "auto_reply", evidence))
        )
    return AutoReplyVerdict(False, ())
