# ruff: noqa: RUF001  (multilingual test mail: Cyrillic letters and typographic quotes are the point)
"""Language of the human text: scripts, function words, fallbacks, forms."""

from __future__ import annotations

import pytest

from mailflow.classify import classify, document
from mailflow.classify.language import detect_language
from mailflow.classify.rules import RuleSet
from mailflow.parse.model import Forwarded
from tests.classify_support import kind_rules, msg


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return kind_rules(tmp_path_factory)


SAMPLES = {
    "en": "We are writing to you because our colleague was taken from his home by the police "
    "and we have not heard from him since. His family is very worried.",
    "fr": "Nous vous écrivons parce que notre collègue a été emmené par la police et que sa "
    "famille n'a plus de nouvelles de lui depuis une semaine.",
    "es": "Les escribimos porque nuestro colega fue llevado por la policía y su familia no "
    "tiene noticias de él desde hace una semana.",
    "pt": "Escrevemos porque o nosso colega foi levado pela polícia e a família dele não tem "
    "notícias desde a semana passada. Não sabemos onde ele está.",
    "ar": "نكتب إليكم لأن زميلنا اقتادته الشرطة من منزله ولم تتلق عائلته أي خبر عنه منذ أسبوع.",
    "ru": "Мы пишем вам, потому что нашего коллегу забрала полиция, и его семья ничего не "
    "знает о нём уже неделю.",
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_each_language(rules: RuleSet, language: str) -> None:
    result = classify(msg("Subject", SAMPLES[language]), rules)
    assert result.language == language
    assert any(f.field == "language" and f.value == language for f in result.fired)


def test_a_few_japanese_characters_do_not_outvote_an_english_letter(rules: RuleSet) -> None:
    text = SAMPLES["en"] + "\n衆議院 国際部"
    assert classify(msg("Subject", text), rules).language == "en"


def test_forwarded_text_in_another_language_does_not_decide(rules: RuleSet) -> None:
    forwarded = Forwarded("inline", None, "", None, SAMPLES["ru"] * 3)
    parsed = msg(
        "Fwd: letter",
        SAMPLES["en"],
        text=SAMPLES["en"] + "\n" + SAMPLES["ru"] * 3,
        forwarded=(forwarded,),
    )
    assert classify(parsed, rules).language == "en"


def test_short_new_text_falls_back_to_the_whole_text(rules: RuleSet) -> None:
    parsed = msg("Re:", "Voir ci-dessous.", text="Voir ci-dessous.\n" + SAMPLES["fr"])
    assert classify(parsed, rules).language == "fr"


def test_spanish_and_portuguese_are_told_apart(rules: RuleSet) -> None:
    doc = document(msg("", SAMPLES["pt"]))
    assert detect_language(doc, rules).language == "pt"
    doc = document(msg("", SAMPLES["es"]))
    assert detect_language(doc, rules).language == "es"


def test_no_text_uses_content_language_header(rules: RuleSet) -> None:
    doc = document(msg("", ""))
    verdict = detect_language(doc, rules, content_language="fr-CH")
    assert verdict.language == "fr"
    assert detect_language(doc, rules).language is None
