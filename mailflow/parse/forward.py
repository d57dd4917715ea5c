"""Inline forwarded messages: the marker line that mail clients write, and the header lines
(From/Date/Subject, in the client's language) that follow it.

Outlook writes no marker: a forward there is a "From: ... Sent: ..." block, told apart from
quoted history only by the subject ("FW:", "TR:", "RV:" ...), so the subject is an input.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from mailflow.parse import fields
from mailflow.parse.model import Address, Forwarded
from mailflow.parse.text import clean_line

_MARKER = re.compile(
    r"^[\s>]*(?:-{2,}\s*)?(?:"
    r"forwarded message|forwarded e-?mail|begin forwarded message|original message follows"
    r"|message transf[ée]r[ée]|d[ée]but du message r[ée]exp[ée]di[ée]|message r[ée]exp[ée]di[ée]"
    r"|mensaje reenviado|inicio del mensaje reenviado"
    r"|mensagem encaminhada|in[íi]cio da mensagem (?:re)?encaminhada|mensagem reencaminhada"
    r"|пересылаемое сообщение|пересланное сообщение|начало переадресованного сообщения"
    r"|الرسالة المعاد توجيهها|رسالة معاد توجيهها|بداية الرسالة المعاد توجيهها"
    r"|weitergeleitete nachricht"
    r")\s*:?\s*(?:-{2,})?\s*$",
    re.IGNORECASE,
)
# Outlook's separator for replies and forwards alike.
_ORIGINAL = re.compile(
    r"^[\s>]*-{2,}\s*(?:original message|message d'origine|mensaje original|mensagem original"
    r"|исходное сообщение|الرسالة الأصلية|ursprüngliche nachricht)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_FORWARD_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:fwd?|tr|rv|enc|wg|fw|pd|пересл|إعادة توجيه)\s*:", re.IGNORECASE
)
_FIELD = re.compile(r"^[\s>]*\*?\s*([^\W\d_][\w .'-]{0,24}?)\s*\*?\s*:\s*\*?\s*(.*)$")
FROM_NAMES = frozenset({"from", "de", "von", "от", "من", "van", "da"})
DATE_NAMES = frozenset(
    {
        "date", "sent", "envoyé", "envoyé le", "fecha", "enviado", "enviado el", "enviada em",
        "enviado em", "data", "дата", "отправлено", "التاريخ", "تاريخ الإرسال", "أرسل",
        "gesendet", "datum",
    }
)  # fmt: skip
SUBJECT_NAMES = frozenset({"subject", "objet", "asunto", "assunto", "тема", "الموضوع", "betreff"})
_OTHER_NAMES = frozenset(
    {"to", "cc", "à", "para", "кому", "копия", "إلى", "نسخة", "an", "reply-to"}
)
# A bound on the work a hostile text full of markers can cause.
MAX_FORWARDS = 100
_GMAIL_DATE = ("%a, %b %d, %Y at %I:%M %p", "%a, %b %d, %Y at %H:%M", "%A, %B %d, %Y %I:%M %p")


def is_marker(line: str) -> bool:
    return bool(_MARKER.match(line))


def is_forward_subject(subject: str) -> bool:
    return bool(_FORWARD_SUBJECT.match(subject))


def is_original_separator(line: str) -> bool:
    return bool(_ORIGINAL.match(line))


def field_name(line: str) -> tuple[str, str] | None:
    """("from" | "date" | "subject" | "other", value) for a header-like line, else None."""
    found = _FIELD.match(line)
    if found is None:
        return None
    name = found.group(1).strip().lower()
    for kind, names in (("from", FROM_NAMES), ("date", DATE_NAMES), ("subject", SUBJECT_NAMES)):
        if name in names:
            return kind, found.group(2).strip()
    return ("other", found.group(2).strip()) if name in _OTHER_NAMES else None


def outlook_block(lines: list[str], index: int) -> bool:
    """A "From:" line followed within a few lines by a "Sent:"/"Date:" line."""
    first = field_name(lines[index])
    if first is None or first[0] != "from":
        return False
    for line in lines[index + 1 : index + 5]:
        found = field_name(line)
        if found is None:
            return False
        if found[0] == "date":
            return True
    return False


def forward_starts(lines: list[str], subject: str) -> list[int]:
    """Line indexes where an inline forwarded message begins (at most MAX_FORWARDS)."""
    starts: list[int] = []
    outlook = is_forward_subject(subject)
    for index in range(len(lines)):
        if len(starts) >= MAX_FORWARDS:
            break
        if _starts_forward(lines, index, starts, outlook=outlook):
            starts.append(index)
    return starts


def _starts_forward(lines: list[str], index: int, starts: list[int], *, outlook: bool) -> bool:
    line = lines[index]
    if is_marker(line):
        return True
    if not outlook:
        return False
    if is_original_separator(line):
        return True
    return _outlook_start(lines, index) and not _right_after(starts, lines, index)


def _right_after(starts: list[int], lines: list[str], index: int) -> bool:
    """A separator directly above its own From/Sent block starts one message, not two."""
    return bool(starts) and not any(line.strip() for line in lines[starts[-1] + 1 : index])


def _outlook_start(lines: list[str], index: int) -> bool:
    before = lines[index - 1].strip() if index else ""
    after_separator = before == "" or set(before) == {"_"} or is_original_separator(before)
    return after_separator and outlook_block(lines, index)


def inline_forwards(text: str, subject: str, zone: tzinfo | None) -> list[Forwarded]:
    """The inline forwarded messages of `text`; a date without a zone takes `zone` (the
    forwarder's, as mail clients print the original date in the forwarder's local time)."""
    lines = text.split("\n")
    starts = forward_starts(lines, subject)
    found: list[Forwarded] = []
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(lines)
        found.append(_forwarded(lines[start:end], zone))
    return found


def _forwarded(block: list[str], zone: tzinfo | None) -> Forwarded:
    values: dict[str, str] = {}
    index = 1 if (is_marker(block[0]) or is_original_separator(block[0])) else 0
    while index < len(block) and not block[index].strip():
        index += 1
    while index < len(block):
        found = field_name(block[index])
        if found is None:
            break
        values.setdefault(found[0], found[1])
        index += 1
    return Forwarded(
        origin="inline",
        from_=_address(values.get("from")),
        subject=clean_line(values.get("subject", "")),
        date=_date(values.get("date"), zone),
        text="\n".join(block[index:]).strip("\n"),
    )


def _address(value: str | None) -> Address | None:
    if not value:
        return None
    # Outlook writes "Name [mailto:x@y]"; Gmail "Name <x@y>".
    value = re.sub(r"\[mailto:([^\]]+)\]", r"<\1>", value)
    found = fields.addresses(value)
    return found[0] if found else None


def _date(value: str | None, zone: tzinfo | None) -> datetime | None:
    if not value:
        return None
    parsed = fields.parse_date(value, zone)
    if parsed is not None:
        return parsed
    cleaned = value.replace("\u202f", " ").strip()
    for layout in _GMAIL_DATE:
        try:
            naive = datetime.strptime(cleaned, layout)
        except ValueError:
            continue
        return naive.replace(tzinfo=zone) if zone is not None else None
    return None
