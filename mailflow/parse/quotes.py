"""Splitting the human text into new text, quoted history and signature.

The quoted history starts at an attribution line ("On ... wrote:" and its translations), an
Outlook "-----Original Message-----" separator or "From:/Sent:" block, or at the first of
the trailing "> " lines; interleaved "> " lines are quoted too. An inline forward is not
history: it stays in the new text, because a forwarded report is the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailflow.parse import forward

_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"on\b.{0,300}\bwrote\s*:"
    r"|le\b.{0,300}\ba [ée]crit\s*:"
    r"|el\b.{0,300}\bescribi[óo]\s*:"
    r"|(?:em|no dia|on)\b.{0,300}\bescreveu\s*:"
    r"|am\b.{0,300}\bschrieb.{0,100}:"
    r"|.{0,300}\bнаписал(?:а|\(а\))?\s*:"  # noqa: RUF001 - Cyrillic on purpose
    r"|.{0,300}\bكتب\b.{0,300}:"
    r")\s*$",
    re.IGNORECASE,
)
_BIDI_MARKS = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SIG_SEPARATOR = re.compile(r"^--\s?$")
_MOBILE = re.compile(
    r"^\s*(?:sent from my|envoy[ée] de mon|enviado desde mi|enviado do meu|отправлено с"  # noqa: RUF001 - Cyrillic on purpose
    r"|get outlook for|obtenir outlook pour|obtener outlook para|أرسلت من)",
    re.IGNORECASE,
)
SIGN_OFFS = frozenset(
    {
        "best regards", "kind regards", "warm regards", "warmest regards", "regards",
        "best wishes", "best", "sincerely", "yours sincerely", "sincerely yours",
        "yours faithfully", "yours truly", "thanks", "thank you", "many thanks",
        "thanks and regards", "thanks & regards", "with regards", "with best regards",
        "with kind regards", "cheers", "respectfully", "yours",
        "cordialement", "bien cordialement", "très cordialement", "bien à vous",
        "sincères salutations", "salutations distinguées", "meilleures salutations",
        "salutations", "merci", "avec mes remerciements", "respectueusement",
        "atentamente", "saludos", "un saludo", "saludos cordiales", "cordiales saludos",
        "cordialmente", "un cordial saludo", "muchas gracias", "gracias", "afectuosamente",
        "atenciosamente", "abraços", "abraço", "um abraço", "obrigado", "obrigada",
        "saudações", "cumprimentos", "com os melhores cumprimentos", "melhores cumprimentos",
        "с уважением", "всего доброго", "спасибо", "с наилучшими пожеланиями",  # noqa: RUF001 - Cyrillic on purpose
        "مع تحياتي", "مع خالص التحية", "مع التحية", "تحياتي", "شكرا", "وشكرا", "مع الشكر",
        "مع خالص الشكر", "والسلام عليكم", "وتفضلوا بقبول فائق الاحترام والتقدير",
    }
)  # fmt: skip
_SIGN_OFF_PREFIXES = ("veuillez agréer", "reciba un", "وتفضلوا", "وتقبلوا", "تقبلوا")
_SIGNATURE_MAX_LINES = 12
_SIGNATURE_MAX_LINE = 120


@dataclass(frozen=True, slots=True)
class Split:
    new_text: str
    quoted_text: str
    signature: str


def split_text(text: str, subject: str = "") -> Split:
    lines = text.split("\n")
    forwards = forward.forward_starts(lines, subject)
    stop = forwards[0] if forwards else len(lines)
    quote = _quote_start(lines, stop)
    head_end = quote if quote is not None else stop
    new, quoted = _interleaved(lines[:head_end])
    signature_at = _signature_start(new)
    tail = lines[stop:] if quote is None else []
    history = lines[quote:] if quote is not None else []
    return Split(
        new_text=_join(new[:signature_at] + ([""] if tail else []) + tail),
        quoted_text=_join(quoted + ([""] if quoted and history else []) + history),
        signature=_join(new[signature_at:]),
    )


def _quote_start(lines: list[str], stop: int) -> int | None:
    for index in range(stop):
        if _is_attribution(lines, index) or forward.is_original_separator(lines[index]):
            return _with_rule_above(lines, index)
        if forward.outlook_block(lines, index):
            return _with_rule_above(lines, index)
    return _trailing_quote(lines[:stop])


def _is_attribution(lines: list[str], index: int) -> bool:
    line = _BIDI_MARKS.sub("", lines[index])
    if _ATTRIBUTION.match(line):
        return True
    # Clients wrap long attributions ("On ..., Name <\naddress> wrote:").
    if index + 1 < len(lines) and line.strip() and not line.lstrip().startswith(">"):
        joined = line + " " + _BIDI_MARKS.sub("", lines[index + 1])
        return bool(_ATTRIBUTION.match(joined)) and not _ATTRIBUTION.match(lines[index + 1])
    return False


def _with_rule_above(lines: list[str], index: int) -> int:
    """Include Outlook's "____" rule (and the blank lines around it) above a quote header."""
    start = index
    while start > 0 and (not lines[start - 1].strip() or set(lines[start - 1].strip()) == {"_"}):
        start -= 1
    return start if any(set(line.strip()) == {"_"} for line in lines[start:index]) else index


def _trailing_quote(lines: list[str]) -> int | None:
    """The first line of a run of "> " lines (blank lines allowed) that ends the text."""
    start: int | None = None
    for index, line in enumerate(lines):
        if _is_quoted(line):
            start = index if start is None else start
        elif line.strip():
            start = None
    return start


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _interleaved(lines: list[str]) -> tuple[list[str], list[str]]:
    """Split "> " lines out of a reply written between them."""
    new = [line for line in lines if not _is_quoted(line)]
    quoted = [line for line in lines if _is_quoted(line)]
    return new, quoted


def _signature_start(lines: list[str]) -> int:
    """Index where the signature begins, len(lines) when there is none."""
    for index in range(len(lines) - 1, 0, -1):
        if _SIG_SEPARATOR.match(lines[index]) or _MOBILE.match(lines[index]):
            return index
    content = [i for i, line in enumerate(lines) if line.strip()]
    for index in content[-_SIGNATURE_MAX_LINES:]:
        if index > 0 and _is_sign_off(lines[index]) and _short_tail(lines[index + 1 :]):
            return index
    return len(lines)


def _is_sign_off(line: str) -> bool:
    words = _BIDI_MARKS.sub("", line).strip().rstrip(",.!:;،").strip().lower()
    return words in SIGN_OFFS or words.startswith(_SIGN_OFF_PREFIXES)


def _short_tail(lines: list[str]) -> bool:
    content = [line for line in lines if line.strip()]
    return len(content) <= _SIGNATURE_MAX_LINES and all(
        len(line) <= _SIGNATURE_MAX_LINE for line in content
    )


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n")
