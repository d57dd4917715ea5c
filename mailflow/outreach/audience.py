"""Audiences as data: who a campaign goes to, as a JSON/TOML value, validated and resolved. Pure.

    {"include": [{"roles": ["speaker", "ipu_group"], "countries": "members"},
                 {"roles": ["ambassador"], "countries": "concerned"},
                 {"roles": ["media"], "regions": "concerned"}],
     "exclude": [{"countries": ["FRA"]}]}

A selector matches a contact when every key it has matches: `roles` (recipient role codes),
`countries` ("all"; "members": any contact with a country; "concerned": the countries of the
decision's cases; or a list of ISO3 codes) and `regions` ("concerned": the regions, in the
scheme rules/regions.toml names, containing a concerned country; or a list of region codes).
A contact is in the audience when an `include` selector matches and no `exclude` one does.
Being a value, an audience can be shown, stored, hashed into the approval digest and checked
before anything is sent.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailflow.errors import MailflowError
from mailflow.vocabulary import RECIPIENT_ROLES, codes

SELECTOR_KEYS = ("roles", "countries", "regions")
COUNTRY_WORDS = ("all", "members", "concerned")
ROLE_CODES = codes(RECIPIENT_ROLES)


class AudienceError(MailflowError):
    """An audience that cannot be used: every problem found, one per line."""


@dataclass(frozen=True)
class Selector:
    roles: tuple[str, ...] | None = None  # None: any role
    countries: str | tuple[str, ...] | None = None  # a COUNTRY_WORDS word, ISO3 codes, or None
    regions: str | tuple[str, ...] | None = None  # "concerned", region codes, or None


@dataclass(frozen=True)
class Audience:
    include: tuple[Selector, ...]
    exclude: tuple[Selector, ...] = ()

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no absent keys): what is stored and hashed."""
        return json.dumps(_plain(self), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class Region:
    code: str
    scheme: str
    name_en: str
    name_fr: str
    members: frozenset[str]


@dataclass(frozen=True)
class Geography:
    """rules/regions.toml and rules/countries.toml, as one value."""

    regions: Mapping[str, Region]
    concerned_scheme: str
    # iso3 -> {language: display name}; "en" always present.
    country_names: Mapping[str, Mapping[str, str]]

    def country_name(self, iso3: str | None, language: str) -> str:
        if not iso3:
            return ""
        names = self.country_names.get(iso3.upper())
        if names is None:
            return iso3.upper()
        return names.get(language) or names["en"]


@dataclass(frozen=True)
class ContactFacts:
    """What resolution needs to know about a contact."""

    id: int
    email: str
    role: str
    country: str | None


@dataclass(frozen=True)
class Resolution:
    recipients: tuple[ContactFacts, ...]  # one per address, in contact id order
    suppressed: tuple[ContactFacts, ...]  # matched, but their address is suppressed


def parse_audience(value: Any, geography: Geography) -> Audience:
    """Validate an audience value (parsed JSON or TOML). Raises AudienceError naming every
    problem with its place (`include[2].roles`)."""
    problems: list[str] = []
    if not isinstance(value, Mapping):
        raise AudienceError("an audience is an object with `include` (and `exclude`)")
    _unknown_keys(value, ("include", "exclude"), "audience", problems)
    include = _selectors(value.get("include"), "include", geography, problems)
    exclude = _selectors(value.get("exclude", []), "exclude", geography, problems)
    if not include and not problems:
        problems.append("include: at least one selector is needed")
    if problems:
        raise AudienceError(
            "bad audience: " + "; ".join(problems),
            hint=f"selector keys: {', '.join(SELECTOR_KEYS)}; countries: "
            f"{', '.join(COUNTRY_WORDS)} or ISO3 codes",
        )
    return Audience(tuple(include), tuple(exclude))


def audience_from_json(text: str, geography: Geography) -> Audience:
    try:
        return parse_audience(json.loads(text), geography)
    except json.JSONDecodeError as exc:
        raise AudienceError(f"audience is not valid JSON: {exc}") from None


def audience_from_toml(text: str, geography: Geography) -> Audience:
    try:
        return parse_audience(tomllib.loads(text), geography)
    except tomllib.TOMLDecodeError as exc:
        raise AudienceError(f"audience is not valid TOML: {exc}") from None


def _selectors(raw: Any, where: str, geography: Geography, problems: list[str]) -> list[Selector]:
    if not isinstance(raw, list):
        problems.append(f"{where}: must be a list of selectors")
        return []
    selectors = []
    for index, item in enumerate(raw):
        place = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{place}: must be an object")
            continue
        _unknown_keys(item, SELECTOR_KEYS, place, problems)
        selectors.append(
            Selector(
                roles=_roles(item.get("roles"), place, problems),
                countries=_countries(item.get("countries"), place, geography, problems),
                regions=_regions(item.get("regions"), place, geography, problems),
            )
        )
    return selectors


def _unknown_keys(
    item: Mapping[str, Any], known: Sequence[str], place: str, problems: list[str]
) -> None:
    for key in item:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{place}: unknown key {key!r}{suggestion}")


def _codes(raw: Any, place: str, problems: list[str]) -> tuple[str, ...] | None:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        problems.append(f"{place}: must be a non-empty list of codes")
        return None
    return tuple(dict.fromkeys(raw))


def _roles(raw: Any, place: str, problems: list[str]) -> tuple[str, ...] | None:
    if raw is None:
        return None
    roles = _codes(raw, f"{place}.roles", problems)
    for role in roles or ():
        if role not in ROLE_CODES:
            close = difflib.get_close_matches(role, sorted(ROLE_CODES), n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{place}.roles: unknown role {role!r}{suggestion}")
    return roles


def _countries(
    raw: Any, place: str, geography: Geography, problems: list[str]
) -> str | tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw in COUNTRY_WORDS:
        return raw
    listed = _codes(raw, f"{place}.countries", problems)
    if listed is None:
        return None
    upper = tuple(code.upper() for code in listed)
    for code in upper:
        if code not in geography.country_names:
            problems.append(f"{place}.countries: unknown ISO3 country code {code!r}")
    return upper


def _regions(
    raw: Any, place: str, geography: Geography, problems: list[str]
) -> str | tuple[str, ...] | None:
    if raw is None or raw == "concerned":
        return "concerned" if raw else None
    listed = _codes(raw, f"{place}.regions", problems)
    for code in listed or ():
        if code not in geography.regions:
            close = difflib.get_close_matches(code, sorted(geography.regions), n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{place}.regions: unknown region {code!r}{suggestion}")
    return listed


def _plain(audience: Audience) -> dict[str, Any]:
    def selector(s: Selector) -> dict[str, Any]:
        values = {"roles": s.roles, "countries": s.countries, "regions": s.regions}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v}

    return {
        "include": [selector(s) for s in audience.include],
        "exclude": [selector(s) for s in audience.exclude],
    }


# -- resolution ----------------------------------------------------------------------------


def selected_roles(audience: Audience) -> frozenset[str] | None:
    """The roles any include selector can match (None: any role): a filter for the query."""
    roles: set[str] = set()
    for selector in audience.include:
        if selector.roles is None:
            return None
        roles.update(selector.roles)
    return frozenset(roles)


def resolve(
    audience: Audience,
    contacts: Iterable[ContactFacts],
    concerned: frozenset[str],
    geography: Geography,
    suppressed: frozenset[str],
) -> Resolution:
    """The contacts the audience selects, one per address; suppressed addresses set apart."""
    concerned_regions = _concerned_members(concerned, geography)
    kept: dict[str, ContactFacts] = {}
    dropped: dict[str, ContactFacts] = {}
    for contact in sorted(contacts, key=lambda c: c.id):
        if contact.email in kept or contact.email in dropped:
            continue
        if not _matches_any(audience.include, contact, concerned, concerned_regions, geography):
            continue
        if _matches_any(audience.exclude, contact, concerned, concerned_regions, geography):
            continue
        (dropped if contact.email in suppressed else kept)[contact.email] = contact
    return Resolution(tuple(kept.values()), tuple(dropped.values()))


def _concerned_members(concerned: frozenset[str], geography: Geography) -> frozenset[str]:
    members: set[str] = set()
    for region in geography.regions.values():
        if region.scheme == geography.concerned_scheme and region.members & concerned:
            members |= region.members
    return frozenset(members)


def _matches_any(
    selectors: Iterable[Selector],
    contact: ContactFacts,
    concerned: frozenset[str],
    concerned_regions: frozenset[str],
    geography: Geography,
) -> bool:
    return any(_matches(s, contact, concerned, concerned_regions, geography) for s in selectors)


def _matches(
    selector: Selector,
    contact: ContactFacts,
    concerned: frozenset[str],
    concerned_regions: frozenset[str],
    geography: Geography,
) -> bool:
    if selector.roles is not None and contact.role not in selector.roles:
        return False
    country = (contact.country or "").upper()
    wanted = selector.countries
    if wanted == "members" and not country:
        return False
    if wanted == "concerned" and country not in concerned:
        return False
    if isinstance(wanted, tuple) and country not in wanted:
        return False
    if selector.regions == "concerned":
        return country in concerned_regions
    if isinstance(selector.regions, tuple):
        return any(country in geography.regions[code].members for code in selector.regions)
    return True


# -- the data files --------------------------------------------------------------------------


def load_geography(rules_dir: Path) -> Geography:
    """Read regions.toml and countries.toml from `rules_dir`. Raises AudienceError."""
    regions_data = _read_toml(rules_dir / "regions.toml")
    countries_data = _read_toml(rules_dir / "countries.toml")
    names = _country_names(countries_data, regions_data.get("display_names", {}))
    regions: dict[str, Region] = {}
    for entry in regions_data.get("region", []):
        code = str(entry["code"])
        unknown = set(entry["members"]) - set(names)
        if code in regions or unknown:
            raise AudienceError(f"regions.toml: region {code!r} repeated or has unknown members")
        regions[code] = Region(
            code, entry["scheme"], entry["en"], entry["fr"], frozenset(entry["members"])
        )
    scheme = str(regions_data.get("meta", {}).get("concerned_scheme", "un_group"))
    return Geography(regions, scheme, names)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AudienceError(f"{path}: cannot read: {exc}") from None


def _country_names(
    countries: Mapping[str, Any], overrides: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    names: dict[str, dict[str, str]] = {}
    for entry in countries.get("country", []):
        iso3 = str(entry["iso3"])
        # countries.toml lists names for recognising mentions; the first is the usual one, and
        # a language without its own list writes the name as English does ("France").
        english = (entry.get("en") or entry.get("aliases") or [iso3])[0]
        per_language = {"en": english}
        for language in ("fr", "es", "pt", "ar", "ru"):
            per_language[language] = (entry.get(language) or [english])[0]
        names[iso3] = per_language
    for language, table in overrides.items():
        for iso3, name in table.items():
            names.setdefault(iso3, {"en": name})[language] = name
    return names
