"""Turning bytes of any declared charset into clean text, never raising.

Mail declares charsets that do not exist, UTF-7, or the wrong one (Latin-1 labels on UTF-8
bytes), and carries raw 8-bit bytes where only ASCII is allowed. Every decode here falls back
(declared, then UTF-8, then cp1252, then Latin-1, which accepts any byte) and says what it did.
"""

from __future__ import annotations

import codecs
import re

from mailflow.headers import clean_text

# Labels under which senders usually mean "some Western single-byte charset".
_WESTERN = frozenset({"us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "cp1252"})
_UNKNOWN = frozenset({"", "unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default"})
# A declared charset stays the right reading when only a few bytes are broken.
_MAX_REPLACED_RATIO = 0.01
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAKS = re.compile(r"[\r\n\t\x0b\x0c\x85\u2028\u2029]+")


def codec_name(charset: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None if unknown or not a text codec."""
    label = (charset or "").strip().strip("\"'").lower()
    if label in _UNKNOWN:
        return None
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    # bytes.decode refuses these anyway; checking here gives a clearer note.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode `data`; return the text and a note when the declared charset was not used as is."""
    label = (charset or "").strip().lower()
    codec = codec_name(charset)
    if codec is not None and label in _WESTERN and not data.isascii() and _is_utf8(data):
        return data.decode("utf-8"), f"charset {label} declared on UTF-8 bytes; decoded as utf-8"
    if codec is not None:
        try:
            return data.decode(codec), None
        except (UnicodeError, LookupError, ValueError):
            pass
    if _is_utf8(data):
        return data.decode("utf-8"), _note(label, codec, "utf-8")
    if codec is not None:
        text = _decode_lenient(data, codec)
        if text is not None:
            return text, f"charset {label}: some bytes invalid, replaced"
    try:
        return data.decode("cp1252"), _note(label, codec, "cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1"), _note(label, codec, "latin-1")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_lenient(data: bytes, codec: str) -> str | None:
    try:
        text = data.decode(codec, "replace")
    except (UnicodeError, LookupError, ValueError):
        return None
    if text.count("\ufffd") > max(1, len(text) * _MAX_REPLACED_RATIO):
        return None
    return text


def _note(label: str, codec: str | None, used: str) -> str:
    if not label:
        return f"8-bit bytes without a charset decoded as {used}"
    if codec is None:
        return f"charset {label} unknown; decoded as {used}"
    return f"charset {label} failed; decoded as {used}"


def clean_body(text: str) -> str:
    """Body text safe for any sink: no lone surrogates, no NUL or other C0 controls except
    newline and tab; line endings normalised to LF."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _BODY_CONTROL.sub("", text)


def clean_line(text: str, limit: int = 998 * 4) -> str:
    """A header value on one line: CR/LF (also decoded from encoded words) become spaces."""
    return clean_text(_LINE_BREAKS.sub(" ", text), limit)


def bounded(text: str, limit: int, what: str, notes: list[str]) -> str:
    if len(text) <= limit:
        return text
    notes.append(f"{what} truncated to {limit} characters (had {len(text)})")
    return text[:limit]
