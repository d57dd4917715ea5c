"""bench/outreach's campaign, set up (untimed) through mailflow's own commands, as an operator
would: `contacts import`, `decision add` (English and French documents), `campaign create` with
an audience of every contact, `campaign approve`."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("en", "en", "fr", "es", "en", "fr", "ar")  # the contacts' preferred languages
# Every contact imported is a speaker of a parliament with a country: this audience is all of
# them (`countries: members` is any contact with a country; speakers are official
# correspondents, so no opt-out token and no suppression applies).
AUDIENCE = '{"include": [{"roles": ["speaker"], "countries": "members"}]}'


def mailflow_command(config: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "mailflow", "--config", str(config), *argv]


def write_contacts(path: Path, recipients: int, domains: int) -> Path:
    """A contacts CSV as `mailflow contacts import` reads it: `recipients` speakers across
    `domains` domains, one country (ISO3) per domain, seven languages' preferences."""
    from mailflow.outreach.iso import ISO3166_ALPHA3  # noqa: PLC0415

    countries = sorted(ISO3166_ALPHA3)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("organisation", "person", "role", "country", "languages", "email"))
        for n in range(recipients):
            domain = n % domains
            writer.writerow(
                (
                    f"Parliament {domain}",
                    f"Speaker {n}",
                    "speaker",
                    countries[domain % len(countries)],
                    LANGUAGES[n % len(LANGUAGES)],
                    f"speaker{n}@parliament{domain}.example",
                )
            )
    return path


def write_documents(directory: Path) -> dict[str, Path]:
    """The decision's text in English and French (linked from the messages, not attached)."""
    paragraph = {
        "en": "The Committee on the Human Rights of Parliamentarians, having examined the "
        "case, recalls that freedom of expression is essential to the work of every member "
        "of parliament. ",
        "fr": "Le Comité des droits de l'homme des parlementaires, ayant examiné le cas, "
        "rappelle que la liberté d'expression est essentielle au travail de chaque membre du "
        "parlement. ",
    }
    paths = {}
    for language, text in paragraph.items():
        paths[language] = directory / f"decision-{language}.txt"
        paths[language].write_text((text * 8 + "\n\n") * 10, encoding="utf-8")
    return paths


@dataclass(frozen=True)
class Setup:
    campaign_id: int
    seconds: dict[str, float]  # each setup command's wall-clock time

    def describe(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


def setup_campaign(config: Path, directory: Path, recipients: int, domains: int) -> Setup:
    """An approved campaign of `recipients` contacts, made with mailflow's commands as an
    operator would: import the contacts, add the decision (English and French documents),
    create the campaign with an audience of every contact, approve it. Untimed."""
    contacts = write_contacts(directory / "contacts.csv", recipients, domains)
    documents = write_documents(directory)
    seconds: dict[str, float] = {}
    _setup_step(config, seconds, "contacts import", "contacts", "import", str(contacts))
    out = _setup_step(
        config, seconds, "decision add",
        "decision", "add", "--session", "213th session", "--date", "2026-10-23",
        "--body", "Governing Council", "--symbol", "CL/213/11(b)-R.1",
        "--case", "TUR-69", "--case", "KEN-12", "--visibility", "public",
        "--doc", f"en={documents['en']}", "--doc", f"fr={documents['fr']}",
    )  # fmt: skip
    decision = _id_in(out, r"decision (\d+) added")
    out = _setup_step(
        config, seconds, "campaign create",
        "campaign", "create", "--name", "213th session: decisions", "--decision", decision,
        "--audience-json", AUDIENCE, "--subject-en", "Decisions of the 213th session",
        "--subject-fr", "Décisions de la 213e session", "--by", "bench",
    )  # fmt: skip
    campaign = _id_in(out, r"campaign (\d+) created")
    _setup_step(
        config, seconds, "campaign approve", "campaign", "approve", campaign, "--by", "bench"
    )
    return Setup(int(campaign), seconds)


def _setup_step(config: Path, seconds: dict[str, float], name: str, *argv: str) -> str:
    started = time.perf_counter()
    result = subprocess.run(
        mailflow_command(config, *argv), cwd=ROOT, capture_output=True, text=True, check=False
    )
    seconds[name] = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"bench: mailflow {name} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def _id_in(output: str, pattern: str) -> str:
    match = re.search(pattern, output)
    if match is None:
        raise SystemExit(f"bench: no id ({pattern}) in mailflow's output:\n{output}")
    return match.group(1)
