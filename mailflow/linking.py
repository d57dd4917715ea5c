"""Pure helpers for tying a message to earlier ones: thread keys and reference lists.

Linking itself needs the database (mailflow/store/linking.py); what can be decided from the
message alone lives here, so it is tested without one.
"""

from __future__ import annotations

import re
import unicodedata

from mailflow.parse.model import ParsedMessage

# Reply and forward prefixes in the languages of the intake mailbox, as mail clients write
# them: Re/RE (most), AW/WG (German), TR (French "transféré"), RV/RE (Spanish "reenviado"),
# Réf./Ref. (French), SV/VS (Nordic), Enc/ENC (Portuguese), Doorst (Dutch), رد/إعادة توجيه
# (Arabic), Ответ/Отв/Пересл/FW (Russian), and numbered forms such as "Re[2]:" or "Re(3):".
_PREFIX = re.compile(
    r"^\s*(?:re|aw|fw|fwd|wg|tr|rv|r|ref|réf|sv|vs|enc|antw|doorst|رد|إعادة توجيه|"
    r"ответ|отв|пересл|fwd?)\s*(?:\[\d+\]|\(\d+\))?(?:\s*[.:])+\s*",
    re.IGNORECASE,
)
_TAG = re.compile(r"^\s*\[[^\]]{1,40}\]\s*")  # "[EXTERNAL]", "[SPAM?]", list tags
_SPACE = re.compile(r"\s+")
MIN_KEY_CHARS = 8  # shorter subjects ("Hello", "Urgent") would join unrelated threads
MAX_KEY_CHARS = 255


def subject_key(subject: str) -> str | None:
    """The thread key of a subject: prefixes and tags stripped, spaces collapsed, casefolded.

    None when what is left is too short to identify a thread on its own.
    """
    text = unicodedata.normalize("NFKC", subject)
    while True:
        stripped = _TAG.sub("", _PREFIX.sub("", text, count=1), count=1)
        if stripped == text:
            break
        text = stripped
    key = _SPACE.sub(" ", text).strip().casefold()[:MAX_KEY_CHARS]
    return key if len(key) >= MIN_KEY_CHARS else None


def referenced_ids(parsed: ParsedMessage) -> tuple[str, ...]:
    """Message-IDs this message answers, nearest first: In-Reply-To, then References from the
    newest back (a reply's own parent is the best evidence, the thread's root the weakest)."""
    seen: list[str] = []
    for mid in (parsed.in_reply_to, *reversed(parsed.references)):
        if mid and mid not in seen and mid != parsed.message_id:
            seen.append(mid)
    return tuple(seen)


# The envelope sender of every delivery is bounces+TOKEN@bounce-domain (delivery/compose.py),
# so a bounce names its delivery in the address it was sent to.
_VERP = re.compile(r"\bbounces\+([A-Za-z0-9_-]{6,64})@", re.IGNORECASE)
# A campaign's List-Unsubscribe mailto address (outreach/campaigns.py): unsubscribe+TOKEN@.
_UNSUBSCRIBE = re.compile(r"\bunsubscribe\+([A-Za-z0-9_-]{6,64})@", re.IGNORECASE)
_RETURNED_ID = re.compile(r"^message-id:\s*<([^<>\s]{1,900})>", re.IGNORECASE | re.MULTILINE)
_ENVELOPE_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")


def verp_tokens(parsed: ParsedMessage, envelope_to: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Delivery tokens from the addresses a bounce was sent to, envelope first."""
    return _tokens(_VERP, parsed, envelope_to)


def unsubscribe_tokens(parsed: ParsedMessage, envelope_to: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Opt-out tokens from the addresses a message was sent to (a List-Unsubscribe mailto)."""
    return _tokens(_UNSUBSCRIBE, parsed, envelope_to)


def _tokens(
    pattern: re.Pattern[str], parsed: ParsedMessage, envelope_to: tuple[str, ...]
) -> tuple[str, ...]:
    places = [*envelope_to, *(a.email for a in parsed.to)]
    places += [value for name in _ENVELOPE_HEADERS for value in parsed.header_all(name)]
    found: list[str] = []
    for place in places:
        for token in pattern.findall(place):
            if token not in found:
                found.append(token)
    return tuple(found)


def returned_ids(parsed: ParsedMessage) -> tuple[str, ...]:
    """Message-IDs of the messages a bounce returns (from its returned headers)."""
    return tuple(_RETURNED_ID.findall(parsed.returned_headers))
