"""Bounces: which addresses failed, and whether permanently (hard) or for now (soft).

Structured evidence wins over wording: the RFC 3464 message/delivery-status part (one block
per recipient with Final-Recipient / Original-Recipient, Action and Status), then the
X-Failed-Recipients header, then the text of non-standard reports (qmail's `<address>:`
paragraphs, Exim's indented address lists, Exchange and Gmail sentences naming the address),
with the phrases kept in `rules/bounces.toml`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mailflow.classify.model import Fired
from mailflow.classify.rules import Document, Rule, RuleSet
from mailflow.parse.model import ParsedMessage

CONCERN = "bounces"
_ADDRESS = re.compile(
    r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+",
    re.IGNORECASE,
)
# qmail and Postfix write one paragraph per recipient, opening with "<address>:".
_ANGLE_PARAGRAPH = re.compile(r"(?m)^<([^<>\s]+@[^<>\s]+)>:")
# Enhanced status codes (RFC 3463) in text: "5.1.1", qmail's "(#5.1.1)".
_ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.\d{1,3}\.\d{1,3}(?![\d.])")
# Basic SMTP replies that mean a failure; a bare "555" could be a phone number.
_SMTP_REPLY = re.compile(r"(?<![\d.+])(4(?:21|5[0-2])|5(?:0[0-4]|3[0-5]|5[0-4]))(?=[ -])")
_FAILED_ACTIONS = frozenset({"failed", "delayed"})
_LIST_LOOKAHEAD_LINES = 40


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One per-recipient block of a message/delivery-status part."""

    address: str
    action: str  # failed, delayed, delivered, relayed, expanded ("" when absent)
    status: str  # e.g. "5.1.1" ("" when absent)


@dataclass(frozen=True, slots=True)
class BounceVerdict:
    is_bounce: bool
    recipients: tuple[str, ...] = ()
    bounce_type: str | None = None
    # A DSN whose recipients were all delivered/relayed: an automatic notice, not a failure.
    success_notice: bool = False
    fired: tuple[Fired, ...] = ()


def parse_delivery_status(text: str) -> tuple[DsnRecipient, ...]:
    """The per-recipient blocks of a message/delivery-status body (RFC 3464 section 2.3)."""
    recipients = []
    for fields in _dsn_blocks(text):
        address = _dsn_address(fields.get("original-recipient", "")) or _dsn_address(
            fields.get("final-recipient", "")
        )
        if address:
            action = fields.get("action", "").strip().lower()
            status = fields.get("status", "").strip().split(" ")[0]
            recipients.append(DsnRecipient(address, action, status))
    return tuple(recipients)


def _dsn_blocks(text: str) -> Iterator[dict[str, str]]:
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        fields: dict[str, str] = {}
        name = ""
        for line in block.split("\n"):
            if line[:1] in (" ", "\t") and name:
                fields[name] += " " + line.strip()  # folded continuation line
            elif ":" in line:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                fields.setdefault(name, value.strip())
        yield fields


def _dsn_address(value: str) -> str:
    """The address of "rfc822; someone@example.org" (other address types are not mail)."""
    addr_type, _, address = value.partition(";")
    if not address or addr_type.strip().lower() != "rfc822":
        return ""
    found = _ADDRESS.search(address)
    return found.group(0).lower() if found else ""


def detect_bounce(doc: Document, parsed: ParsedMessage, rules: RuleSet) -> BounceVerdict:
    """Whether the message reports a failed delivery, to whom, and hard or soft."""
    by_role = _rules_by_role(rules)
    dsn = parse_delivery_status(parsed.delivery_status) if parsed.delivery_status else ()
    failed = [r for r in dsn if r.action in _FAILED_ACTIONS or r.status[:1] in ("4", "5")]
    if dsn and not failed:
        evidence = ", ".join(f"{r.address} {r.action}" for r in dsn)[:160]
        fired = Fired(f"{CONCERN}.success_dsn", "kind", "auto_reply", evidence)
        return BounceVerdict(False, success_notice=True, fired=(fired,))
    roles, signals = _signals(doc, by_role)
    if failed:
        roles.add("delivery_status")
        signals.insert(
            0,
            Fired(
                f"{CONCERN}.delivery_status",
                "kind",
                "bounce",
                f"{len(failed)} failed/delayed recipient block(s)",
            ),
        )
    if not _is_bounce(roles):
        return BounceVerdict(False)
    if failed:
        return _verdict_from_dsn(failed, signals)
    return _verdict_from_text(doc, parsed, by_role, signals)


def _rules_by_role(rules: RuleSet) -> dict[str, tuple[Rule, ...]]:
    roles: dict[str, list[Rule]] = {}
    for rule in rules.rules(CONCERN):
        roles.setdefault(str(rule.extra.get("role", "")), []).append(rule)
    return {role: tuple(found) for role, found in roles.items()}


def _signals(doc: Document, by_role: dict[str, tuple[Rule, ...]]) -> tuple[set[str], list[Fired]]:
    roles: set[str] = set()
    signals = []
    for role in ("header", "marker", "sender", "subject"):
        for rule in by_role.get(role, ()):
            hit = rule.first(doc)
            if hit:
                roles.add(role)
                signals.append(Fired(rule.name, "kind", "bounce", f"{role}: {hit.matched}"))
    return roles, signals


