"""What a message says: case codes, MPs, country, violations, urgency, reporter, actions.

`extract_content` runs the concerns' rules (`rules/*.toml`) on a view of the message made for
reading sentences: hard-wrapped lines are joined back into paragraphs, and forwarded messages
and attachment text are available as their own scopes. Every decision is recorded as a Fired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from mailflow.classify.actions import find_actions
from mailflow.classify.cases import find_case_codes
from mailflow.classify.countries import (
    KIND_WEIGHT,
    Scored,
    best,
    context_patterns,
    country_entries,
    country_of_domain,
    country_of_value,
    known_iso3,
    mentions,
    near,
)
from mailflow.classify.model import Fired, FormSubmission
from mailflow.classify.names import find_mp_names
from mailflow.classify.reporters import find_reporter_type
from mailflow.classify.rules import Document, RuleSet
from mailflow.classify.urgency import find_urgency
from mailflow.classify.violations import find_violations
from mailflow.parse.model import ParsedMessage

CASE_KINDS = ("report", "followup")
# Automatic answers and bounces only echo our own mail: nothing in them is the sender's.
NO_CONTENT_KINDS = ("auto_reply", "bounce", "spam")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•·\u2013]|\(?\d+[.)]|\(?[a-z][.)])\s")
_CLOSING = re.compile(
    r"^\s*(?:(?:kind|best|warm|warmest)?\s*regards|yours (?:sincerely|faithfully|truly)|"
    r"sincerely|best wishes|many thanks|cordialement|bien cordialement|salutations|"
    r"veuillez agreer|je vous prie d.agreer|atentamente|saludos|un cordial saludo|"
    r"saluda atentamente|atenciosamente|cumprimentos|mit freundlichen|"
    r"مع (?:فائق )?(?:الاحترام|الشكر|التقدير)|وتفضلوا|с уважением)",  # noqa: RUF001 (Russian)
    re.IGNORECASE | re.MULTILINE,
)


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


def unwrap(text: str) -> str:
    """Join hard-wrapped lines into paragraphs so a sentence can be matched whole. A line break
    stays where a short line ends (signatures, addresses), before a list item, after a colon
    and at a blank line."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    for line in lines:
        previous = out[-1] if out else ""
        if (
            out
            and line.strip()
            and len(previous) >= 50
            and not previous.rstrip().endswith(":")
            and not _LIST_ITEM.match(line)
        ):
            out[-1] = previous.rstrip() + " " + line.strip()
        else:
            out.append(line)
    return "\n".join(out)


def reading_view(doc: Document, parsed: ParsedMessage) -> Document:
    """The document's scopes, unwrapped, with forwarded and attachment text filled in from the
    parsed message when the caller's document lacks them."""
    forwarded = doc.raw("forwarded") or "\n\n".join(f.text for f in parsed.forwarded)
    attachments = doc.raw("attachments") or "\n\n".join(
        a.text for a in parsed.attachments if a.text
    )
    return Document(
        {
            "subject": doc.raw("subject") or parsed.subject,
            "new_text": unwrap(doc.raw("new_text") or parsed.new_text),
            "quoted_text": doc.raw("quoted_text") or parsed.quoted_text,
            "signature": doc.raw("signature") or parsed.signature,
            "forwarded": unwrap(forwarded),
            "attachments": unwrap(attachments),
        }
    )


def closing_offset(text: str) -> int:
    """Where the sign-off starts ("Kind regards", "Atentamente" ...), or the text's end."""
    found = list(_CLOSING.finditer(text))
    return found[-1].start() if found else len(text)


def _scored_mentions(
    view: Document, rules: RuleSet, scope_weights: dict[str, float], bonus_key: str
) -> list[Scored]:
    """Every country mention with its weight: scope weight x kind weight, doubled in the
    sign-off when `bonus_key` is the parliament context, plus a bonus near context words."""
    entries = country_entries(rules)
    bonus = context_patterns(rules, bonus_key)
    foreign = context_patterns(rules, "foreign_words")
    scored = []
    for scope, weight in scope_weights.items():
        text = view.folded(scope)
        tail = closing_offset(text) if scope == "new_text" else len(text)
        for mention in mentions(text, scope, entries):
            value = weight * KIND_WEIGHT[mention.kind]
            if mention.start >= tail:
                value *= 2.0 if bonus_key == "parliament_words" else 0.3
            if near(text, mention, bonus, before_only=False):
                value += 2.0
            if bonus_key == "parliament_words" and near(text, mention, foreign, before_only=True):
                value *= 0.3
            scored.append(Scored(mention, value))
    return scored


