"""Rules as data: load `rules/*.toml`, compile them once, and search a message's text with them.

The file format is documented in `rules/README.md`. A file is one concern (its stem names it:
`violations`, `kinds` ...). Each `[[rules]]` entry has an `id`, the `value` it contributes,
`patterns` (a list, and/or one list per language key such as `en`, `fr`, `ar`) that are
regular expressions searched case-insensitively, optional `unless` patterns that discard a
match when they occur in the same sentence (negation, plans, quoted requests), and optional
`scopes` saying which parts of the message to search. Any other key is kept in `extra` for the
concern's own code (a country's ISO3 code, a bounce's hard/soft type ...).

Matching is accent-insensitive: text and patterns are both folded (NFKD, combining marks
removed), so `detenu` matches "détenu" and Arabic matches with or without harakat.
"""

from __future__ import annotations

import re
import re._constants as _sre_constants  # the parse tree of a pattern, for `_needs`
import re._parser as _sre_parser
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from mailflow.errors import ConfigError

SCOPES = (
    "subject",
    "new_text",
    "quoted_text",
    "text",
    "signature",
    "attachments",
    "forwarded",
    "headers",
)
DEFAULT_SCOPES = ("subject", "new_text")
LANGUAGE_KEYS = frozenset({"en", "fr", "es", "ar", "pt", "ru", "de", "it", "nl", "tr", "any"})
_RESERVED = frozenset({"id", "value", "patterns", "unless", "scopes", "description"})
_SENTENCE_END = re.compile(r"[.!?؟;\n]")
EVIDENCE_CHARS = 160
MAX_SCOPE_CHARS = 12_000
SENTENCE_MAX = 600  # how far from a match its "sentence" reaches, each way
MIN_NEEDED = 3  # a shorter literal is kept only when nothing longer is required
_LITERAL, _BRANCH, _SUBPATTERN = (
    _sre_constants.LITERAL,
    _sre_constants.BRANCH,
    _sre_constants.SUBPATTERN,
)


@cache
def _marks() -> dict[int, None]:
    """Every combining mark of the Basic Multilingual Plane (accents, Arabic harakat ...), for
    str.translate to delete in one C pass. Built on first use: it takes a tenth of a second."""
    return {point: None for point in range(0x300, 0x10000) if unicodedata.combining(chr(point))}


def fold(text: str) -> str:
    """Remove accents and Arabic harakat, keep everything else (case is handled by re.I)."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", text).translate(_marks())


@dataclass(frozen=True, slots=True)
class Hit:
    """Where a rule matched: the scope, the matched text and its sentence."""

    scope: str
    matched: str
    sentence: str
    start: int  # offset in the folded scope text


@dataclass(frozen=True, slots=True)
class Rule:
    concern: str
    id: str
    value: str
    patterns: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...] = ()
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Per pattern, literals one of which any match must contain (lower case), or None. Most
    # rules match nothing in most messages; a substring test rules them out before the regex
    # runs, which is most of classification's time otherwise.
    needs: tuple[frozenset[str] | None, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.concern}.{self.id}"

    def hits(self, doc: Document, scopes: Iterable[str] | None = None) -> Iterator[Hit]:
        """Every match in the document's scopes, minus those an `unless` pattern vetoes."""
        needs = self.needs or (None,) * len(self.patterns)
        for scope in scopes or self.scopes:
            text = doc.folded(scope)
            if not text:
                continue
            for pattern, need in zip(self.patterns, needs, strict=True):
                if need is not None and not any(doc.contains(scope, lit) for lit in need):
                    continue
                for match in pattern.finditer(text):
                    sentence = _sentence(text, match.start(), match.end())
                    if any(veto.search(sentence) for veto in self.unless):
                        continue
                    yield Hit(scope, match.group(0)[:EVIDENCE_CHARS], sentence, match.start())

    def first(self, doc: Document, scopes: Iterable[str] | None = None) -> Hit | None:
        return next(self.hits(doc, scopes), None)


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence around a match, bounded: mail without punctuation has no sentences."""
    left = max(0, start - SENTENCE_MAX)
    for boundary in _SENTENCE_END.finditer(text, left, start):
        left = boundary.end()
    found = _SENTENCE_END.search(text, end, end + SENTENCE_MAX)
    right = found.start() if found else min(len(text), end + SENTENCE_MAX)
    return text[left:right]


class Document:
    """The searchable text views of one message, folded once and cached per scope."""

    def __init__(self, views: Mapping[str, str]) -> None:
        unknown = set(views) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes {sorted(unknown)}")
        # Rules read the start of each scope only: a report's facts come first, and a long
        # PDF or pasted archive would otherwise cost seconds per message in every rule.
        self._views = {scope: text[:MAX_SCOPE_CHARS] for scope, text in views.items()}
        self._folded: dict[str, str] = {}
        self._lowered: dict[str, str] = {}

    def raw(self, scope: str) -> str:
        return self._views.get(scope, "")

    def folded(self, scope: str) -> str:
        if scope not in self._folded:
            self._folded[scope] = fold(self._views.get(scope, ""))
        return self._folded[scope]

    def lowered(self, scope: str) -> str:
        if scope not in self._lowered:
            self._lowered[scope] = self.folded(scope).lower()
        return self._lowered[scope]

    def contains(self, scope: str, literal: str) -> bool:
        """Whether the lower-cased scope contains `literal` (lower case)."""
        return literal in self.lowered(scope)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every rule file of a directory, by concern (file stem)."""

    rules_by_concern: Mapping[str, tuple[Rule, ...]]
    tables: Mapping[str, Mapping[str, Any]]  # each file's top-level non-rule tables

    def rules(self, concern: str) -> tuple[Rule, ...]:
        return self.rules_by_concern.get(concern, ())

    def table(self, concern: str, key: str) -> Any:
        """A file's other top-level data (e.g. `countries.toml`'s `[[country]]` list)."""
        return self.tables.get(concern, {}).get(key)

    @classmethod
    def load(cls, directory: Path) -> RuleSet:
        return _load(directory.resolve())


