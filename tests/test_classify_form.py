# ruff: noqa: RUF001  (multilingual test mail: Cyrillic letters and typographic quotes are the point)
"""The report form's e-mail: labels in English and French, continuation lines, Facts."""

from __future__ import annotations

import pytest

from mailflow.classify import classify
from mailflow.classify.form import detect_form, parse_form
from mailflow.classify.rules import RuleSet
from mailflow.parse.model import Address, Forwarded
from tests.classify_support import kind_rules, msg


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return kind_rules(tmp_path_factory)


FORM_EN = """Form-Id: RMD-2031-00007
Submitted: 2031-02-03 10:00:00 UTC
Language: en
MP name: Tala Ivanova-Smith
Country: Atlantis
Parliament/chamber: House of Delegates
MP status: sitting
Sex: Female
Reporter name: Jo Reporter
Reporter e-mail: jo@ngo.test
Relationship to the MP: Lawyer
MP consents: yes
Alleged violations: Arbitrary arrest and detention
  Threats, acts of intimidation
Domestic remedies: Habeas corpus petition filed on 1 February,
  hearing adjourned twice.
Urgent: yes
Facts:
She was arrested on 1 February after a speech in the House.

Nobody has seen her since: Police say: no comment.
"""

FORM_FR = """Formulaire: RMD-2031-00008
Soumis le: 2031-02-04 09:00:00 UTC
Langue: fr
Nom du/de la parlementaire: Paul Exemple
Pays: Utopie
Parlement/chambre: Assemblée nationale
Statut: former
Téléphone de l’auteur: +1 555 0100
Lien avec le/la parlementaire: Frère
Identité divulgable: no
Consentement du/de la parlementaire: unknown
Date des faits: 2031-01-20
Violations alléguées : Menaces, actes d'intimidation
  Meurtre
Urgent: no
Faits :
Il a été menacé de mort à plusieurs reprises.
"""


def test_english_form_fields_continuations_and_facts() -> None:
    form = parse_form(FORM_EN)
    assert form is not None
    assert form.language == "en"
    assert form.get("MP name") == "Tala Ivanova-Smith"
    assert form.get("Alleged violations").split("\n") == [
        "Arbitrary arrest and detention",
        "Threats, acts of intimidation",
    ]
    assert form.get("Domestic remedies") == (
        "Habeas corpus petition filed on 1 February,\nhearing adjourned twice."
    )
    # The Facts block is free text: a "Label:"-looking line inside it stays in it.
    assert form.get("Facts").endswith("Police say: no comment.")
    assert form.get("Urgent") == "yes"
    assert [name for name, _ in form.fields][:3] == ["Form-Id", "Submitted", "Language"]


def test_french_labels_map_to_canonical_english() -> None:
    form = parse_form(FORM_FR)
    assert form is not None
    assert form.language == "fr"
    assert form.get("MP name") == "Paul Exemple"
    assert form.get("Reporter phone") == "+1 555 0100"  # typographic apostrophe in the label
    assert form.get("Reporter identity may be disclosed") == "no"
    assert form.get("Alleged violations") == "Menaces, actes d'intimidation\nMeurtre"
    assert form.get("Facts") == "Il a été menacé de mort à plusieurs reprises."


def test_form_email_is_a_report_with_reporter_from_reply_to(rules: RuleSet) -> None:
    text = FORM_EN.replace("Reporter name: Jo Reporter\nReporter e-mail: jo@ngo.test\n", "")
    parsed = msg(
        "Report an MP in danger: Tala Ivanova-Smith",
        text,
        sender="IPU website <no-reply@forms.ipu.example>",
        reply_to=(Address("Jo Reporter", "jo@ngo.test"),),
    )
    result = classify(parsed, rules)
    assert result.kind == "report"
    assert result.form is not None
    assert result.form.get("Reporter e-mail") == "jo@ngo.test"
    assert result.form.get("Reporter name") == "Jo Reporter"
    assert any(f.rule == "form.subject" and f.value == "report" for f in result.fired)


def test_french_form_language_comes_from_its_field(rules: RuleSet) -> None:
    parsed = msg(
        "Signaler un parlementaire en danger : Paul Exemple",
        FORM_FR,
        sender="Site de l'UIP <no-reply@forms.ipu.example>",
    )
    result = classify(parsed, rules)
    assert (result.kind, result.language) == ("report", "fr")
    assert any(f.rule == "language.form_field" for f in result.fired)


def test_form_forwarded_by_staff_still_parses(rules: RuleSet) -> None:
    forwarded = Forwarded("inline", None, "Report an MP in danger: Tala", None, FORM_EN)
    parsed = msg(
        "Fwd: for the file",
        "Colleagues, see the submission below.",
        sender="Staff <staff@ipu.example>",
        forwarded=(forwarded,),
    )
    verdict = detect_form(parsed)
    assert verdict.form is not None and verdict.form.get("Country") == "Atlantis"
    assert verdict.fired[0].rule == "form.labels"
    assert classify(parsed, rules).kind == "report"


def test_quoted_form_in_new_text_parses() -> None:
    quoted = "\n".join("> " + line for line in FORM_EN.splitlines())
    verdict = detect_form(msg("Fwd: Report an MP in danger: Tala", quoted))
    assert verdict.form is not None
    assert verdict.form.get("Alleged violations").startswith("Arbitrary arrest")


def test_reply_about_a_submission_is_not_the_form(rules: RuleSet) -> None:
    parsed = msg(
        "RE: Report an MP in danger: Tala Ivanova-Smith",
        "Thank you for your acknowledgement. Our answers: she is still detained "
        "and the next hearing is on 3 March.",
        sender="Jo Reporter <jo@ngo.test>",
        in_reply_to="ack@ipu.example",
    )
    assert detect_form(parsed).form is None
    assert classify(parsed, rules).kind == "followup"


def test_prose_with_one_label_is_not_a_form() -> None:
    parsed = msg("Question", "Country: Atlantis\nUrgent: no\nI would like to know more.")
    assert detect_form(parsed).form is None