def mp_country(
    view: Document, rules: RuleSet, form: FormSubmission | None, codes: tuple[str, ...]
) -> tuple[str | None, Fired | None]:
    """The MP's country: the form's field, else the case codes' country, else the mentions,
    weighed up near MP words and down in the sign-off (where the writer says where *they* are)."""
    entries = country_entries(rules)
    if form is not None and form.get("Country"):
        iso3 = country_of_value(form.get("Country"), entries)
        if iso3:
            return iso3, Fired("form.country", "country", iso3, form.get("Country"))
    if codes:
        iso3 = codes[0][:3]
        return iso3, Fired("countries.case_code", "country", iso3, codes[0])
    # The signature and the quoted history only decide when the rest names no country: a
    # follow-up often names it only in the report it quotes.
    weights = {
        "subject": 2.0,
        "new_text": 1.0,
        "forwarded": 0.7,
        "signature": 0.3,
        "quoted_text": 0.1,
    }
    winner = best(_scored_mentions(view, rules, weights, "mp_words"))
    if winner is None:
        return None, None
    m = winner.mention
    return m.iso3, Fired(f"countries.{m.kind}", "country", m.iso3, f"{m.scope}: {m.text}")


def reporting_parliament(
    view: Document, parsed: ParsedMessage, rules: RuleSet, codes: tuple[str, ...]
) -> tuple[str | None, Fired | None]:
    """The parliament that writes: mentions in the sender's name, the sign-off and near
    parliament words count most; the countries of the cases reported on are excluded."""
    sender = parsed.from_.name if parsed.from_ else ""
    named = Document({"headers": sender, **{s: view.raw(s) for s in ("subject", "new_text")}})
    extra = Document({"signature": view.raw("signature"), "attachments": view.raw("attachments")})
    scored = _scored_mentions(
        named, rules, {"headers": 3.0, "subject": 1.5, "new_text": 1.0}, "parliament_words"
    )
    scored += _scored_mentions(
        extra, rules, {"signature": 2.0, "attachments": 0.5}, "parliament_words"
    )
    winner = best(scored, exclude=frozenset(code[:3] for code in codes))
    if winner is not None:
        m = winner.mention
        return m.iso3, Fired(
            f"countries.{m.kind}", "reporting_parliament", m.iso3, f"{m.scope}: {m.text}"
        )
    email = parsed.from_.email if parsed.from_ else ""
    iso3 = country_of_domain(email, rules)
    if iso3 is None:
        return None, None
    return iso3, Fired("countries.sender_domain", "reporting_parliament", iso3, email)


def _writers(parsed: ParsedMessage, form: FormSubmission | None) -> tuple[str, ...]:
    names = [a.name for a in (parsed.from_, *parsed.reply_to) if a is not None]
    if form is not None:
        names.append(form.get("Reporter name"))
    return tuple(name for name in names if name.strip())


def _case_findings(
    view: Document,
    parsed: ParsedMessage,
    rules: RuleSet,
    form: FormSubmission | None,
    codes: tuple[str, ...],
) -> ContentFindings:
    """The fields of a report or follow-up (case codes already found)."""
    country, why = mp_country(view, rules, form, codes)
    violations, vfired = find_violations(view, rules, form)
    urgent, ufired = find_urgency(view, rules, form, parsed.date)
    reporter, rfired = find_reporter_type(view, rules, form)
    if reporter == "mp_self":
        names, nfired = find_mp_names(view, rules, form, self_names=_writers(parsed, form))
    else:
        names, nfired = find_mp_names(view, rules, form, writers=_writers(parsed, form))
    fired = ([why] if why else []) + vfired + ufired + [rfired] + nfired
    return ContentFindings(
        case_codes=codes,
        mp_names=names,
        country=country,
        violations=violations,
        urgent=urgent,
        reporter_type=reporter,
        fired=tuple(fired),
    )


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
    and action_types (and the MPs named) for action_report; case_codes for any kind but
    automatic replies, bounces and spam, which only echo other mail."""
    del language  # the rules carry every language at once
    if kind in NO_CONTENT_KINDS:
        return ContentFindings()
    view = reading_view(doc, parsed)
    codes, fired = find_case_codes(view, rules, known_iso3(rules))
    if kind in CASE_KINDS:
        found = _case_findings(view, parsed, rules, form, codes)
        return replace(found, fired=(*fired, *found.fired))
    if kind == "action_report":
        parliament, why = reporting_parliament(view, parsed, rules, codes)
        actions, afired = find_actions(view, rules)
        names, nfired = find_mp_names(view, rules, None, _writers(parsed, None))
        fired += ([why] if why else []) + afired + nfired
        return ContentFindings(
            case_codes=codes,
            reporting_parliament=parliament,
            action_types=actions,
            mp_names=names,
            fired=tuple(fired),
        )
    return ContentFindings(case_codes=codes, fired=tuple(fired))
