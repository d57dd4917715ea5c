"""Names of the parliamentarians a message is about, as written, from the title and role cues of
`rules/mp_names.toml`: after a title ("Hon. X", "la diputada X", "النائب X"), or before a role
("X, a member of parliament", "X (TUR-211)"). The form's "MP name" field comes first.

Cues are matched on the raw text (not folded) so that names keep their accents; the cue
regexes spell accents out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailflow.classify.model import Fired, FormSubmission
from mailflow.classify.rules import Document, RuleSet, fold

FORM_FIELD = "MP name"
MAX_WORDS = 6
SCOPES = ("subject", "new_text", "forwarded", "attachments")
_WORD = re.compile(r"[ \t]+([^\W\d_][\w'\u2019.-]*)(?=[\s,;:()]|$)")
_CONJUNCTION = re.compile(r"[ \t]+(?:and|et|y|e|und|и|و)(?=[ \t])", re.IGNORECASE)
_NAME_WORD = re.compile(r"[^\W\d_][\w'\u2019.-]*")
_ARABIC_WORD = re.compile(r"[\u0621-\u064a\u064b-\u0652]+")
# Lower-case words that may not stand between a title and a name ("senator from Texas").
_BRIDGE_STOP = frozenset(
    {
        *("from", "with", "about", "under", "since", "pour", "avec", "contra", "desde"),
        *("entre", "sobre", "durante", "depuis", "contre"),
    }
)
_FORM_SUBJECT = r"(?:report an mp in danger|signaler un parlementaire en danger)\s*:"


@dataclass(frozen=True, slots=True)
class Cues:
    before: re.Pattern[str]
    after: re.Pattern[str]
    courtesy: frozenset[str]
    arabic_before: re.Pattern[str]
    arabic_after: re.Pattern[str]
    arabic_stop: frozenset[str]
    not_names: frozenset[str]
    particles: frozenset[str]


def _alternation(sources: Iterable[str]) -> str:
    return "|".join(f"(?:{s})" for s in sources)


def load_cues(table: Mapping[str, Any]) -> Cues:
    before = _alternation([*table.get("before", []), _FORM_SUBJECT])
    return Cues(
        before=re.compile(rf"(?<!\w)(?:{before})(?=[ \t])", re.IGNORECASE),
        after=re.compile(rf"(?:{_alternation(table.get('after', []))})", re.IGNORECASE),
        courtesy=frozenset(c.strip("\\?.").lower() for c in table.get("courtesy", [])),
        arabic_before=re.compile(_alternation(table.get("arabic_before", []))),
        arabic_after=re.compile(_alternation(table.get("arabic_after", []))),
        arabic_stop=frozenset(table.get("arabic_stop", [])),
        not_names=frozenset(w.lower() for w in table.get("not_names", [])),
        particles=frozenset(table.get("particles", [])),
    )


def _is_name_word(word: str, cues: Cues) -> bool:
    bare = word.rstrip(".")
    return (
        bool(_NAME_WORD.fullmatch(word))
        and bare[:1].isupper()
        and bare.lower() not in cues.not_names
    )


def _clean(words: Sequence[str], cues: Cues) -> str:
    """Trim particles at the ends and dots glued to the last word."""
    kept = list(words)
    while kept and (kept[-1].lower() in cues.particles or not kept[-1].rstrip(".")):
        kept.pop()
    while kept and kept[0].lower() in cues.particles:
        kept.pop(0)
    if kept:
        kept[-1] = kept[-1].rstrip(".,;:")
    return " ".join(kept)


def _one_name_after(text: str, pos: int, cues: Cues, bridge: bool) -> tuple[str, int]:
    """The capitalised words that start at `pos` and where they end; when `bridge`, one
    lower-case adjective may come first ("la deputada venezuelana María ...")."""
    words: list[str] = []
    while len(words) < MAX_WORDS:
        match = _WORD.match(text, pos)
        if not match:
            break
        word = match.group(1)
        if _is_name_word(word, cues) or (words and word.lower() in cues.particles):
            words.append(word)
        elif bridge and not words and word.islower() and len(word) >= 5:
            bridge = False
            if word in _BRIDGE_STOP:
                break
        else:
            break
        pos = match.end()
        if word.endswith(".") and len(word) > 3:
            break
    return _clean(words, cues), pos


def names_after(text: str, pos: int, cues: Cues) -> list[str]:
    """The name after a title, and the ones joined to it by "and" ("the MPs X and Y")."""
    names = []
    name, pos = _one_name_after(text, pos, cues, bridge=True)
    while name:
        names.append(name)
        joined = _CONJUNCTION.match(text, pos)
        if not joined:
            break
        name, pos = _one_name_after(text, joined.end(), cues, bridge=False)
        if len(name.split()) < 2:
            break
    return names


def name_before(text: str, pos: int, cues: Cues) -> str:
    """The capitalised words that end at `pos`, on the same line, without a courtesy title."""
    line = text[:pos].rsplit("\n", 1)[-1]
    words: list[str] = []
    for word in reversed(line.split()):
        if len(words) >= MAX_WORDS:
            break
        if _is_name_word(word, cues) or (words and word.lower() in cues.particles):
            words.insert(0, word)
        else:
            break
    courtesy = False
    while words and words[0].rstrip(".").lower() in cues.courtesy | cues.not_names:
        courtesy = courtesy or words[0].rstrip(".").lower() in cues.courtesy
        words.pop(0)
    # One capitalised word before "MP" is too often not a name ("Report an MP"), unless a
    # courtesy title stood before it ("Mr. Bouzid, former member").
    if len(words) < 2 and not courtesy:
        return ""
    return _clean(words, cues)


def _arabic_names(text: str, cues: Cues) -> Iterable[str]:
    for match in cues.arabic_before.finditer(text):
        words: list[str] = []
        for word in text[match.end() : match.end() + 80].split():
            bare = word.rstrip("،,.:")
            if not _ARABIC_WORD.fullmatch(bare) or bare in cues.arabic_stop or len(words) >= 5:
                break
            words.append(bare)
            if bare != word:
                break
        if len(words) >= 2:
            yield " ".join(words)
    for match in cues.arabic_after.finditer(text):
        before = text[max(0, match.start() - 80) : match.start()].split()
        words = []
        for word in reversed(before):
            title = cues.arabic_before.fullmatch(word)
            if not _ARABIC_WORD.fullmatch(word) or word in cues.arabic_stop or title:
                break
            words.insert(0, word)
        if len(words) >= 2:
            yield " ".join(words[-5:])


def candidates(text: str, cues: Cues) -> Iterable[str]:
    for match in cues.before.finditer(text):
        yield from names_after(text, match.end(), cues)
    for match in cues.after.finditer(text):
        yield name_before(text, match.start(), cues)
    yield from _arabic_names(text, cues)


def family(name: str) -> str:
    return fold(name.rsplit(maxsplit=1)[-1]).lower() if name.split() else ""


def _overlaps(one: str, other: str) -> bool:
    a, b = _tokens(one), _tokens(other)
    return family(one) == family(other) or a <= b or b <= a


def merge(names: Iterable[str]) -> list[str]:
    """Distinct names in order, one per family name, the fullest form kept."""
    kept: list[str] = []
    for name in names:
        if not name:
            continue
        same = [i for i, k in enumerate(kept) if _overlaps(name, k)]
        if not same:
            kept.append(name)
        elif len(name) > len(kept[same[0]]):
            kept[same[0]] = name
    return kept


def _tokens(name: str) -> frozenset[str]:
    return frozenset(fold(name).lower().split())


def is_writer(name: str, writers: Iterable[str]) -> bool:
    """Whether `name` is one of the writers' (all the words of one inside the other's)."""
    words = _tokens(name)
    return any(len(w) >= 2 and (w <= words or words <= w) for w in map(_tokens, writers) if w)


def find_mp_names(
    doc: Document,
    rules: RuleSet,
    form: FormSubmission | None,
    writers: Iterable[str] = (),
    self_names: Iterable[str] = (),
) -> tuple[tuple[str, ...], list[Fired]]:
    """MP names: the form's field when it has one (the rest of a form is the reporter's
    details), else the cues; `writers` are dropped (a colleague signing "Hon. X")."""
    cues = load_cues(rules.table("mp_names", "cues") or {})
    found: list[tuple[str, str]] = []
    if form is not None and form.get(FORM_FIELD).strip():
        for name in re.split(r"[;\n]", form.get(FORM_FIELD)):
            found.append((name.strip(), "form.mp_name"))
    writer_names = tuple(writers)
    for scope in SCOPES if not found else ():
        for name in candidates(doc.raw(scope), cues):
            if len(name) > 2 and not is_writer(name, writer_names):
                found.append((name, f"mp_names.cue ({scope})"))
    # The MP writing about themself signs with their full name: it completes the name the
    # text gives ("la asambleísta Paola Zambrano"), or is the only one.
    for name in self_names:
        if len(name.split()) >= 2 and (not found or any(_overlaps(name, n) for n, _ in found)):
            found.append((name, "mp_names.writer"))
    names = merge(name for name, _ in found)
    fired = [
        Fired(next(rule for n, rule in found if _overlaps(n, name)), "mp_names", name, name)
        for name in names
    ]
    return tuple(names), fired
