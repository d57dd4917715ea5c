"""Country mentions: names, demonyms and parliaments' names from `rules/countries.toml`.

The table is data (one `[[country]]` entry a country); this module turns each entry into one
compiled pattern and finds every mention in a folded text. Choosing *which* country a message is
about is done by the callers (`content.py`), which weigh mentions by where they occur.

Matching is case-sensitive for names (proper nouns: "Chad", "Jordan" or "Turkey" written in
lower case are other words) but accepts the all-capitals form of subjects; demonyms accept
either case for their first letter, since French, Spanish and Portuguese write them in lower
case. Russian names and demonyms are matched by stem because Russian declines them
("Беларуси", "белорусского"); Arabic ones accept the prefixes و ب ل ف ك and nisba endings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailflow.classify.rules import RuleSet, fold, required_literals

LANGUAGES = ("en", "fr", "es", "pt", "ar", "ru")
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_ARABIC_LEFT = r"(?:(?<!\w)|(?<=(?<!\w)[\u0648\u0628\u0644\u0641\u0643]))"
_ARABIC_RIGHT = r"(?:\u064a\u0629|\u064a\u064a\u0646|\u064a\u0648\u0646|\u064a|\u0629)?(?!\w)"
KIND_WEIGHT = {"name": 1.0, "demonym": 1.0, "parliament": 2.0}


@dataclass(frozen=True, slots=True)
class Mention:
    iso3: str
    kind: str  # "name", "demonym" or "parliament"
    scope: str
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class CountryEntry:
    iso3: str
    pattern: re.Pattern[str]
    not_after: tuple[str, ...]
    keys: frozenset[str]  # the first letters of its terms' first words, folded, lower case
    needs: frozenset[str] | None = None  # literals one of which a match contains (lower case)


@dataclass(frozen=True, slots=True)
class CountryTable:
    """The compiled entries and, to avoid running 195 patterns over every text, an index from
    the first letters of a word to the entries that have a term starting so."""

    entries: tuple[CountryEntry, ...]
    index: Mapping[str, tuple[int, ...]]


KEY_CHARS = 4
_FIRST_WORD = re.compile(r"\w+")
_ARABIC_PREFIXES = ("\u0648", "\u0628", "\u0644", "\u0641", "\u0643")


def _key(term: str) -> str:
    first = _FIRST_WORD.search(fold(term))
    return first.group(0).lower()[:KEY_CHARS] if first else ""


def _word_keys(word: str) -> Iterable[str]:
    """Every key a text word can stand for: its first 1 to 4 letters, also without one Arabic
    prefix letter (و ب ل ف ك), which a term may not have."""
    forms = [word]
    if word.startswith(_ARABIC_PREFIXES):
        forms.append(word[1:])
    for form in forms:
        for size in range(1, min(KEY_CHARS, len(form)) + 1):
            yield form[:size]


def _inflected_demonym(term: str, lang: str) -> str:
    """Regex for a masculine-singular demonym with its feminine and plural forms."""
    if _CYRILLIC.search(term):
        return re.escape(term) + r"\w{0,4}"
    esc = re.escape(term)
    if lang == "fr":
        return esc + r"(?:n?e)?s?"
    if lang in ("es", "pt"):
        if term.endswith("o"):
            return re.escape(term[:-1]) + r"(?:o|a)s?"
        if term.endswith("es"):  # "frances" (folded): francesa, franceses
            return re.escape(term[:-2]) + r"es(?:a|es|as)?"
        return esc + r"(?:e?s)?"
    if lang == "en":
        return esc + r"s?"
    return esc


def _russian_name(term: str) -> str:
    if " " in term or "-" in term:
        return re.escape(term)
    if term.endswith(("ия", "ея")):
        return re.escape(term[:-1]) + r"\w{0,2}"
    if term.endswith(("а", "я", "ь", "й")):  # noqa: RUF001 (Russian endings)
        return re.escape(term[:-1]) + r"\w{0,3}"
    if term[-1] in "иоуеэы":
        return re.escape(term)
    return re.escape(term) + r"\w{0,2}"


def _either_first(regex: str) -> str:
    first = regex[0]
    if first.isalpha() and first.lower() != first.upper():
        return f"[{first.upper()}{first.lower()}]" + regex[1:]
    return regex


def _term_regex(term: str, kind: str, lang: str) -> str:
    term = fold(term)
    if _ARABIC.search(term):
        return _ARABIC_LEFT + re.escape(term) + _ARABIC_RIGHT
    if kind == "demonym":
        body = _either_first(_inflected_demonym(term, lang))
    elif kind == "parliament":
        body = f"(?i:{re.escape(term)})"
    elif _CYRILLIC.search(term):
        body = _russian_name(term)
    else:
        body = re.escape(term)
        if term.upper() != term:
            body = f"{body}|{re.escape(term.upper())}"
    return rf"(?<!\w)(?:{body})(?!\w)"


def _terms(entry: Mapping[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(term, kind, language) for every term of a country entry."""
    for lang in LANGUAGES:
        for term in entry.get(lang, ()):
            yield term, "name", lang
    for term in entry.get("aliases", ()):
        yield term, "name", "any"
    for lang, terms in entry.get("demonyms", {}).items():
        for term in terms:
            yield term, "demonym", lang
    for term in entry.get("parliaments", ()):
        yield term, "parliament", "any"


