"""parse_message over the shared corpora: the wild one (fuzz seeds, the stdlib's own test
messages) must parse or raise MessageError; the project corpus (valid-ish mail) must parse,
and a few fields checked here were verified by reading those files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailflow.errors import MessageError
from mailflow.parse import ParsedMessage, parse_message

SHARED = Path(__file__).parents[1].parent / "shared"
WILD = SHARED / "corpus-wild"
CORPUS = SHARED / "corpus"


def files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("path", files(WILD, "**/*"), ids=lambda p: p.name)
def test_wild_message_parses_or_raises_message_error(path: Path) -> None:
    try:
        parsed = parse_message(path.read_bytes())
    except MessageError:
        return
    assert isinstance(parsed, ParsedMessage)


@pytest.mark.parametrize("path", files(CORPUS, "*.eml"), ids=lambda p: p.name)
def test_corpus_message_parses(path: Path) -> None:
    parsed = parse_message(path.read_bytes())
    assert parsed.from_ is not None and "@" in parsed.from_.email
    assert parsed.text.strip() or parsed.attachments


def corpus(prefix: str) -> ParsedMessage:
    found = files(CORPUS, f"{prefix}-*.eml")
    if not found:
        pytest.skip(f"no corpus message {prefix} (no ../shared in this checkout)")
    return parse_message(found[0].read_bytes())


def test_wild_corpus_is_present_or_skipped() -> None:
    if not WILD.is_dir():
        pytest.skip("no ../shared/corpus-wild in this checkout")
    assert files(WILD, "**/*")


def test_iso_2022_jp_body_decodes_to_japanese() -> None:
    parsed = corpus("005")
    assert "衆議院 国際部 国際会議課" in parsed.text
    assert parsed.signature.startswith("Yours sincerely,")


def test_html_only_message_yields_text() -> None:
    parsed = corpus("006")
    assert parsed.html_converted
    assert "Rights Defenders International (RDI) submits" in parsed.text
    assert "<" not in parsed.text


def test_arabic_subjects_utf8_and_cp1256() -> None:
    assert corpus("007").subject.startswith("اغتيال النائب نوري عبد")
    assert corpus("049").subject.startswith("تحجير السفر وتتبعات بسبب تدوينة - نائب")


def test_arabic_reply_splits_quote() -> None:
    parsed = corpus("008")
    assert "كتب مصطفى الشتيوي" in parsed.quoted_text
    assert "كتب مصطفى الشتيوي" not in parsed.new_text
    assert "النائب العام" in parsed.new_text


def test_pdf_attachment_text() -> None:
    (attachment,) = corpus("024").attachments
    assert attachment.filename == "Aydogan_medical_report_2025-09-05_EN.pdf"
    assert attachment.sniffed_type == "application/pdf"
    assert "Patient: Berfin Aydogan" in attachment.text


def test_inline_forward() -> None:
    parsed = corpus("026")
    (forward,) = parsed.forwarded
    assert forward.origin == "inline"
    assert forward.from_ is not None and forward.from_.email == "volha.p1979@mail.example.net"
    assert forward.text in parsed.new_text


def test_rfc822_forward() -> None:
    parsed = corpus("029")
    assert parsed.subject.startswith("TR: Révocation de mon mandat de conseillère")
    (forward,) = parsed.forwarded
    assert forward.origin == "rfc822"
    assert forward.from_ is not None and forward.from_.email == "fbdiallo.cnt@gmail.example"
    assert forward.date == datetime(2025, 10, 25, 22, 40, 13, tzinfo=UTC)


@pytest.mark.parametrize(("prefix", "status"), [("030", "5.1.1"), ("032", "5.1.10")])
def test_dsn(prefix: str, status: str) -> None:
    parsed = corpus(prefix)
    assert parsed.content_type == "multipart/report"
    assert f"Status: {status}" in parsed.delivery_status
    assert "From: " in parsed.returned_headers
    assert parsed.forwarded == ()
