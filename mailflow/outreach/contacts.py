"""Contacts as CSV: parsing and validating an import, and rendering an export. Pure.

An import is all or nothing: `parse_contacts` reports every bad row (line number and reason)
and the caller writes nothing unless there are none. A half-imported address book is worse
than none: nobody can tell which parliaments were left out of a mailing.

Names and organisations end up in the headers of outbound mail (To: "Name" <address>) and in
spreadsheets, so line breaks and other control characters are refused rather than stripped
(a stripped value is silently not what the file said), and so are values a spreadsheet would
run as a formula (=, +, -, @ first).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import parseaddr
from typing import TypeVar

from mailflow.errors import MailflowError
from mailflow.outreach.iso import ISO639_1, ISO3166_ALPHA3
from mailflow.vocabulary import RECIPIENT_ROLES

COLUMNS = ("organisation", "person", "role", "country", "languages", "email")
EXPORT_COLUMNS = (*COLUMNS, "suppressed")
_ALIASES = {
    "organization": "organisation",
    "name": "person",
    "language": "languages",
    "e-mail": "email",
    "suppressed": "suppressed",  # written by export; suppression is changed by command only
}
_REQUIRED = ("role", "email")
# Roles addressed per country: without a country such a contact drops out of every mailing.
COUNTRY_REQUIRED = frozenset({"speaker", "ipu_group", "hr_committee", "mp", "mfa", "ambassador"})
DEFAULT_LANGUAGES = ("en",)
MAX_NAME = 255  # contacts.organisation / person_name
MAX_LANGUAGES = 64  # contacts.languages, stored "fr,en"
MAX_ADDRESS = 254  # RFC 5321: a 256-octet path, less the angle brackets
MAX_LOCAL = 64
MAX_LABEL = 63
MAX_DOMAIN = 253
_FORMULA_STARTS = ("=", "+", "-", "@")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# RFC 5322 dot-atom: the only local part accepted (no quoted strings, no comments, ASCII).
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_LANGUAGE_SEPARATORS = re.compile(r"[;,\s]+")
T = TypeVar("T")


class ContactError(MailflowError):
    """A value that cannot be a contact's (address, role, country, language, name)."""