def default_rules_dir() -> Path:
    """`rules/` beside the package: where `service.rules_dir` points unless configured."""
    return Path(__file__).resolve().parent.parent.parent / "rules"


@cache
def _load(directory: Path) -> RuleSet:
    if not directory.is_dir():
        raise ConfigError(f"rules directory {directory} does not exist")
    by_concern: dict[str, tuple[Rule, ...]] = {}
    tables: dict[str, Mapping[str, Any]] = {}
    for path in sorted(directory.glob("*.toml")):
        concern = path.stem
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read rules: {exc}") from None
        entries = data.pop("rules", [])
        default_scopes = tuple(data.get("meta", {}).get("scopes", DEFAULT_SCOPES))
        by_concern[concern] = tuple(
            _rule(path, concern, entry, default_scopes) for entry in entries
        )
        tables[concern] = data
    return RuleSet(by_concern, tables)


def _rule(path: Path, concern: str, entry: Mapping[str, Any], scopes: tuple[str, ...]) -> Rule:
    where = f"{path.name}: rule {entry.get('id', '?')!r}"
    if "id" not in entry:
        raise ConfigError(f"{where}: missing `id`")
    sources: list[str] = list(entry.get("patterns", []))
    for key in LANGUAGE_KEYS & set(entry):
        sources.extend(entry[key])
    rule_scopes = tuple(entry.get("scopes", scopes))
    bad_scopes = set(rule_scopes) - set(SCOPES)
    if bad_scopes:
        raise ConfigError(f"{where}: unknown scopes {sorted(bad_scopes)}; known: {SCOPES}")
    extra = {k: v for k, v in entry.items() if k not in _RESERVED and k not in LANGUAGE_KEYS}
    patterns = _compile(where, sources)
    return Rule(
        concern=concern,
        id=str(entry["id"]),
        value=str(entry.get("value", entry["id"])),
        patterns=patterns,
        unless=_compile(where, entry.get("unless", [])),
        scopes=rule_scopes,
        extra=extra,
        needs=tuple(required_literals(pattern.pattern) for pattern in patterns),
    )


def required_literals(source: str) -> frozenset[str] | None:
    """Literals (lower case) one of which every match of `source` contains, from its parse
    tree; None when no literal is required. A cheap `in` test before running the regex."""
    try:
        tree = list(_sre_parser.parse(source))
    except (re.error, TypeError, ValueError):  # the re module will say what is wrong
        return None
    return _required(tree)


def _required(items: list[Any]) -> frozenset[str] | None:
    best, run = "", ""
    for op, arg in items:
        if op is _LITERAL:
            run += chr(arg)
            continue
        best, run = max(best, run, key=len), ""
    best = max(best, run, key=len)
    if len(best) >= MIN_NEEDED:
        return frozenset({best.lower()})
    for op, arg in items:
        if op is _BRANCH:
            branches = [_required(list(branch)) for branch in arg[1]]
            if all(branch is not None for branch in branches):
                return frozenset().union(*(b for b in branches if b is not None))
        elif op is _SUBPATTERN:
            inner = _required(list(arg[3]))
            if inner is not None:
                return inner
    return frozenset({best.lower()}) if best else None


def _compile(where: str, sources: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for source in sources:
        try:
            compiled.append(re.compile(fold(source), re.IGNORECASE))
        except re.error as exc:
            raise ConfigError(f"{where}: bad pattern {source!r}: {exc}") from None
    return tuple(compiled)