def _is_bounce(roles: set[str]) -> bool:
    """One structural signal (DSN part, failure header, MTA boilerplate) suffices; a mail-system
    sender or a failure subject alone does not (people write "Returned mail" too)."""
    structural = {"delivery_status", "header", "marker"}
    return bool(roles & structural) or {"sender", "subject"} <= roles


def _verdict_from_dsn(failed: list[DsnRecipient], signals: list[Fired]) -> BounceVerdict:
    recipients = _unique(r.address for r in failed)
    hard = any(r.status.startswith("5") or (r.action == "failed" and not r.status) for r in failed)
    bounce_type = "hard" if hard else "soft"
    why = "; ".join(f"{r.address} {r.action} {r.status}".strip() for r in failed)[:160]
    fired = (
        *signals,
        *(Fired(f"{CONCERN}.delivery_status", "bounced_recipients", a, why) for a in recipients),
        Fired(f"{CONCERN}.delivery_status", "bounce_type", bounce_type, why),
    )
    return BounceVerdict(True, recipients, bounce_type, fired=fired)


def _verdict_from_text(
    doc: Document,
    parsed: ParsedMessage,
    by_role: dict[str, tuple[Rule, ...]],
    signals: list[Fired],
) -> BounceVerdict:
    report_text = _report_part(doc, by_role)
    # Searching only the report keeps addresses and wording of the returned copy out.
    report = Document({"text": report_text, "subject": doc.raw("subject")})
    ours = {a.email.lower() for a in (*parsed.to, *parsed.cc) if a.email}
    if parsed.from_ and parsed.from_.email:
        ours.add(parsed.from_.email.lower())
    found: list[tuple[str, str]] = []  # (address, rule that found it)
    header = parsed.header("x-failed-recipients")
    if header:
        found += [(a.lower(), "x_failed_recipients") for a in _ADDRESS.findall(header)]
    else:
        found += _text_recipients(report_text, by_role)
    if not found:
        # Last resort: the returned copy's To is where the message went.
        to_line = re.search(r"(?mi)^to:(.*(?:\n[ \t].*)*)", parsed.returned_headers)
        if to_line:
            found += [(a.lower(), "returned_headers") for a in _ADDRESS.findall(to_line.group(1))]
    recipients = _unique(a for a, _ in found if a not in ours)
    bounce_type, type_why = _text_type(report, by_role)
    sources = dict(found)
    fired = (
        *signals,
        *(Fired(f"{CONCERN}.{sources[a]}", "bounced_recipients", a, a) for a in recipients),
        Fired(f"{CONCERN}.{type_why[0]}", "bounce_type", bounce_type, type_why[1]),
    )
    return BounceVerdict(True, recipients, bounce_type, fired=fired)


def _report_part(doc: Document, by_role: dict[str, tuple[Rule, ...]]) -> str:
    """The report's own text: everything before the copy of the returned message."""
    text = doc.folded("text")
    starts = [hit.start for rule in by_role.get("cut", ()) for hit in rule.hits(doc, ["text"])]
    return text[: min(starts)] if starts else text


def _text_recipients(report: str, by_role: dict[str, tuple[Rule, ...]]) -> list[tuple[str, str]]:
    found: list[tuple[int, str, str]] = []
    found += [
        (m.start(), m.group(1).lower(), "angle_paragraph")
        for m in _ANGLE_PARAGRAPH.finditer(report)
    ]
    for rule in by_role.get("recipient", ()):
        for pattern in rule.patterns:
            for match in pattern.finditer(report):
                found += [
                    (match.start(), a.lower(), rule.id) for a in _ADDRESS.findall(match.group(0))
                ]
    for rule in by_role.get("list", ()):
        for pattern in rule.patterns:
            for match in pattern.finditer(report):
                found += [(match.end(), a, rule.id) for a in _listed(report, match.end())]
    return [(address, rule_id) for _, address, rule_id in sorted(found, key=lambda f: f[0])]


def _listed(text: str, start: int) -> list[str]:
    """Addresses one a line after a list introduction, until the list visibly ends: Exim
    indents addresses by two spaces and their diagnostics by four; Exchange writes
    "Name (address)" lines."""
    addresses: list[str] = []
    for line in text[start:].split("\n")[:_LIST_LOOKAHEAD_LINES]:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        found = _ADDRESS.search(stripped)
        if (
            found
            and indent <= 3
            and (
                stripped.startswith(found.group(0))
                or re.search(r"(?:[(<\[]|mailto:)" + re.escape(found.group(0)), stripped)
            )
        ):
            addresses.append(found.group(0).lower())
        elif stripped and indent == 0 and addresses:
            break
    return addresses


def _text_type(
    report: Document, by_role: dict[str, tuple[Rule, ...]]
) -> tuple[str, tuple[str, str]]:
    text = report.folded("text")
    codes = [m.group(1) for m in _ENHANCED_STATUS.finditer(text)]
    codes = codes or [m.group(1)[0] for m in _SMTP_REPLY.finditer(text)]
    if "5" in codes:
        return "hard", ("status_code", "5.x.x status in the report")
    if "4" in codes:
        return "soft", ("status_code", "4.x.x status in the report")
    for role, bounce_type in (("soft", "soft"), ("hard", "hard")):
        for rule in by_role.get(role, ()):
            hit = rule.first(report, ["subject", "text"])
            if hit:
                return bounce_type, (rule.id, hit.matched)
    # A non-delivery report that says nothing of retrying is a final failure.
    return "hard", ("default_hard", "no status code or transient wording")


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.strip(".<>").lower() for a in addresses if a))
