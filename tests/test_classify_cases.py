"""Case codes: every written form, normalisation, and what must not be taken for a code."""

from __future__ import annotations

import pytest
from content_support import RULES, extract, message

from mailflow.classify.cases import normalise
from mailflow.classify.countries import known_iso3

ISO3 = known_iso3(RULES)
LEGACY = dict(RULES.table("case_codes", "legacy_prefixes"))


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("BDI-42", "BDI-42"),
        ("MNG-03", "MNG-03"),
        ("UGA-Coll-01", "UGA-Coll-01"),
        ("KHM-COLL-2", "KHM-Coll-2"),
        ("MDV16", "MDV-16"),
        ("MDV/16", "MDV-16"),
        ("MLD/16", "MDV-16"),
        ("CMBD/5", "KHM-5"),
        ("ZBW12", "ZWE-12"),
        ("CO/12", "COL-12"),
        ("VEN10", "VEN-10"),
    ],
)
def test_every_form_is_normalised(written: str, expected: str) -> None:
    assert normalise(written, ISO3, LEGACY) == expected


@pytest.mark.parametrize("written", ["ISO-9001", "ABC-12", "CO2", "EC5", "XYZ/4", "QQQ12"])
def test_unknown_prefixes_are_not_codes(written: str) -> None:
    assert normalise(written, ISO3, LEGACY) is None


def test_codes_found_in_a_letter_in_order_and_distinct() -> None:
    text = (
        "We write about case TUR-211 and the collective case VEN-Coll-06; the older file "
        "MLD/16 and again TUR-211 are relevant."
    )
    found = extract(message(text), kind="action_report")
    assert set(found.case_codes) == {"TUR-211", "VEN-Coll-06", "MDV-16"}
    assert len(found.case_codes) == 3
    assert {f.value for f in found.fired if f.field == "case_codes"} == set(found.case_codes)


def test_postcodes_phones_and_document_symbols_are_ignored() -> None:
    text = (
        "Chemin du Pommier 5, CH-1218 Le Grand-Saconnex. Tel +41 22 919 41 50. "
        "See circular CL/213/2025 and A/HRC/52/3, certified ISO-9001, ref GBR-2025-7, "
        "CO2 emissions, file FRA-12/2024."
    )
    assert extract(message(text), kind="other").case_codes == ()


def test_codes_in_the_subject_and_attachment_count_but_not_quoted_history() -> None:
    parsed = message(
        "Please see the attached report.",
        subject="Action on case PAK-27",
        quoted="> Dear Speaker, the decision on BLR-04 is attached.",
        attachment_text="Belarus - case BLR-5, Mr Someone",
    )
    assert set(extract(parsed, kind="action_report").case_codes) == {"PAK-27", "BLR-5"}


def test_automatic_replies_echo_other_mail_and_record_no_code() -> None:
    parsed = message("I am out of the office.", subject="Away (Re: case PAK-27)")
    assert extract(parsed, kind="auto_reply").case_codes == ()
