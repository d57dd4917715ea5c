"""Attachments: content-addressed, sniffed, safely named, with their text when we can read it."""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
import zipfile
from email.message import Message

from mailflow.parse import fields
from mailflow.parse.htmltext import html_to_text
from mailflow.parse.limits import ParseLimits
from mailflow.parse.model import Attachment
from mailflow.parse.payload import payload_bytes
from mailflow.parse.pdf import pdf_text
from mailflow.parse.sniff import sniff
from mailflow.parse.text import clean_body, decode_bytes

MAX_FILENAME_BYTES = 200
_UNSAFE = re.compile(r'[<>:"|?*\\/]')
_ZIP_TYPES = ("application/zip", "application/vnd.openxmlformats", "application/vnd.oasis")


def build_attachment(
    part: Message, position: int, limits: ParseLimits, notes: list[str]
) -> Attachment:
    content = payload_bytes(part)
    original = declared_filename(part, notes)
    sniffed = sniff(content)
    declared = part.get_content_type().lower()
    text, note = _extract_text(part, content, declared, sniffed, limits)
    return Attachment(
        position=position,
        filename=safe_filename(original),
        original_filename=original,
        declared_type=declared,
        sniffed_type=sniffed,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        text=text,
        note=note,
    )


def declared_filename(part: Message, notes: list[str]) -> str:
    """The filename as declared (RFC 2231 or, as many clients send it, RFC 2047), decoded."""
    try:
        name = part.get_filename()
    except Exception:  # malformed RFC 2231 parameters
        notes.append("attachment filename unreadable")
        return ""
    return fields.decode_value(str(name), notes) if name else ""


def safe_filename(name: str) -> str:
    """A name safe on any filesystem: no directory, no `..`, no control, format (bidi,
    zero-width) or reserved characters, at most MAX_FILENAME_BYTES bytes in UTF-8."""
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" .").replace("..", "_")
    return _bounded_name(name)


def _bounded_name(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
    return stem.encode("utf-8")[:budget].decode("utf-8", "ignore") + suffix


def _extract_text(
    part: Message, content: bytes, declared: str, sniffed: str, limits: ParseLimits
) -> tuple[str, str]:
    if sniffed == "application/pdf":
        return pdf_text(
            content, max_pages=limits.max_pdf_pages, max_chars=limits.max_attachment_text_chars
        )
    if sniffed.startswith(_ZIP_TYPES) and sniffed != "application/zip":
        return "", "office document; text not extracted"
    if sniffed == "application/zip":
        return "", zip_listing(content, limits.max_zip_entries_listed)
    if sniffed.startswith("text/") or (declared.startswith("text/") and sniffed == declared):
        return _text_of(part, content, declared, limits)
    return "", ""


def _text_of(part: Message, content: bytes, declared: str, limits: ParseLimits) -> tuple[str, str]:
    head = content[: limits.max_attachment_text_chars * 4]
    text, note = decode_bytes(head, part.get_content_charset())
    if declared == "text/html":
        text = html_to_text(text[: limits.max_html_chars])
    text = clean_body(text)
    if len(text) > limits.max_attachment_text_chars:
        text = text[: limits.max_attachment_text_chars]
        note = f"text truncated to {limits.max_attachment_text_chars} characters"
    return text, note or ""


def zip_listing(content: bytes, max_entries: int) -> str:
    """The entry names only: a zip is never decompressed here (a small zip can expand to
    gigabytes), and its central directory is read only when its entry count is small."""
    count = _zip_entry_count(content)
    if count is None or count > max_entries * 50:
        return f"zip archive not unpacked; {count if count is not None else 'unknown'} entries"
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            infos = archive.infolist()
    except Exception as exc:  # damaged archives
        return f"zip archive not unpacked; unreadable ({type(exc).__name__})"
    names = ", ".join(safe_filename(info.filename) or "?" for info in infos[:max_entries])
    more = f" and {len(infos) - max_entries} more" if len(infos) > max_entries else ""
    declared = sum(info.file_size for info in infos)
    return (
        f"zip archive not unpacked; {len(infos)} entries, {declared} bytes declared "
        f"uncompressed: {names}{more}"
    )


def _zip_entry_count(content: bytes) -> int | None:
    """Entries declared by the end-of-central-directory record (0xFFFF: zip64, unknown)."""
    end = content.rfind(b"PK\x05\x06", max(0, len(content) - 65_557))
    if end < 0 or end + 22 > len(content):
        return None
    count = int.from_bytes(content[end + 10 : end + 12], "little")
    return None if count == 0xFFFF else count
