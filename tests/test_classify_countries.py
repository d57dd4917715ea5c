"""Countries: the table, mentions in each language, and choosing the MP's or the writer's."""

from __future__ import annotations

import pytest
from content_support import RULES, extract, form, message

from mailflow.classify.countries import country_entries, country_of_value, mentions
from mailflow.classify.rules import fold

TABLE = country_entries(RULES)


def found(text: str) -> list[str]:
    return [m.iso3 for m in mentions(fold(text), "new_text", TABLE)]


def test_every_un_member_has_english_and_french_names() -> None:
    entries = RULES.table("countries", "country")
    assert len(entries) >= 193
    for entry in entries:
        names = [*entry.get("en", []), *entry.get("aliases", [])]
        assert names, entry["iso3"]
        assert entry.get("fr") or entry.get("aliases") or entry.get("en"), entry["iso3"]


@pytest.mark.parametrize(
    ("text", "iso3"),
    [
        ("the situation in Venezuela", "VEN"),
        ("un député de la Guinée", "GIN"),
        ("un diputado de Marruecos", "MAR"),
        ("um deputado de Moçambique", "MOZ"),
        ("نائب في ليبيا", "LBY"),
        ("депутат из Беларуси", "BLR"),
        ("REPORT FROM TURKEY", "TUR"),
        ("in Türkiye", "TUR"),
        ("en RDC", "COD"),
    ],
)
def test_names_in_each_language(text: str, iso3: str) -> None:
    assert found(text) == [iso3]


@pytest.mark.parametrize(
    ("text", "iso3"),
    [
        ("a member of the State Great Khural", "MNG"),
        ("the Riksdag decided", "SWE"),
        ("a deputy in the Sejm", "POL"),
        ("la deputada venezuelana", "VEN"),
        ("le Groupe français de l'UIP", "FRA"),
        ("los exdiputados nicaragüenses", "NIC"),
        ("the Swedish Parliament", "SWE"),
        ("белорусского депутата", "BLR"),
        ("عضو مجلس النواب الليبي", "LBY"),
    ],
)
def test_parliaments_and_demonyms(text: str, iso3: str) -> None:
    assert found(text) == [iso3]


def test_the_longest_name_wins_and_boundaries_hold() -> None:
    text = "Papua New Guinea, Guinea-Bissau, Guinée équatoriale, Guinea, Niger and Nigeria"
    assert found(text) == ["PNG", "GNB", "GNQ", "GIN", "NER", "NGA"]


def test_common_words_are_not_countries() -> None:
    assert found("a chad of paper, roast turkey and a jordan almond") == []
    assert found("Latin American parliaments") == []


def test_form_values() -> None:
    assert country_of_value("République démocratique du Congo", TABLE) == "COD"
    assert country_of_value("Mongolia", TABLE) == "MNG"


def test_the_mp_country_is_the_one_near_mp_words_not_the_writers() -> None:
    text = (
        "Our centre in Vilnius, Lithuania works on Lithuania and the region. We write about "
        "Mr. Ivan Petrov, a former member of the House of Representatives of Belarus.\n\n"
        "Best regards,\nAnna\nVilnius, Lithuania"
    )
    result = extract(message(text))
    assert result.country == "BLR"
    assert any(f.field == "country" and f.value == "BLR" for f in result.fired)


def test_the_form_field_and_case_codes_come_first() -> None:
    text = "He fled to Kenya, where he lives in Kenya with Kenyan friends."
    submitted = form(Country="Uganda", MP_name="John Okello")
    assert extract(message(text), form=submitted).country == "UGA"
    assert extract(message(text + " His case is UGA-77.")).country == "UGA"


def test_reporting_parliament_skips_the_countries_of_the_cases() -> None:
    text = (
        "The Swedish Group of the IPU met the Ambassador of Cambodia about case KHM-12 "
        "and wrote to the Cambodian authorities.\n\nKind regards,\nInternational Department"
    )
    result = extract(message(text), kind="action_report")
    assert result.reporting_parliament == "SWE"


def test_reporting_parliament_in_french_and_from_the_sender_domain() -> None:
    text = "Le Groupe de l'UIP du Sénégal a examiné le cas GIN-07 (Guinée)."
    assert extract(message(text), kind="action_report").reporting_parliament == "SEN"
    parsed = message("We circulated the decisions.", sender="Clerk <clerk@riksdagen.se>")
    assert extract(parsed, kind="action_report").reporting_parliament == "SWE"