def _compile_entry(entry: Mapping[str, Any]) -> CountryEntry:
    by_kind: dict[str, list[tuple[int, str]]] = {"name": [], "demonym": [], "parliament": []}
    for term, kind, lang in _terms(entry):
        by_kind[kind].append((len(term), _term_regex(term, kind, lang)))
    groups = []
    for kind, items in by_kind.items():
        if not items:
            continue
        # Longest first, so "Guinea-Bissau" wins over "Guinea" at the same position.
        alternatives = "|".join(regex for _, regex in sorted(items, key=lambda x: -x[0]))
        groups.append(f"(?P<{kind}>{alternatives})")
    pattern = re.compile("|".join(groups))
    return CountryEntry(
        iso3=str(entry["iso3"]),
        pattern=pattern,
        not_after=tuple(fold(word).lower() for word in entry.get("not_after", ())),
        keys=frozenset(_key(term) for term, _, _ in _terms(entry)) - {""},
        needs=required_literals(pattern.pattern),
    )


_CACHE: dict[int, tuple[object, CountryTable]] = {}


def country_entries(rules: RuleSet) -> CountryTable:
    """The compiled table, compiled once per loaded rule set (compiling takes ~0.5 s)."""
    raw = rules.table("countries", "country") or []
    cached = _CACHE.get(id(raw))
    if cached is not None and cached[0] is raw:
        return cached[1]
    entries = tuple(_compile_entry(entry) for entry in raw)
    index: dict[str, list[int]] = {}
    for number, entry in enumerate(entries):
        for key in entry.keys:
            index.setdefault(key, []).append(number)
    table = CountryTable(entries, {key: tuple(numbers) for key, numbers in index.items()})
    _CACHE[id(raw)] = (raw, table)
    return table


def known_iso3(rules: RuleSet) -> frozenset[str]:
    return frozenset(str(entry["iso3"]) for entry in rules.table("countries", "country") or [])


def _vetoed(text: str, start: int, not_after: Sequence[str]) -> bool:
    before = text[max(0, start - 20) : start].lower()
    return any(before.rstrip().endswith(word) for word in not_after)


def _candidates(text: str, table: CountryTable) -> list[CountryEntry]:
    numbers: set[int] = set()
    for word in set(_FIRST_WORD.findall(text.lower())):
        for key in _word_keys(word):
            numbers.update(table.index.get(key, ()))
    return [table.entries[number] for number in sorted(numbers)]


