"""Content extraction: violations, urgency, MP names, reporter, actions, and the Fired trail."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from content_support import extract, form, message


def violations(text: str) -> set[str]:
    return set(extract(message(text)).violations)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("The MP was shot dead outside his home last night.", "murder"),
        ("El diputado fue detenido sin orden judicial el lunes.", "arbitrary_arrest_detention"),
        ("La députée a reçu des menaces de mort par SMS.", "threats_intimidation"),
        ("A deputada foi impedida de embarcar no aeroporto.", "freedom_movement"),
        ("تعرض النائب للتعذيب في السجن", "torture_violence"),
        ("Депутат был задержан и помещён в СИЗО.", "arbitrary_arrest_detention"),
        ("The Assembly lifted his parliamentary immunity without hearing him.", "immunity"),
        ("Her private phone calls were intercepted and leaked.", "privacy"),
        (
            "His seat was declared vacant after a so-called recall procedure.",
            "abusive_revocation_mandate",
        ),
        ("Il a été condamné par un tribunal militaire.", "unfair_trial"),
        ("He was stripped of his nationality and his property was confiscated.", "other"),
    ],
)
def test_violations_in_each_language(text: str, code: str) -> None:
    assert code in violations(text)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("He was not tortured, but he was kept awake.", "torture_violence"),
        ("El diputado no ha sido detenido hasta ahora.", "arbitrary_arrest_detention"),
        ("Le député n'a pas été arrêté.", "arbitrary_arrest_detention"),
        ("No one has been arrested for the attack on her office.", "arbitrary_arrest_detention"),
        ("Red-tagging is often followed by physical attacks.", "torture_violence"),
    ],
)
def test_negations_and_generic_mentions_are_vetoed(text: str, code: str) -> None:
    assert code not in violations(text)


def test_impunity_needs_a_grave_violation() -> None:
    assert "impunity" not in violations("Three complaints; no one has been charged.")
    text = "The MP was murdered in March. No one has been charged since."
    assert {"murder", "impunity"} <= violations(text)


def test_quoted_history_is_not_counted() -> None:
    parsed = message("Thank you for your reply.", quoted="> He was tortured in custody.")
    assert extract(parsed, kind="followup").violations == ()


def test_form_violations_map_english_and_french_labels() -> None:
    submitted = form(
        MP_name="Jane Doe",
        Alleged_violations=(
            "Arbitrary arrest and detention\nNon-respect de l'immunité parlementaire"
        ),
    )
    result = extract(message("Facts: see above."), form=submitted)
    assert {"arbitrary_arrest_detention", "immunity"} <= set(result.violations)
    assert any(f.rule == "form.alleged_violations" for f in result.fired)


@pytest.mark.parametrize(
    "text",
    [
        "She has been on hunger strike for 30 days.",
        "Recibe amenazas de muerte desde abril.",
        "Since his arrest he has been held incommunicado.",
        "La famille n'a aucune nouvelle de lui depuis son enlèvement.",
        "He was beaten in custody.",
        "أخي اغتيل أمام منزله",
    ],
)
def test_urgent_cues(text: str) -> None:
    result = extract(message(text))
    assert result.urgent
    assert any(f.field == "urgent" for f in result.fired)


def test_detention_alone_is_not_urgent() -> None:
    text = "He has been held in the central prison since 2023 and his trial was postponed."
    assert not extract(message(text)).urgent


def test_form_urgent_and_an_imminent_trial_make_it_urgent() -> None:
    assert extract(message("Facts."), form=form(MP_name="A B", Urgent="yes")).urgent
    sent = datetime(2025, 4, 28, 16, 0, tzinfo=UTC)
    soon = message("Son procès doit s'ouvrir le 6 mai 2025.", date=sent)
    later = message("His trial is set for 6 September 2025.", date=sent)
    assert extract(soon).urgent
    assert not extract(later).urgent


def test_mp_names_after_titles_and_before_roles() -> None:
    text = (
        "We write about Hon. Peter Mwangi Kamau and la diputada María José Pérez. "
        "Ms. Anna Berg, a member of the Riksdag, and Mr. Ali Hassan (TUR-12) too. "
        "شقيق النائب أحمد علي حسن، عضو مجلس النواب"
    )
    names = extract(message(text)).mp_names
    assert {n.split()[-1] for n in names} == {"Kamau", "Pérez", "Berg", "Hassan", "حسن"}
    assert "أحمد علي حسن" in names


def test_mp_names_keep_the_form_field_and_drop_the_writer() -> None:
    result = extract(message("Hon. John Okello was arrested."), form=form(MP_name="John Okello"))
    assert result.mp_names == ("John Okello",)
    text = "Mon collègue l'honorable Paul Kabila est menacé.\n\nHon. Marie Dupont\nDéputée"
    parsed = message(text, sender="Marie Dupont <m.dupont@example.org>")
    assert extract(parsed).mp_names == ("Paul Kabila",)


@pytest.mark.parametrize(
    ("text", "reporter"),
    [
        ("Mi esposo, el diputado Luis Pérez, fue detenido.", "family"),
        ("I am the lawyer of Ms. Berg and write with her consent.", "legal_rep"),
        ("Je suis député et mon mandat a été révoqué.", "mp_self"),
        ("Je vous écris au sujet de mon collègue le député Paul Kabila.", "mp_other"),
        ("Our human rights centre has documented his case since 2021.", "ngo_national"),
        ("I am a journalist and saw the arrest.", "other_reliable"),
    ],
)
def test_reporter_types(text: str, reporter: str) -> None:
    assert extract(message(text)).reporter_type == reporter


def test_reporter_from_the_form_relationship() -> None:
    assert extract(message("Facts."), form=form(Relationship_to_the_MP="Frère")).reporter_type == (
        "family"
    )
    relationship = "Fellow parliamentarian (same party)"
    result = extract(message("Facts."), form=form(Relationship_to_the_MP=relationship))
    assert result.reporter_type == "mp_other"


def test_actions_done_are_kept_and_plans_are_not() -> None:
    text = (
        "On 20 November the Chair wrote to the Minister for Foreign Affairs about the case.\n"
        "The decisions were circulated on 14 November to all members of parliament.\n"
        "We will meet the Ambassador of Cambodia next month.\n"
        "The Sub-Committee intends to:\n"
        "- adopt a resolution in the Senate;\n"
        "- raise the case at the OSCE Parliamentary Assembly.\n"
    )
    result = extract(message(text), kind="action_report")
    assert set(result.action_types) == {"request_mfa_intervention", "disseminate_decisions"}
    assert {f.field for f in result.fired} >= {"action_types"}


def test_actions_in_french_and_spanish_with_plans_vetoed() -> None:
    text = (
        "Le Groupe a transmis les décisions aux membres de l'Assemblée. Le président compte "
        "rencontrer l'Ambassadeur. El Pleno aprobó una resolución sobre el caso; el Grupo "
        "tiene previsto reunirse con el Embajador."
    )
    result = extract(message(text), kind="action_report")
    assert set(result.action_types) == {"disseminate_decisions", "debate_and_resolution"}


def test_our_quoted_mailing_is_not_an_action() -> None:
    quoted = (
        "> I would be grateful if your parliament could act, for example by asking the "
        "Minister of Foreign Affairs to take diplomatic steps or by adopting a resolution."
    )
    parsed = message("Thank you, we will consider it.", quoted=quoted)
    assert extract(parsed, kind="action_report").action_types == ()


def test_every_field_leaves_a_fired_entry() -> None:
    text = (
        "Mi esposo, el diputado Luis Pérez de la Asamblea Nacional de Venezuela, fue "
        "detenido y no sabemos nada de él."
    )
    result = extract(message(text))
    fields = {f.field for f in result.fired}
    assert {"country", "violations", "urgent", "reporter_type", "mp_names"} <= fields
    assert result.country == "VEN"
    assert all(f.rule and f.evidence for f in result.fired)


def test_kinds_without_content_return_nothing() -> None:
    result = extract(message("He was tortured. Case TUR-1."), kind="bounce")
    assert result.violations == () and result.case_codes == () and result.fired == ()