@dataclass(frozen=True, slots=True)
class ContactRow:
    """One valid contact; `email` is normalised (lower case, IDN domain in ASCII)."""

    organisation: str | None
    person: str | None
    role: str
    country: str | None
    languages: tuple[str, ...]
    email: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class RowError:
    """Why line `line` of the file cannot be imported (line 1 is the header)."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedContacts:
    rows: tuple[ContactRow, ...]
    errors: tuple[RowError, ...]


@dataclass(frozen=True, slots=True)
class ListedContact:
    """A stored contact as listed and exported, with its suppression reason if any."""

    id: int
    contact: ContactRow
    suppressed: str | None


# -- single values ---------------------------------------------------------------------------


def clean_address(text: str) -> str:
    """`text` as a stored address (trimmed, lower case, IDN domain in ASCII), or ContactError.

    Stricter than RFC 5322 on purpose: a bare `local@domain.tld`, an ASCII dot-atom local
    part, a domain with a dot. Anything else in an address book is a typo or an injection.
    """
    address = text.strip()
    if not address:
        raise ContactError("no e-mail address")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in address):
        raise ContactError("e-mail address contains a space, line break or control character")
    if address.count("@") != 1:
        raise ContactError("e-mail address must contain exactly one @")
    local, domain = address.split("@")
    if not local or len(local) > MAX_LOCAL:
        raise ContactError(f"e-mail address: the part before @ must be 1 to {MAX_LOCAL} long")
    if not _LOCAL_PART.match(local):
        raise ContactError("e-mail address: the part before @ has characters not allowed there")
    address = f"{local.lower()}@{_ascii_domain(domain)}"
    if len(address) > MAX_ADDRESS:
        raise ContactError(f"e-mail address longer than {MAX_ADDRESS} characters")
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError):
        raise ContactError("not a valid e-mail address") from None
    if parsed.addr_spec != address or parseaddr(address)[1] != address:
        raise ContactError("not a valid e-mail address")
    return address


def _ascii_domain(domain: str) -> str:
    domain = domain.lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ContactError("e-mail address: not a valid international domain") from None
    labels = domain.split(".")
    if len(labels) < 2:
        raise ContactError("e-mail address: the domain has no dot")
    if len(domain) > MAX_DOMAIN or any(len(label) > MAX_LABEL for label in labels):
        raise ContactError("e-mail address: the domain is too long")
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ContactError("e-mail address: the domain is not a valid host name")
    return domain


def clean_role(text: str) -> str:
    """A recipient-role code from its code or its English or French label, any case."""
    wanted = " ".join(text.split()).casefold()
    for term in RECIPIENT_ROLES:
        if wanted in (term.code, term.label_en.casefold(), term.label_fr.casefold()):
            return term.code
    known = ", ".join(term.code for term in RECIPIENT_ROLES)
    raise ContactError(f"unknown role {text.strip()!r} (one of: {known})")


def clean_country(text: str) -> str | None:
    """An ISO 3166-1 alpha-3 code (any case in, upper case out), or None when empty."""
    code = text.strip().upper()
    if not code:
        return None
    if code not in ISO3166_ALPHA3:
        raise ContactError(f"bad country {text.strip()!r}: not an ISO 3166-1 alpha-3 code")
    return code


def clean_languages(text: str) -> tuple[str, ...]:
    """ISO 639-1 codes, preferred first ("fr;en", "fr,en"); English when none is given."""
    found: list[str] = []
    for part in _LANGUAGE_SEPARATORS.split(text.strip().lower()):
        if not part:
            continue
        if part not in ISO639_1:
            raise ContactError(f"bad language code {part!r}: not an ISO 639-1 code")
        if part not in found:
            found.append(part)
    if len(",".join(found)) > MAX_LANGUAGES:
        raise ContactError("too many languages")
    return tuple(found) or DEFAULT_LANGUAGES


def clean_name(text: str, column: str) -> str | None:
    """A person's or organisation's name: trimmed; None when empty; ContactError when unsafe."""
    name = text.strip()
    if not name:
        return None
    if any(_unsafe(ch) for ch in name):
        raise ContactError(f"{column} contains a line break or control character")
    if name.startswith(_FORMULA_STARTS):
        raise ContactError(f"{column} starts with {name[0]!r} (a spreadsheet formula)")
    if len(name) > MAX_NAME:
        raise ContactError(f"{column} longer than {MAX_NAME} characters")
    return name


def _unsafe(ch: str) -> bool:
    # Cc: CR, LF, NUL, tab, ESC...; Zl/Zp: Unicode line and paragraph separators; bidi
    # overrides would let a name display as something else. Zero-width joiners (Cf) stay:
    # Persian and Indic names need them.
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS


# -- a whole file ----------------------------------------------------------------------------


def decode(data: bytes) -> str:
    """A CSV file's text: UTF-8, with or without a byte-order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ContactError(
            f"line {line}: the file is not UTF-8",
            hint="save it as 'CSV UTF-8' (Excel) or re-encode it, e.g. iconv -t UTF-8",
        ) from None