def mentions(text: str, scope: str, table: CountryTable) -> list[Mention]:
    """Every country mention in folded `text`, overlaps resolved in favour of the longest."""
    found: list[Mention] = []
    lowered = text.lower()
    for entry in _candidates(text, table):
        if entry.needs is not None and not any(need in lowered for need in entry.needs):
            continue  # running a 50-branch pattern over the text would find nothing
        for match in entry.pattern.finditer(text):
            if entry.not_after and _vetoed(text, match.start(), entry.not_after):
                continue
            kind = match.lastgroup or "name"
            found.append(
                Mention(entry.iso3, kind, scope, match.start(), match.end(), match.group(0))
            )
    found.sort(key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[Mention] = []
    for mention in found:
        if kept and mention.start < kept[-1].end:
            continue
        kept.append(mention)
    return kept


def country_of_value(value: str, entries: CountryTable) -> str | None:
    """The country a form field or a short label names ("Mongolia", "Guinée", "RDC")."""
    found = mentions(fold(value), "form", entries)
    if not found:
        return None
    return max(found, key=lambda m: (KIND_WEIGHT[m.kind], m.end - m.start)).iso3


# --- Choosing a country -------------------------------------------------------------------

NEAR_CHARS = 60


@dataclass(frozen=True, slots=True)
class Scored:
    """A mention with the weight its place gives it (scope, neighbourhood, signature)."""

    mention: Mention
    weight: float


def context_patterns(rules: RuleSet, key: str) -> tuple[re.Pattern[str], ...]:
    sources = (rules.table("countries", "context") or {}).get(key, [])
    return tuple(re.compile(fold(source), re.IGNORECASE) for source in sources)


def near(
    text: str, mention: Mention, patterns: Sequence[re.Pattern[str]], before_only: bool
) -> bool:
    """Whether one of `patterns` occurs within NEAR_CHARS of the mention, on the same line."""
    left = max(0, mention.start - NEAR_CHARS)
    window_before = text[left : mention.start].rsplit("\n", 1)[-1]
    window_after = "" if before_only else text[mention.end : mention.end + NEAR_CHARS]
    window_after = window_after.split("\n", 1)[0]
    return any(p.search(window_before) or p.search(window_after) for p in patterns)


def best(scored: Iterable[Scored], exclude: frozenset[str] = frozenset()) -> Scored | None:
    """The country with the highest total weight (earliest mention on a tie), as its best
    mention, or None."""
    totals: dict[str, float] = {}
    first: dict[str, Scored] = {}
    for item in scored:
        iso3 = item.mention.iso3
        if iso3 in exclude or item.weight <= 0:
            continue
        totals[iso3] = totals.get(iso3, 0.0) + item.weight
        if iso3 not in first or item.weight > first[iso3].weight:
            first[iso3] = item
    if not totals:
        return None
    order = list(first)
    winner = max(order, key=lambda iso3: (totals[iso3], -order.index(iso3)))
    return first[winner]


_CCTLD = re.compile(r"\.([a-z]{2})$")
_RESERVED_TLD = re.compile(r"-([a-z]{2})\.(?:example|test|invalid|localhost)$")


def country_of_domain(email: str, rules: RuleSet) -> str | None:
    """ISO3 of an address's country-code domain (riksdagen.se -> SWE). Reserved test domains
    cannot carry a ccTLD, so there the country code is the last hyphenated part of the name
    (parliament-se.example)."""
    domain = email.rpartition("@")[2].lower()
    found = _CCTLD.search(domain) or _RESERVED_TLD.search(domain)
    if not found:
        return None
    iso2 = found.group(1).upper()
    if iso2 == "UK":
        iso2 = "GB"
    for entry in rules.table("countries", "country") or []:
        if entry.get("iso2") == iso2:
            return str(entry["iso3"])
    return None
