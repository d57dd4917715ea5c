"""The "Report an MP in danger" form's e-mail (SCHEMA.md): `Label: value` lines, values
continued on lines indented by two spaces, then a free-text `Facts:` block.

Labels come in English or French and map to the canonical English label. Detection is
tolerant: the form's subject convention, or enough of its labels at line starts, found in the
message itself or in a message forwarded inside it (staff forward submissions).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mailflow.classify.model import Fired, FormSubmission
from mailflow.parse.model import ParsedMessage

FACTS = "Facts"
REPORTER_NAME = "Reporter name"
REPORTER_EMAIL = "Reporter e-mail"
# canonical English label -> (English, French) as the form writes them (SCHEMA.md)
LABELS: dict[str, tuple[str, str]] = {
    "Form-Id": ("Form-Id", "Formulaire"),
    "Submitted": ("Submitted", "Soumis le"),
    "Language": ("Language", "Langue"),
    "MP name": ("MP name", "Nom du/de la parlementaire"),
    "Country": ("Country", "Pays"),
    "Parliament/chamber": ("Parliament/chamber", "Parlement/chambre"),
    "MP status": ("MP status", "Statut"),
    "Political affiliation": ("Political affiliation", "Affiliation politique"),
    "Sex": ("Sex", "Sexe"),
    REPORTER_NAME: (REPORTER_NAME, "Nom de l'auteur"),
    REPORTER_EMAIL: (REPORTER_EMAIL, "Courriel de l'auteur"),
    "Reporter phone": ("Reporter phone", "Téléphone de l'auteur"),
    "Relationship to the MP": ("Relationship to the MP", "Lien avec le/la parlementaire"),
    "Reporter identity may be disclosed": (
        "Reporter identity may be disclosed",
        "Identité divulgable",
    ),
    "MP consents": ("MP consents", "Consentement du/de la parlementaire"),
    "Date of events": ("Date of events", "Date des faits"),
    "Alleged violations": ("Alleged violations", "Violations alléguées"),
    "Domestic remedies": ("Domestic remedies", "Recours internes"),
    "Urgent": ("Urgent", "Urgent"),
    FACTS: (FACTS, "Faits"),
}
# Reply prefixes mean a person answering about a submission, not the submission itself;
# forward prefixes (Fwd, TR, RV, WG, ENC) keep it a submission.
_SUBJECT = re.compile(
    r"^\s*(?:(?:fwd?|fw|tr|rv|wg|enc)\s*:\s*)*"
    r"(?:report an mp in danger|signaler un parlementaire en danger)\s*:",
    re.IGNORECASE,
)
_QUOTE_PREFIX = re.compile(r"^(?:> ?)+")
# Enough distinct labels that ordinary prose cannot look like a form ("Country:" alone can).
MIN_LABELS = 5


def _key(label: str) -> str:
    folded = unicodedata.normalize("NFKD", label.replace("\u2019", "'"))
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", plain).strip().lower()


_BY_KEY: dict[str, tuple[str, str]] = {
    _key(written): (canonical, language)
    for canonical, (english, french) in LABELS.items()
    for written, language in ((english, "en"), (french, "fr"))
}
_LABEL_LINE = re.compile(r"^([^\s:][^:]{0,60}?)\s*:(?:\s(.*)|$)")


@dataclass(frozen=True, slots=True)
class FormVerdict:
    form: FormSubmission | None
    fired: tuple[Fired, ...] = ()


def detect_form(parsed: ParsedMessage) -> FormVerdict:
    """The form submission in this message (or forwarded inside it), None when there is none."""
    by_subject = bool(_SUBJECT.search(parsed.subject))
    candidates = [parsed.new_text, *(f.text for f in parsed.forwarded)]
    if by_subject:
        # The form's own e-mail has no quoted history; its full text keeps a Facts block that a
        # sign-off heuristic may have cut from new_text.
        candidates.insert(0, parsed.text)
    best: FormSubmission | None = None
    for text in candidates:
        form = parse_form(text)
        if form and (best is None or len(form.fields) > len(best.fields)):
            best = form
    if best is None or (len(best.fields) < MIN_LABELS and not by_subject):
        return FormVerdict(None)
    best = _with_reporter(best, parsed)
    how = "subject" if by_subject else "labels"
    evidence = parsed.subject if by_subject else f"{len(best.fields)} form labels"
    return FormVerdict(best, (Fired(f"form.{how}", "kind", "report", evidence[:160]),))


def parse_form(text: str) -> FormSubmission | None:
    """Parse `Label: value` lines; None when no form label is found."""
    fields: list[list[str]] = []  # [canonical, value], in form order
    languages: list[str] = []
    in_facts = False
    for raw_line in _unquoted(text).split("\n"):
        line = raw_line.rstrip()
        if in_facts:
            if line in ("--", "-- "):
                break  # a signature separator ends the free text
            fields[-1][1] += "\n" + line
            continue
        label = _label(line)
        if label:
            canonical, language, value = label
            fields.append([canonical, value])
            languages.append(language)
            in_facts = canonical == FACTS
        elif fields and line.startswith((" ", "\t")) and line.strip():
            # A continuation line; line breaks are kept so listed values stay separate.
            fields[-1][1] += "\n" + line.strip()
    if not fields:
        return None
    cleaned = tuple((name, value.strip()) for name, value in fields)
    language = "fr" if languages.count("fr") > languages.count("en") else "en"
    return FormSubmission(_first_of_each(cleaned), language)


def _label(line: str) -> tuple[str, str, str] | None:
    match = _LABEL_LINE.match(line)
    if not match:
        return None
    known = _BY_KEY.get(_key(match.group(1)))
    if not known:
        return None
    return known[0], known[1], (match.group(2) or "").strip()


def _unquoted(text: str) -> str:
    """A form quoted with "> " (forwarded as a quote) parses as well as a plain one."""
    lines = text.replace("\r\n", "\n").split("\n")
    quoted = sum(1 for line in lines if _QUOTE_PREFIX.match(line))
    if quoted * 2 < len([line for line in lines if line.strip()]):
        return "\n".join(lines)
    return "\n".join(_QUOTE_PREFIX.sub("", line) for line in lines)


def _first_of_each(fields: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    seen: set[str] = set()
    kept = []
    for name, value in fields:
        if name not in seen:
            seen.add(name)
            kept.append((name, value))
    return tuple(kept)


def _with_reporter(form: FormSubmission, parsed: ParsedMessage) -> FormSubmission:
    """The form sends From: its own address and Reply-To: the reporter; fill the reporter's
    name and address from Reply-To where the form left them empty."""
    if not parsed.reply_to:
        return form
    reply_to = parsed.reply_to[0]
    fills = {REPORTER_NAME: reply_to.name, REPORTER_EMAIL: reply_to.email}
    fields = list(form.fields)
    for name, value in fills.items():
        if value and not form.get(name):
            fields = [(k, v) for k, v in fields if k != name] + [(name, value)]
    return FormSubmission(tuple(fields), form.language)
