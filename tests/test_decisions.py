"""Decisions: documents sniffed from their bytes and kept once, cases by code, commands.

Storage tests run on SQLite and PostgreSQL (`db_url`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailflow.outreach.decisions import (
    DecisionError,
    Document,
    NewDecision,
    clean_case_code,
    document_type,
    make_document,
    new_decision,
    parse_date,
    split_doc_option,
)
from mailflow.store import decisions as decided
from mailflow.store import make_engine, session_factory, upgrade
from mailflow.store.models import Blob, Case, Decision, DecisionDocument
from tests.test_cli import mailflow

T0 = datetime(2026, 10, 25, 9, 0, tzinfo=UTC)
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n"
HTML_FR = "<!DOCTYPE html><html lang=fr><body>Décision adoptée</body></html>".encode()
TEXT_ES = "Decisión adoptada por unanimidad\n".encode()


def decision(*documents: Document, cases: tuple[str, ...] = ("TUR-69",)) -> NewDecision:
    return new_decision(
        session="213th session",
        adopted_on=date(2026, 10, 24),
        body="Governing Council",
        symbol="CL/213/11(b)-R.1",
        visibility="public",
        case_codes=cases,
        documents=documents,
    )


# -- pure --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (PDF, "application/pdf"),
        (b"\n\n%PDF-1.4 after some junk", "application/pdf"),
        (HTML_FR, "text/html; charset=utf-8"),
        (b"\xef\xbb\xbf  <html><body>x</body></html>", "text/html; charset=utf-8"),
        (
            b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"/>',
            "text/html; charset=utf-8",
        ),
        (TEXT_ES, "text/plain; charset=utf-8"),
    ],
)
def test_document_type_from_bytes(data: bytes, kind: str) -> None:
    assert document_type(data) == kind


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a PDF, HTML or UTF-8 text"),
        (b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml word/", "control characters"),
        ("Décision".encode("latin-1"), "not a PDF, HTML or UTF-8 text"),
        (b"text with a NUL\x00 inside", "control characters"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1WordDocument", "not a PDF, HTML or UTF-8 text"),
    ],
)
def test_other_documents_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(DecisionError, match=reason):
        document_type(data)
    with pytest.raises(DecisionError, match=f"^es document: .*{reason}"):
        make_document("es", data, "x.pdf")


def test_documents_carry_digest_and_official_flag() -> None:
    en = make_document("EN", PDF, "en.pdf")
    es = make_document("es", TEXT_ES)
    assert (en.language, en.official, en.sha256) == ("en", True, hashlib.sha256(PDF).hexdigest())
    assert (es.language, es.official, es.filename) == ("es", False, None)
    with pytest.raises(DecisionError, match="not an ISO 639-1"):
        make_document("english", PDF)


@pytest.mark.parametrize(
    ("given", "code"),
    [("TUR-69", "TUR-69"), (" tur-69 ", "TUR-69"), ("uga-coll-01", "UGA-Coll-01")],
)
def test_case_codes_are_normalised(given: str, code: str) -> None:
    assert clean_case_code(given) == code


@pytest.mark.parametrize("bad", ["", "TUR69", "TUR/69", "XYZ-1", "TR-69", "UGA-Coll-1", "TUR-69x"])
def test_bad_case_codes_are_refused(bad: str) -> None:
    with pytest.raises(DecisionError, match="bad case code"):
        clean_case_code(bad)


def test_english_or_french_required_and_a_missing_one_warned() -> None:
    en = make_document("en", PDF)
    fr = make_document("fr", HTML_FR)
    both = decision(en, fr, make_document("es", TEXT_ES))
    assert both.warnings == ()
    assert [d.official for d in both.documents] == [True, True, False]
    only_fr = decision(fr)
    assert only_fr.warnings == ("no en document: en is an official language of the Committee",)
    with pytest.raises(DecisionError, match="English or French"):
        decision(make_document("es", TEXT_ES))
    with pytest.raises(DecisionError, match="two en documents of type application/pdf"):
        decision(en, make_document("en", PDF + b"\n"))


def test_decision_fields_are_checked() -> None:
    en = make_document("en", PDF)
    assert decision(en, cases=("tur-69", "TUR-69", "uga-coll-01")).case_codes == (
        "TUR-69",
        "UGA-Coll-01",
    )
    with pytest.raises(DecisionError, match="at least one case"):
        decision(en, cases=())
    with pytest.raises(DecisionError, match="control characters"):
        new_decision(
            session="213th\x00session", adopted_on=date(2026, 10, 24), body="GC", symbol=None,
            visibility="public", case_codes=["TUR-69"], documents=[en],
        )  # fmt: skip
    with pytest.raises(DecisionError, match="visibility"):
        new_decision(
            session="s", adopted_on=date(2026, 10, 24), body="GC", symbol=None,
            visibility="secret", case_codes=["TUR-69"], documents=[en],
        )  # fmt: skip
    assert parse_date("2026-10-24") == date(2026, 10, 24)
    for bad in ("24/10/2026", "2026-13-01", "20261024"):
        with pytest.raises(DecisionError, match="bad date"):
            parse_date(bad)
    assert split_doc_option("FR=/tmp/a=b.pdf") == ("fr", "/tmp/a=b.pdf")
    with pytest.raises(DecisionError, match="LANG=PATH"):
        split_doc_option("decision.pdf")


# -- storage (SQLite and PostgreSQL) -----------------------------------------------------------


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def count(session: Session, model: type[object]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_decision_with_english_and_french_documents(sessions: sessionmaker[Session]) -> None:
    new = decision(
        make_document("en", PDF, "en.pdf"),
        make_document("fr", HTML_FR, "fr.html"),
        cases=("TUR-69", "UGA-Coll-01"),
    )
    with sessions.begin() as session:
        added = decided.add_decision(session, new, T0)
    assert added.new_cases == ("TUR-69", "UGA-Coll-01") and added.new_blobs == 2
    with sessions() as session:
        info = decided.decision_info(session, added.id)
        assert info is not None
        assert (info.session, info.body, info.visibility) == (
            "213th session", "Governing Council", "public",
        )  # fmt: skip
        assert info.case_codes == ("TUR-69", "UGA-Coll-01")
        assert [(d.language, d.official, d.size) for d in info.documents] == [
            ("en", True, len(PDF)),
            ("fr", True, len(HTML_FR)),
        ]
        assert decided.document_bytes(session, info.documents[1].id) == HTML_FR
        rows = session.execute(select(Case.code, Case.country))
        countries = {code: country for code, country in rows}
        assert countries == {"TUR-69": "TUR", "UGA-Coll-01": "UGA"}


def test_the_same_document_is_stored_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        first = decided.add_decision(session, decision(make_document("en", PDF)), T0)
    # Again in another decision, and for two languages in one (a bilingual PDF).
    bilingual = decision(make_document("en", PDF), make_document("fr", PDF))
    with sessions.begin() as session:
        second = decided.add_decision(session, bilingual, T0)
    assert (first.new_blobs, second.new_blobs) == (1, 0)
    assert second.new_cases == ()  # TUR-69 came with the first decision
    with sessions() as session:
        assert count(session, Blob) == 1
        assert count(session, DecisionDocument) == 3
        assert count(session, Case) == 1
        assert [d.id for d in decided.list_decisions(session)] == [second.id, first.id]


def test_a_failed_decision_leaves_nothing(sessions: sessionmaker[Session]) -> None:
    new = decision(make_document("en", PDF))
    broken = replace(new, visibility="secret")  # past the pure checks: the database refuses
    with pytest.raises(IntegrityError), sessions.begin() as session:
        decided.add_decision(session, broken, T0)
    with sessions() as session:
        assert (count(session, Decision), count(session, Blob), count(session, Case)) == (0, 0, 0)


# -- commands ----------------------------------------------------------------------------------


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    upgrade(db_url)
    return {
        "MAILFLOW_DATABASE_URL": db_url,
        "MAILFLOW_SERVICE_DATA_DIR": str(tmp_path / "data"),
        "MAILFLOW_SERVICE_LOG_LEVEL": "warning",
    }


def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"en": tmp_path / "en.pdf", "fr": tmp_path / "fr.html", "png": tmp_path / "es.pdf"}
    paths["en"].write_bytes(PDF)
    paths["fr"].write_bytes(HTML_FR)
    paths["png"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    return paths


ADD = ("decision", "add", "--session", "213th session", "--date", "2026-10-24")


def test_decision_commands(tmp_path: Path, env: dict[str, str], db_url: str) -> None:
    doc = files(tmp_path)
    added = mailflow(
        *ADD, "--body", "Governing Council", "--case", "TUR-69", "--case", "uga-coll-01",
        "--doc", f"en={doc['en']}", "--doc", f"fr={doc['fr']}", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "decision 1 added: 2 case(s) (new: TUR-69, UGA-Coll-01)" in added.stdout
    assert "warning" not in added.stderr

    listed = mailflow("decision", "list", env=env)
    assert "Governing Council, 213th session: TUR-69, UGA-Coll-01" in listed.stdout
    assert "confidential" in listed.stdout  # the default
    shown = mailflow("decision", "show", "1", env=env)
    assert shown.returncode == 0
    assert "application/pdf" in shown.stdout and "fr.html (official)" in shown.stdout
    assert mailflow("decision", "show", "2", env=env).returncode == 1

    only_fr = mailflow(
        *ADD, "--body", "Committee", "--case", "TUR-69", "--doc", f"fr={doc['fr']}", env=env
    )
    assert only_fr.returncode == 0
    assert "warning: no en document" in only_fr.stderr
    assert "0 new document file(s)" in only_fr.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--case", "TUR-69", "--doc", "en={en}", "--doc", "es={png}"), "es document: not a PDF"),
        (("--case", "TURKEY-69", "--doc", "en={en}"), "bad case code 'TURKEY-69'"),
        (("--case", "TUR-69", "--doc", "es={en}"), "English or French"),
        (("--case", "TUR-69", "--doc", "en={missing}"), "cannot read"),
    ],
)
def test_refused_decisions_store_nothing(
    tmp_path: Path, env: dict[str, str], db_url: str, args: tuple[str, ...], message: str
) -> None:
    paths = {name: str(path) for name, path in files(tmp_path).items()}
    paths["missing"] = str(tmp_path / "missing.pdf")
    result = mailflow(*ADD, "--body", "GC", *[arg.format(**paths) for arg in args], env=env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            assert (count(session, Decision), count(session, Blob)) == (0, 0)
    finally:
        engine.dispose()
