"""A decision and its documents, checked before anything is stored. Pure.

A decision is mailed as it was adopted: its text per language as files (PDF, HTML or plain
text). English and French are the Committee's official languages: at least one of the two is
required, both are marked official, and a missing one is a warning (the mailing can wait for
the translation, or go out without it, but someone should decide that knowingly).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from mailflow.errors import MailflowError
from mailflow.outreach.iso import ISO639_1, ISO3166_ALPHA3
from mailflow.store.models_cases import VISIBILITIES, is_case_code

OFFICIAL_LANGUAGES = ("en", "fr")
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # a decision is pages of text, not a video
MAX_FIELD = 100  # decisions.session, body, symbol
_PDF_WINDOW = 1024  # PDF readers accept the header anywhere in the first kilobyte
_HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml")
_TEXT_CONTROLS = frozenset(range(0x20)) - frozenset(b"\t\n\r\f")
_COLLECTIVE = re.compile(r"-COLL-", re.IGNORECASE)


class DecisionError(MailflowError):
    """A decision, case code or document that cannot be stored as given."""


@dataclass(frozen=True, slots=True)
class Document:
    """A decision's text in one language, as stored (bytes kept once in `blobs`)."""

    language: str
    media_type: str
    data: bytes
    sha256: str
    filename: str | None
    official: bool


@dataclass(frozen=True, slots=True)
class NewDecision:
    session: str
    adopted_on: date
    body: str
    symbol: str | None
    visibility: str
    case_codes: tuple[str, ...]
    documents: tuple[Document, ...]
    warnings: tuple[str, ...]


def document_type(data: bytes) -> str:
    """The media type of a decision document from its bytes: PDF, HTML or UTF-8 text.

    The file name's extension is not trusted: a Word file renamed .pdf would reach every
    parliament as an attachment nobody can open.
    """
    if not data:
        raise DecisionError("the document is empty")
    if b"%PDF-" in data[:_PDF_WINDOW]:
        return "application/pdf"
    head = data[:_PDF_WINDOW].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    html = head.startswith(_HTML_STARTS) and (not head.startswith(b"<?xml") or b"<html" in head)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecisionError(
            f"not a PDF, HTML or UTF-8 text document (starts with {data[:8]!r})",
            hint="save it as PDF, or as HTML or plain text in UTF-8",
        ) from None
    if any(ord(ch) in _TEXT_CONTROLS for ch in text):
        raise DecisionError(
            "not a PDF, HTML or text document: it contains control characters (binary data?)"
        )
    return "text/html; charset=utf-8" if html else "text/plain; charset=utf-8"


def make_document(language: str, data: bytes, filename: str | None = None) -> Document:
    code = clean_language(language)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DecisionError(f"{code} document larger than {MAX_DOCUMENT_BYTES // 2**20} MB")
    try:
        media_type = document_type(data)
    except DecisionError as exc:
        raise DecisionError(f"{code} document: {exc}", hint=exc.hint) from None
    return Document(
        language=code,
        media_type=media_type,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        filename=filename,
        official=code in OFFICIAL_LANGUAGES,
    )


def split_doc_option(value: str) -> tuple[str, str]:
    """`en=PATH` as (language, path)."""
    language, sep, path = value.partition("=")
    if not sep or not path:
        raise DecisionError(f"--doc {value!r}: expected LANG=PATH, e.g. en=decision.pdf")
    return clean_language(language), path


def clean_language(text: str) -> str:
    code = text.strip().lower()
    if code not in ISO639_1:
        raise DecisionError(f"bad language code {text!r}: not an ISO 639-1 code (en, fr, es...)")
    return code


def clean_case_code(text: str) -> str:
    """A case code in its normalised form (`tur-69` -> `TUR-69`, `uga-coll-01` ->
    `UGA-Coll-01`), whose prefix is a real ISO 3166-1 alpha-3 code."""
    code = _COLLECTIVE.sub("-Coll-", text.strip().upper()) if text.strip() else ""
    if not is_case_code(code) or code[:3] not in ISO3166_ALPHA3:
        raise DecisionError(
            f"bad case code {text!r}",
            hint="case codes are ISO3-N or ISO3-Coll-NN, e.g. TUR-69 or UGA-Coll-01",
        )
    return code


def parse_date(text: str) -> date:
    try:
        if len(text.strip()) != len("2026-10-24"):
            raise ValueError(text)
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DecisionError(f"bad date {text!r}: expected YYYY-MM-DD") from None


def new_decision(
    *,
    session: str,
    adopted_on: date,
    body: str,
    symbol: str | None,
    visibility: str,
    case_codes: Sequence[str],
    documents: Sequence[Document],
) -> NewDecision:
    """The decision as it will be stored, or DecisionError naming what is wrong."""
    if visibility not in VISIBILITIES:
        raise DecisionError(f"visibility must be one of {', '.join(VISIBILITIES)}")
    codes = tuple(dict.fromkeys(clean_case_code(code) for code in case_codes))
    if not codes:
        raise DecisionError("a decision is on at least one case: give --case CODE")
    return NewDecision(
        session=_field(session, "session", required=True) or "",
        adopted_on=adopted_on,
        body=_field(body, "body", required=True) or "",
        symbol=_field(symbol or "", "symbol", required=False),
        visibility=visibility,
        case_codes=codes,
        documents=_checked_documents(documents),
        warnings=_missing_official(documents),
    )


def _checked_documents(documents: Sequence[Document]) -> tuple[Document, ...]:
    if not any(doc.language in OFFICIAL_LANGUAGES for doc in documents):
        raise DecisionError(
            "a decision needs its English or French text (official languages)",
            hint="give --doc en=PATH and/or --doc fr=PATH",
        )
    seen: set[tuple[str, str]] = set()
    for doc in documents:
        key = (doc.language, doc.media_type)
        if key in seen:
            kind = doc.media_type.split(";")[0]
            raise DecisionError(f"two {doc.language} documents of type {kind}: which is it?")
        seen.add(key)
    return tuple(documents)


def _missing_official(documents: Sequence[Document]) -> tuple[str, ...]:
    given = {doc.language for doc in documents}
    return tuple(
        f"no {code} document: {code} is an official language of the Committee"
        for code in OFFICIAL_LANGUAGES
        if code not in given
    )


def _field(value: str, name: str, *, required: bool) -> str | None:
    text = " ".join(value.split())  # one line: it appears in listings and mail subjects
    if not text:
        if required:
            raise DecisionError(f"the decision's {name} is empty")
        return None
    if any(unicodedata.category(ch) == "Cc" for ch in value.strip()):
        raise DecisionError(f"the decision's {name} contains control characters")
    if len(text) > MAX_FIELD:
        raise DecisionError(f"the decision's {name} is longer than {MAX_FIELD} characters")
    return text
