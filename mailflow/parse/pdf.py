"""Text from PDF attachments: a report's facts are sometimes only in the PDF.

pypdf is pure Python; its work is bounded by a page limit and a character limit, and any of
its failures on a damaged or hostile file becomes a note instead of an error.
"""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader

# pypdf logs every recoverable oddity of a damaged file; the note we return says enough.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def pdf_text(data: bytes, *, max_pages: int, max_chars: int) -> tuple[str, str]:
    """The text of the first `max_pages` pages, at most `max_chars`; and a note ("" if none)."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            return "", "pdf is encrypted; no text extracted"
        return _pages_text(reader, max_pages=max_pages, max_chars=max_chars)
    except Exception as exc:  # pypdf raises many kinds on damaged files
        return "", f"pdf text extraction failed: {type(exc).__name__}: {str(exc)[:200]}"


def _pages_text(reader: PdfReader, *, max_pages: int, max_chars: int) -> tuple[str, str]:
    chunks: list[str] = []
    total = 0
    count = len(reader.pages)
    for index in range(min(count, max_pages)):
        chunk = reader.pages[index].extract_text() or ""
        chunks.append(chunk)
        total += len(chunk) + 1
        if total >= max_chars:
            return "\n".join(chunks)[:max_chars], f"pdf text truncated to {max_chars} characters"
    text = "\n".join(chunks)
    if count > max_pages:
        return text, f"pdf text from the first {max_pages} of {count} pages"
    if not text.strip():
        return "", "pdf has no extractable text (scanned?)"
    return text, ""
