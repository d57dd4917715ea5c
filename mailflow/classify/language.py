"""Language of a message's human text, from data in `rules/language.toml`.

Non-Latin scripts decide by themselves (Arabic, Cyrillic ...); Latin-script languages are told
apart by how many of the text's words are each language's function words. The text read is
what the sender wrote (new_text), falling back to the whole text and the subject when that is
too short, so a quoted history or a forwarded message in another language does not decide.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from mailflow.classify.model import Fired, FormSubmission
from mailflow.classify.rules import Document, RuleSet, fold

CONCERN = "language"
_WORD = re.compile(r"[^\W\d_]+")
# A script decides when it holds most of the letters (a Japanese signature under an English
# letter does not).
SCRIPT_SHARE = 0.5
_FORM_LANGUAGE_NAMES = {
    "english": "en",
    "anglais": "en",
    "francais": "fr",
    "french": "fr",
    "espanol": "es",
    "spanish": "es",
    "arabic": "ar",
    "arabe": "ar",
    "russian": "ru",
    "russe": "ru",
    "portuguese": "pt",
    "portugues": "pt",
}


@dataclass(frozen=True, slots=True)
class LanguageVerdict:
    language: str | None
    fired: tuple[Fired, ...] = ()


def detect_language(
    doc: Document,
    rules: RuleSet,
    *,
    form: FormSubmission | None = None,
    content_language: str = "",
) -> LanguageVerdict:
    if form is not None:
        return _form_language(form)
    data: Mapping[str, Any] = rules.tables.get(CONCERN, {})
    min_tokens = int(data.get("min_tokens", 8))
    text = ""
    for scope in ("new_text", "text", "subject"):
        text = f"{text}\n{doc.raw(scope)}" if text else doc.raw(scope)
        if len(_WORD.findall(text)) >= min_tokens:
            break
    verdict = language_of(text, data.get("script", ()), data.get("words", ()))
    if verdict.language is None and content_language:
        tag = content_language.split(",", 1)[0].split("-", 1)[0].strip().lower()
        return LanguageVerdict(
            tag or None, (Fired(f"{CONCERN}.content_language", "language", tag, content_language),)
        )
    return verdict


def language_of(
    text: str, scripts: Sequence[Mapping[str, Any]], word_lists: Sequence[Mapping[str, Any]]
) -> LanguageVerdict:
    """The language of `text` by script, else by function words; None when nothing tells."""
    by_script = _by_script(text, scripts)
    if by_script is not None:
        return by_script
    tokens = _WORD.findall(fold(text).lower())
    scores = Counter[str]()
    for entry in word_lists:
        vocabulary = set(str(entry["words"]).split())
        scores[str(entry["language"])] = sum(1 for token in tokens if token in vocabulary)
    best = scores.most_common(1)
    if not best or best[0][1] == 0:
        return _any_script(text, scripts)
    language, score = best[0]
    ranking = ", ".join(f"{lang}={n}" for lang, n in scores.most_common(3))
    evidence = f"{score}/{len(tokens)} function words ({ranking})"
    return LanguageVerdict(
        language, (Fired(f"{CONCERN}.words_{language}", "language", language, evidence),)
    )


def _script_counts(text: str, scripts: Sequence[Mapping[str, Any]]) -> tuple[Counter[str], int]:
    total = sum(len(word) for word in _WORD.findall(text))
    counts = Counter[str]()
    for entry in scripts:
        ranges = tuple((int(low), int(high)) for low, high in entry["ranges"])
        counts[str(entry["language"])] += len(_script_class(ranges).findall(text))
    return counts, total


@cache
def _script_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    """One character class per script, compiled once: counting letters char by char in
    Python would cost more than all the rules together."""
    return re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in ranges) + "]")


def _by_script(text: str, scripts: Sequence[Mapping[str, Any]]) -> LanguageVerdict | None:
    counts, total = _script_counts(text, scripts)
    if not counts or total == 0:
        return None
    language, count = counts.most_common(1)[0]
    if count <= total * SCRIPT_SHARE:
        return None
    return _script_verdict(text, scripts, language, f"{count}/{total} letters")


def _any_script(text: str, scripts: Sequence[Mapping[str, Any]]) -> LanguageVerdict:
    """No function word at all: a minority script is still better than nothing."""
    counts, total = _script_counts(text, scripts)
    best = counts.most_common(1)
    if not best or best[0][1] == 0:
        return LanguageVerdict(None)
    return _script_verdict(text, scripts, best[0][0], f"{best[0][1]}/{total} letters")


def _script_verdict(
    text: str, scripts: Sequence[Mapping[str, Any]], language: str, evidence: str
) -> LanguageVerdict:
    entry = next(e for e in scripts if e["language"] == language)
    for sibling in entry.get("distinct", ()):
        # Two or more letters that only the sibling language writes.
        if sum(text.count(letter) for letter in sibling["letters"]) >= 2:
            language = str(sibling["language"])
            evidence += f", distinct letters of {language}"
            break
    return LanguageVerdict(
        language, (Fired(f"{CONCERN}.script_{entry['language']}", "language", language, evidence),)
    )


def _form_language(form: FormSubmission) -> LanguageVerdict:
    declared = fold(form.get("Language")).strip().lower()
    code = _FORM_LANGUAGE_NAMES.get(
        declared, declared if re.fullmatch(r"[a-z]{2}", declared) else ""
    )
    if code:
        return LanguageVerdict(
            code,
            (
                Fired(
                    f"{CONCERN}.form_field", "language", code, f"Language: {form.get('Language')}"
                ),
            ),
        )
    return LanguageVerdict(
        form.language,
        (Fired(f"{CONCERN}.form_labels", "language", form.language, "the form's label language"),),
    )
