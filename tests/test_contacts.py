"""Contacts: CSV parsing and validation (pure), storage (SQLite and PostgreSQL), commands.

An import is all or nothing; every bad row is named by its line; names that would inject
headers are refused; export reads back as the same contacts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.classify.rules import RuleSet, default_rules_dir
from mailflow.outreach.contacts import (
    ContactError,
    ContactRow,
    ListedContact,
    clean_address,
    clean_role,
    parse_contacts,
    render_contacts,
)
from mailflow.outreach.iso import ISO3166_ALPHA3
from mailflow.store import contacts as stored
from mailflow.store import make_engine, session_factory, upgrade
from mailflow.store.models import Contact, Reporter, Suppression
from tests.test_cli import mailflow

T0 = datetime(2026, 10, 25, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
HEADER = "organisation,person,role,country,languages,email\n"
GOOD = (
    HEADER
    + "Assemblée nationale,Jean Dupont,speaker,CIV,fr;en,Jean.Dupont@Assemblee.CI\n"
    + 'Grand National Assembly,,ipu_group,TUR,"tr,en",ipu@tbmm.gov.tr\n'
    + "Le Temps,,Media,CHE,fr,redaction@letemps.ch\n"
)


def errors_of(text: str) -> list[tuple[int, str]]:
    return [(error.line, error.reason) for error in parse_contacts(text).errors]


# -- parsing (pure) ----------------------------------------------------------------------------


def test_good_file_gives_normalised_rows() -> None:
    parsed = parse_contacts(GOOD)
    assert parsed.errors == ()
    speaker, group, media = parsed.rows
    assert speaker == ContactRow(
        "Assemblée nationale", "Jean Dupont", "speaker", "CIV", ("fr", "en"),
        "jean.dupont@assemblee.ci",
    )  # fmt: skip
    assert group.person is None and group.languages == ("tr", "en")
    assert media.role == "media"
    assert [row.line for row in parsed.rows] == [2, 3, 4]


def test_bom_semicolons_free_column_order_and_labels() -> None:
    text = (
        "\ufeffEmail;Role;Country;Name;Languages\r\n"
        "speaker@parlement.bf;Speaker of Parliament;bfa;Président;FR\r\n"
        "commission@senat.fr;Commission parlementaire des droits de l'homme;FRA;Mme X;\r\n"
    )
    parsed = parse_contacts(text)
    assert parsed.errors == ()
    first, second = parsed.rows
    assert (first.role, first.country, first.languages, first.person) == (
        "speaker", "BFA", ("fr",), "Président",
    )  # fmt: skip
    assert first.organisation is None
    assert second.role == "hr_committee"
    assert second.languages == ("en",)  # none given: English


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("Org,,chairman,TUR,tr,a@tbmm.gov.tr", "unknown role 'chairman'"),
        ("Org,,speaker,TRK,tr,a@tbmm.gov.tr", "bad country 'TRK'"),
        ("Org,,speaker,TUR,tk;xx,a@tbmm.gov.tr", "bad language code 'xx'"),
        ("Org,,speaker,TUR,tr,a.tbmm.gov.tr", "exactly one @"),
        ("Org,,speaker,TUR,tr,a@@tbmm.gov.tr", "exactly one @"),
        ("Org,,speaker,TUR,tr,a b@tbmm.gov.tr", "space"),
        ("Org,,speaker,TUR,tr,a@localhost", "no dot"),
        ("Org,,speaker,TUR,tr,.a@tbmm.gov.tr", "before @"),
        ("Org,,speaker,TUR,tr,a@tbmm..gov.tr", "not a valid host name"),
        ("Org,,speaker,TUR,tr," + "a" * 65 + "@tbmm.gov.tr", "1 to 64"),
        ("Org,,speaker,TUR,tr,a@" + "b" * 64 + ".tr", "too long"),
        ("Org,,speaker,TUR,tr,", "no e-mail address"),
        ("Org,,speaker,,tr,a@tbmm.gov.tr", "role speaker needs a country"),
        (",,media,TUR,tr,a@tbmm.gov.tr", "neither organisation nor person"),
        ("Org,,speaker,TUR,a@tbmm.gov.tr", "5 fields where the header has 6"),
    ],
)
def test_each_bad_row_is_named_by_line_and_reason(row: str, reason: str) -> None:
    text = GOOD + row + "\n"
    parsed = parse_contacts(text)
    assert len(parsed.rows) == 3  # the good ones still parse, for the report
    [(line, found)] = errors_of(text)
    assert line == 5
    assert reason in found


def test_duplicate_address_names_both_lines() -> None:
    text = GOOD + "Other,,ngo,,en,IPU@tbmm.gov.tr\n"
    assert errors_of(text) == [(5, "duplicate address ipu@tbmm.gov.tr (first on line 3)")]


def test_line_numbers_count_blank_lines_and_multiline_fields() -> None:
    text = HEADER + '\n"Two\nlines",,ngo,,en,a@ngo.org\n\nOrg,,ngo,,en,bad\n'
    assert errors_of(text) == [
        (3, "organisation contains a line break or control character"),
        (6, "e-mail address must contain exactly one @"),
    ]


@pytest.mark.parametrize(
    "value",
    [
        '"Speaker\r\nBcc: victim@example.org"',
        '"Speaker\nBcc: victim@example.org"',
        "Speaker\x00",
        "Speaker\x1b[31m",
        "Speaker\u2028Bcc: x@y.org",
        "Speaker\u202eevil",
        '=HYPERLINK("http://x")',
        "@SUM(A1)",
    ],
)
def test_header_injection_and_formulas_in_names_are_refused(value: str) -> None:
    for column in ("organisation", "person"):
        row = (
            f"{value},Jean,mp,TUR,tr,a@tbmm.gov.tr"
            if column == "organisation"
            else (f"Org,{value},mp,TUR,tr,a@tbmm.gov.tr")
        )
        parsed = parse_contacts(HEADER + row + "\n")
        assert parsed.rows == ()
        [error] = parsed.errors
        assert error.line == 2 and error.reason.startswith(column)


def test_persian_name_with_zero_width_non_joiner_is_kept() -> None:
    name = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    [row] = parse_contacts(HEADER + f"Majlis,{name},mp,IRN,fa,mp@majlis.ir\n").rows
    assert row.person == name


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("organisation,role,country\n", "no 'email' column"),
        ("organisation,email,country\n", "no 'role' column"),
        ("organisation,role,email,emial\n", "unknown column 'emial'"),
        ("organisation,role,email,email\n", "column 'email' appears more than once"),
        ("Parlement,speaker,a@b.org\n", "unknown column 'parlement'"),
    ],
)
def test_header_problems_stop_at_line_1(header: str, reason: str) -> None:
    errors = errors_of(header + "Org,speaker,TUR,a@b.org\n")
    assert (1, reason) in [(line, found[: len(reason)]) for line, found in errors]
    assert all(line == 1 for line, _ in errors)


def test_empty_file_and_unclosed_quote() -> None:
    assert errors_of("") == [(1, "empty file: a header row is required")]
    errors = errors_of(HEADER + 'Org,"Jean,mp,TUR,tr,a@tbmm.gov.tr\n')
    assert errors and errors[-1][1].startswith("malformed CSV")


def test_addresses_are_normalised_or_refused() -> None:
    assert clean_address("  Speaker@Parliament.GOV.TR ") == "speaker@parliament.gov.tr"
    assert clean_address("info@bücher.de") == "info@xn--bcher-kva.de"
    assert clean_address("o'brien+decisions@oireachtas.ie") == "o'brien+decisions@oireachtas.ie"
    for bad in ("a@b.c\r\nBcc: x@y.org", '"q"@b.org', "a@b.123", "Name <a@b.org>", "a@-b.org"):
        with pytest.raises(ContactError):
            clean_address(bad)


def test_roles_by_code_or_label_in_any_case() -> None:
    assert clean_role("IPU National Group") == "ipu_group"
    assert clean_role("  ministry of  foreign affairs ") == "mfa"
    assert clean_role("Médias") == "media"
    with pytest.raises(ContactError, match="unknown role"):
        clean_role("president")


def test_country_list_covers_the_rules_countries() -> None:
    rules = RuleSet.load(default_rules_dir())
    iso3 = {country["iso3"] for country in rules.table("countries", "country")}
    assert iso3 <= ISO3166_ALPHA3
    assert {"HKG", "PRI", "PSE", "VAT"} <= ISO3166_ALPHA3


def test_export_reads_back_as_the_same_contacts() -> None:
    rows = parse_contacts(GOOD).rows
    listed = [ListedContact(i, row, "opt_out" if i == 1 else None) for i, row in enumerate(rows)]
    text = render_contacts(listed)
    assert text.splitlines()[0].endswith(",suppressed")
    again = parse_contacts(text)
    assert again.errors == ()
    assert again.rows == rows


# -- storage (SQLite and PostgreSQL) -----------------------------------------------------------


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def test_upsert_adds_then_leaves_unchanged_then_updates(sessions: sessionmaker[Session]) -> None:
    rows = parse_contacts(GOOD).rows
    with sessions.begin() as session:
        assert stored.upsert_contacts(session, rows, T0) == stored.ImportCounts(3, 0, 0)
    with sessions.begin() as session:
        assert stored.upsert_contacts(session, rows, T1) == stored.ImportCounts(0, 0, 3)
    changed = parse_contacts(GOOD.replace("fr;en", "en;fr").replace("Le Temps", "Temps")).rows
    with sessions.begin() as session:
        assert stored.upsert_contacts(session, changed, T1) == stored.ImportCounts(0, 2, 1)
    with sessions() as session:
        speaker = session.scalars(select(Contact).where(Contact.role == "speaker")).one()
        assert speaker.languages == "en,fr"
        assert speaker.updated_at == T1 and speaker.created_at == T0
        assert session.scalar(select(func.count()).select_from(Contact)) == 3


def test_listing_by_role_and_country_with_suppressions(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        stored.upsert_contacts(session, parse_contacts(GOOD).rows, T0)
        assert stored.suppress(session, "IPU@tbmm.gov.tr", "opt_out", T0, "asked by phone") is None
    with sessions() as session:
        everyone = stored.list_contacts(session)
        assert [c.contact.country for c in everyone] == ["CHE", "CIV", "TUR"]
        assert [c.suppressed for c in everyone] == [None, None, "opt_out"]
        turkish = stored.list_contacts(session, roles=["ipu_group"], countries=["TUR"])
        assert [c.contact.email for c in turkish] == ["ipu@tbmm.gov.tr"]
        assert stored.list_contacts(session, roles=["ipu_group"], mailable_only=True) == []
        assert stored.list_contacts(session, roles=["speaker"], countries=["TUR"]) == []
        assert stored.suppression_reason(session, "ipu@TBMM.gov.tr") == "opt_out"
        assert stored.suppressed_among(session, ["IPU@tbmm.gov.tr", "redaction@letemps.ch"]) == {
            "ipu@tbmm.gov.tr": "opt_out"
        }
        found = stored.contact_by_address(session, "Jean.Dupont@assemblee.ci")
        assert found is not None and found.contact.person == "Jean Dupont"


def test_reporters_never_appear_among_contacts(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(Reporter(name="Secret Source", email="source@example.org", language="fr"))
        stored.upsert_contacts(session, parse_contacts(GOOD).rows, T0)
    with sessions() as session:
        listed = stored.list_contacts(session)
    exported = render_contacts(listed)
    assert len(listed) == 3
    assert "source@example.org" not in exported and "Secret Source" not in exported


def test_suppress_keeps_an_existing_reason_and_unsuppress_lifts_it(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        assert stored.suppress(session, "a@b.org", "opt_out", T0) is None
    with sessions.begin() as session:
        kept = stored.suppress(session, "A@b.org", "manual", T1)
        assert kept is not None and kept.reason == "opt_out" and kept.created_at == T0
    with sessions.begin() as session:
        removed = stored.unsuppress(session, "a@B.org")
        assert removed is not None and removed.reason == "opt_out"
        assert stored.unsuppress(session, "a@b.org") is None
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0


# -- commands ----------------------------------------------------------------------------------


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    upgrade(db_url)  # a refused import never opens the database, yet the tests count rows
    return {
        "MAILFLOW_DATABASE_URL": db_url,
        "MAILFLOW_SERVICE_DATA_DIR": str(tmp_path / "data"),
        "MAILFLOW_SERVICE_LOG_LEVEL": "warning",
    }


def count_contacts(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(Contact)) or 0)
    finally:
        engine.dispose()


def test_import_command_all_or_nothing(tmp_path: Path, env: dict[str, str], db_url: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        GOOD + "Org,,chairman,TUR,tr,a@tbmm.gov.tr\nOrg,,mp,TUR,tr,b@@tbmm.gov.tr\n", "utf-8"
    )
    result = mailflow("contacts", "import", str(bad), env=env)
    assert result.returncode == 1
    assert f"{bad}:5: unknown role 'chairman'" in result.stderr
    assert f"{bad}:6: e-mail address must contain exactly one @" in result.stderr
    assert "nothing imported" in result.stdout
    assert count_contacts(db_url) == 0

    good = tmp_path / "good.csv"
    semicolons = GOOD.replace(",", ";").replace("fr;en", '"fr,en"')
    good.write_bytes(("\ufeff" + semicolons).encode())
    dry = mailflow("contacts", "import", "--dry-run", str(good), env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would add 3" in dry.stdout
    assert count_contacts(db_url) == 0
    result = mailflow("contacts", "import", str(good), env=env)
    assert result.returncode == 0, result.stderr
    assert "3 added, 0 updated, 0 unchanged" in result.stdout
    assert count_contacts(db_url) == 3


def test_import_refuses_a_file_that_is_not_utf8(tmp_path: Path, env: dict[str, str]) -> None:
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(GOOD.encode("latin-1"))
    result = mailflow("contacts", "import", str(latin), env=env)
    assert result.returncode == 1
    assert "line 2: the file is not UTF-8" in result.stderr


def test_export_round_trip_list_and_suppression(tmp_path: Path, env: dict[str, str]) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text(GOOD, "utf-8")
    assert mailflow("contacts", "import", str(source), env=env).returncode == 0
    suppressed = mailflow("contacts", "suppress", "IPU@tbmm.gov.tr", "--reason", "opt_out", env=env)
    assert suppressed.returncode == 0 and "suppressed (opt_out)" in suppressed.stdout

    exported = tmp_path / "export.csv"
    assert mailflow("contacts", "export", str(exported), env=env).returncode == 0
    stdout = mailflow("contacts", "export", env=env).stdout
    assert stdout == exported.read_text("utf-8")
    assert "ipu@tbmm.gov.tr,opt_out" in stdout
    assert set(parse_contacts(stdout).rows) == set(parse_contacts(GOOD).rows)
    again = mailflow("contacts", "import", str(exported), env=env)
    assert "0 added, 0 updated, 3 unchanged" in again.stdout

    listed = mailflow(
        "contacts", "list", "--role", "IPU national group", "--country", "tur", env=env
    )
    assert listed.returncode == 0
    assert "ipu@tbmm.gov.tr" in listed.stdout and "[suppressed: opt_out]" in listed.stdout
    assert "letemps" not in listed.stdout
    lifted = mailflow("contacts", "unsuppress", "ipu@tbmm.gov.tr", env=env)
    assert lifted.returncode == 0 and "lifted" in lifted.stdout
    assert "suppressed:" not in mailflow("contacts", "list", env=env).stdout
    assert mailflow("contacts", "unsuppress", "ipu@tbmm.gov.tr", env=env).returncode == 1


def test_suppress_refuses_an_injected_address(env: dict[str, str]) -> None:
    result = mailflow(
        "contacts", "suppress", "a@b.org\r\nBcc: c@d.org", "--reason", "manual", env=env
    )
    assert result.returncode == 1
    assert "control character" in result.stderr
    assert "Traceback" not in result.stderr
