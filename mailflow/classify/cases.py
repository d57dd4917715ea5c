"""IPU case codes: find candidates with `rules/case_codes.toml`, keep the real ones, normalise.

A current code needs a real ISO3 country (from `rules/countries.toml`), a legacy code a known
prefix (an ISO3 code or one of the Committee's own prefixes): this is what keeps postal codes,
"ISO-9001", phone numbers and document symbols out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailflow.classify.model import Fired
from mailflow.classify.rules import Document, RuleSet

_CURRENT = re.compile(r"([A-Z]{3})-(?:(coll)-)?(\d{1,3})", re.IGNORECASE)
_LEGACY = re.compile(r"([A-Z]{2,4})/?(\d{1,3})")


def normalise(code: str, iso3: frozenset[str], legacy: dict[str, str]) -> str | None:
    """`code` as ISO3-N or ISO3-Coll-NN, or None when it is not a case code."""
    current = _CURRENT.fullmatch(code)
    if current:
        prefix, coll, number = current.groups()
        if prefix not in iso3:
            return None
        return f"{prefix}-Coll-{number}" if coll else f"{prefix}-{number}"
    old = _LEGACY.fullmatch(code)
    if not old:
        return None
    prefix, number = old.groups()
    country = legacy.get(prefix) or (prefix if prefix in iso3 else None)
    if country is None or (len(prefix) == 2 and "/" not in code):
        return None
    return f"{country}-{number}"


def find_case_codes(
    doc: Document, rules: RuleSet, iso3: frozenset[str], scopes: Iterable[str] | None = None
) -> tuple[tuple[str, ...], list[Fired]]:
    """Distinct case codes in order of first appearance, with one Fired per code."""
    legacy = {
        str(k): str(v) for k, v in (rules.table("case_codes", "legacy_prefixes") or {}).items()
    }
    codes: list[str] = []
    fired: list[Fired] = []
    scope_list = tuple(scopes) if scopes is not None else None
    for rule in rules.rules("case_codes"):
        for hit in rule.hits(doc, scope_list):
            code = normalise(hit.matched, iso3, legacy)
            if code is None or code in codes:
                continue
            codes.append(code)
            fired.append(Fired(rule.name, "case_codes", code, f"{hit.scope}: {hit.matched}"))
    return tuple(codes), fired
