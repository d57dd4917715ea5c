"""The kind of human mail: spam, report, followup, action_report or other.

Forms, automatic replies and bounces are decided before this. The signals are data
(`rules/spam.toml`, `rules/kinds.toml`); this module weighs them:

* spam: rule weights add up to the file's threshold (a filter verdict or a phishing phrase
  alone; marketing wording needs two).
* action_report: a parliament telling what it did. Kinds of action are counted; writing as a
  parliament or IPU group, or replying to the Committee's mailing, adds to them.
* followup: a reply (or update wording) about an MP, a danger or a case.
* report: an MP and a danger, not a reply.
* other: the rest, and enquiries/invitations that mention MPs in passing; list mail.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from mailflow.classify.model import Fired
from mailflow.classify.rules import Document, RuleSet
from mailflow.parse.model import ParsedMessage

KINDS = "kinds"
SPAM = "spam"
# "Re:", "TR :", "Re[2]:"; the full-width colon is how CJK mail clients write it.
_PREFIX = re.compile(r"^\s*([^\W\d_]{1,14})\s*(?:\[\d+\])?\s*[:\uff1a]\s*")


@dataclass(frozen=True, slots=True)
class Signals:
    """Which rules of each signal fired (rule id -> Fired), and how the message threads."""

    hits: dict[str, dict[str, Fired]]
    reply: bool  # a reply prefix, or In-Reply-To/References without a forward prefix
    forward: bool

    def count(self, signal: str) -> int:
        return len(self.hits.get(signal, {}))

    def fired(self, *signals: str) -> tuple[Fired, ...]:
        return tuple(f for s in signals for f in self.hits.get(s, {}).values())


@dataclass(frozen=True, slots=True)
class KindVerdict:
    kind: str
    fired: tuple[Fired, ...]


def spam_verdict(doc: Document, rules: RuleSet) -> KindVerdict | None:
    """Spam when the weights of the spam rules that fired reach the threshold."""
    threshold = float(rules.tables.get(SPAM, {}).get("threshold", 2))
    fired = []
    total = 0.0
    for rule in rules.rules(SPAM):
        hit = rule.first(doc)
        if hit:
            total += float(rule.extra.get("weight", 1))
            fired.append(Fired(rule.name, "kind", "spam", f"{hit.scope}: {hit.matched}"))
    return KindVerdict("spam", tuple(fired)) if total >= threshold else None


def collect_signals(doc: Document, parsed: ParsedMessage, rules: RuleSet) -> Signals:
    hits: dict[str, dict[str, Fired]] = defaultdict(dict)
    for rule in rules.rules(KINDS):
        hit = rule.first(doc)
        if hit:
            evidence = f"{hit.scope}: {hit.matched}"
            hits[rule.value][rule.id] = Fired(rule.name, "kind", rule.value, evidence)
    reply_table = rules.tables.get(KINDS, {}).get("reply", {})
    prefixes = _subject_prefixes(parsed.subject)
    forward = bool(prefixes & {p.lower() for p in reply_table.get("forward_prefixes", ())})
    by_prefix = bool(prefixes & {p.lower() for p in reply_table.get("reply_prefixes", ())})
    threaded = bool(parsed.in_reply_to or parsed.references)
    return Signals(dict(hits), by_prefix or (threaded and not forward), forward)


def _subject_prefixes(subject: str) -> set[str]:
    """The "Re:", "TR:", "AW:" ... at the start of a subject, lower case."""
    found = set()
    rest = subject
    while match := _PREFIX.match(rest):
        found.add(match.group(1).lower())
        rest = rest[match.end() :]
    return found


def human_kind(signals: Signals) -> KindVerdict:
    """report / followup / action_report / other, from the signals of the message."""
    actions = signals.count("action")
    standing = signals.count("institution") + signals.count("mailing")
    dangers = signals.count("danger")
    about_mp = signals.count("mp") > 0
    asks = signals.count("petition") > 0
    others = signals.count("other")
    case = signals.count("case_code") > 0
    update = signals.count("followup") > 0

    if signals.count("list") and not signals.reply:
        # Newsletters and list mail are "other" even when they tell of MPs in danger.
        return _verdict("other", signals, "list")
    # A parliament reporting what it did: one kind of action from a parliament (or in reply to
    # the Committee's mailing), or several kinds from anyone.
    acted = (actions >= 2 and (standing or actions >= 3)) or (actions and standing)
    # ...unless it is a plea about a danger that merely mentions what was done so far.
    if acted and not (asks and dangers > actions):
        return _verdict("action_report", signals, "action", "institution", "mailing")
    substance = dangers > 0 or about_mp or case
    if others and dangers < 2 and not asks and not update:
        return _verdict("other", signals, "other")
    if (signals.reply or update) and substance and not signals.forward:
        return _verdict("followup", signals, "followup", "case_code", "danger")
    if (about_mp and (dangers or asks)) or dangers >= 2:
        return _verdict("report", signals, "mp", "danger", "petition")
    return _verdict("other", signals, "other")


def _verdict(kind: str, signals: Signals, *names: str) -> KindVerdict:
    fired = signals.fired(*names)
    if not fired:
        fired = (Fired(f"{KINDS}.default", "kind", kind, "no signal of another kind"),)
    decision = Fired(f"{KINDS}.decision", "kind", kind, _summary(signals, names))
    return KindVerdict(kind, (*fired, decision))


def _summary(signals: Signals, names: Sequence[str]) -> str:
    counts = ", ".join(f"{name}={signals.count(name)}" for name in sorted(signals.hits))
    thread = "reply" if signals.reply else "forward" if signals.forward else "new"
    return f"{thread}; {counts}"[:160]