def parse_contacts(text: str) -> ParsedContacts:
    """Every valid row and every problem of a contacts CSV (header row first; `,` or `;`)."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    records = _records(reader)
    try:
        header_line, header = next(records)
    except StopIteration:
        return ParsedContacts((), (RowError(1, "empty file: a header row is required"),))
    except csv.Error as exc:
        return ParsedContacts((), (RowError(1, f"malformed CSV: {exc}"),))
    columns, problems = _columns(header)
    if problems:
        return ParsedContacts((), tuple(RowError(header_line, p) for p in problems))
    rows: list[ContactRow] = []
    errors: list[RowError] = []
    first_seen: dict[str, int] = {}
    try:
        for line, values in records:
            row, reasons = _row(line, columns, values)
            if row is not None and row.email in first_seen:
                reasons.append(
                    f"duplicate address {row.email} (first on line {first_seen[row.email]})"
                )
            elif row is not None:
                first_seen[row.email] = line
            errors.extend(RowError(line, reason) for reason in reasons)
            if row is not None and not reasons:
                rows.append(row)
    except csv.Error as exc:  # an unclosed quote: nothing after it can be trusted
        errors.append(RowError(reader.line_num, f"malformed CSV: {exc}"))
    return ParsedContacts(tuple(rows), tuple(errors))


def _delimiter(text: str) -> str:
    # Header names hold no delimiter, so the first line tells: Excel writes `;` where the
    # decimal mark is a comma (French, Spanish locales), `,` elsewhere.
    header = text.split("\n", 1)[0]
    return max((",", ";", "\t"), key=header.count)


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) per non-blank record; a quoted field may span lines."""
    previous = 0
    for values in reader:
        start, previous = previous + 1, int(getattr(reader, "line_num", previous + 1))
        if any(value.strip() for value in values):
            yield start, values


def _columns(header: list[str]) -> tuple[list[str], list[str]]:
    columns = [_ALIASES.get(name.strip().lower(), name.strip().lower()) for name in header]
    problems = []
    seen: set[str] = set()
    for name in columns:
        if name not in COLUMNS and name != "suppressed":
            problems.append(f"unknown column {name!r} (columns: {', '.join(COLUMNS)})")
        elif name in seen:
            problems.append(f"column {name!r} appears more than once")
        seen.add(name)
    problems += [f"no {name!r} column" for name in _REQUIRED if name not in columns]
    return columns, list(dict.fromkeys(problems))


def _row(line: int, columns: list[str], values: list[str]) -> tuple[ContactRow | None, list[str]]:
    if len(values) != len(columns):
        return None, [f"{len(values)} fields where the header has {len(columns)}"]
    given = dict(zip(columns, values, strict=True))
    reasons: list[str] = []
    organisation = _check(reasons, lambda v: clean_name(v, "organisation"), given, "organisation")
    person = _check(reasons, lambda v: clean_name(v, "person"), given, "person")
    role = _check(reasons, clean_role, given, "role")
    country = _check(reasons, clean_country, given, "country")
    languages = _check(reasons, clean_languages, given, "languages")
    email = _check(reasons, clean_address, given, "email")
    if not given.get("organisation", "").strip() and not given.get("person", "").strip():
        reasons.append("neither organisation nor person given")
    if role in COUNTRY_REQUIRED and not given.get("country", "").strip():
        reasons.append(f"role {role} needs a country")
    if role is None or languages is None or email is None:
        return None, reasons
    return ContactRow(organisation, person, role, country, languages, email, line), reasons


def _check(
    reasons: list[str], clean: Callable[[str], T], given: dict[str, str], column: str
) -> T | None:
    try:
        return clean(given.get(column, ""))
    except ContactError as exc:
        reasons.append(str(exc))
        return None


# -- export ----------------------------------------------------------------------------------


def render_contacts(contacts: Iterable[ListedContact]) -> str:
    """The CSV `parse_contacts` reads back (plus a `suppressed` column it ignores)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for listed in contacts:
        row = listed.contact
        writer.writerow(
            [
                row.organisation or "",
                row.person or "",
                row.role,
                row.country or "",
                ";".join(row.languages),
                row.email,
                listed.suppressed or "",
            ]
        )
    return out.getvalue()


def stored_languages(languages: tuple[str, ...]) -> str:
    """The form of contacts.languages: "fr,en"."""
    return ",".join(languages)


def languages_from_store(value: str | None) -> tuple[str, ...]:
    return tuple(code for code in (value or "").split(",") if code) or DEFAULT_LANGUAGES
