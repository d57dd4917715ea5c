"""Shared by the campaign tests: settings, and a decision with cases, documents and contacts
written directly with the ORM (so these tests do not depend on the contacts/decisions import).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from mailflow.settings import (
    CampaignSettings,
    DatabaseSettings,
    OutboundSettings,
    ServiceSettings,
    Settings,
)
from mailflow.store.models import (
    ActionReport,
    Blob,
    Case,
    Contact,
    Decision,
    DecisionDocument,
    Person,
    Report,
    Reporter,
    Suppression,
)
from tests.servers.smtp_sink import SMTPSink

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CANARY = "CANARY-7f3a9"
INJECTION = "Evil\r\nBcc: spy@evil.example\r\nX-Injected: yes"
PDF_EN = b"%PDF-1.4\n% decision in English\n"
PDF_FR = b"%PDF-1.4\n% decision en francais\n"


def campaign_settings(
    tmp_path: Path, db_url: str, sink: SMTPSink | None = None, **campaigns: Any
) -> Settings:
    relay: dict[str, Any] = (
        {"relay_host": sink.host, "relay_port": sink.port, "relay_security": "none"}
        if sink is not None
        else {}
    )
    return Settings(
        service=ServiceSettings(data_dir=tmp_path / "data"),
        database=DatabaseSettings(url=db_url),
        outbound=OutboundSettings(
            from_address="committee@ipu.example", bounce_domain="bounces.ipu.example", **relay
        ),
        campaigns=replace(
            CampaignSettings(unsubscribe_url_base="https://ipu.example/unsubscribe/"),
            **campaigns,
        ),
    )


@dataclass(frozen=True)
class World:
    decision_id: int
    contacts: dict[str, int]  # label -> contact id


def _blob(session: Session, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(data), data=data))
        session.flush()  # before the document that refers to it (no relationship orders them)
    return digest


CONTACTS: dict[str, tuple[str, str, str | None, str, str, str]] = {
    # label: (role, email, country, languages, organisation, person)
    "speaker_fra": ("speaker", "speaker@assemblee.fr", "FRA", "fr", "Assemblée nationale", ""),
    "speaker_gbr": ("speaker", "speaker@parliament.uk", "GBR", "en", "House of Commons", ""),
    "group_deu": ("ipu_group", "ipu@bundestag.de", "DEU", "de", "Deutscher Bundestag", ""),
    "group_ken": ("ipu_group", "ipu@parliament.ke", "KEN", "es,fr", "Parliament of Kenya", ""),
    "amb_tur": ("ambassador", "embassy@tur.example", "TUR", "en", "Embassy", "H.E. Ambassador"),
    "media_grc": ("media", "desk@news.gr", "GRC", "en", "Daily News", "Editor"),
    "media_ken": ("media", "desk@nation.ke", "KEN", "en", "Nation", ""),
    "ngo": ("ngo", "info@rights.example", None, "en", "Rights Watchers", ""),
    "suppressed": ("speaker", "gone@parliament.example", "ITA", "en", "Camera", ""),
}


def seed(session: Session, *, visibility: str = "public") -> World:
    """A decision on TUR-69 (Türkiye) and KEN-12 (Kenya), documents in en and fr, contacts,
    and a confidential reporter of TUR-69 whose every field holds the canary."""
    cases = [
        Case(code="TUR-69", country="TUR", title=f"Mr. A. Example {INJECTION}", status="open"),
        Case(code="KEN-12", country="KEN", title="Ms. B. Example", status="open"),
    ]
    decision = Decision(
        session="213th session",
        adopted_on=date(2026, 10, 23),
        body="Governing Council",
        symbol="CL/213/11(b)-R.1",
        visibility=visibility,
        cases=cases,
    )
    session.add(decision)
    session.flush()
    for language, data in (("en", PDF_EN), ("fr", PDF_FR)):
        session.add(
            DecisionDocument(
                decision_id=decision.id,
                language=language,
                blob_sha256=_blob(session, data),
                media_type="application/pdf",
                filename=f"decision-{language}.pdf",
                official=True,
            )
        )
    contacts = {}
    for label, (role, email, country, languages, org, person) in CONTACTS.items():
        contact = Contact(
            role=role,
            email=email,
            country=country,
            languages=languages,
            organisation=org,
            person_name=person or None,
        )
        session.add(contact)
        session.flush()
        contacts[label] = contact.id
    session.add(Suppression(email="gone@parliament.example", reason="opt_out"))
    _canary_reporter(session, cases[0])
    session.flush()
    return World(decision.id, contacts)


def _canary_reporter(session: Session, case: Case) -> None:
    reporter = Reporter(
        name=f"{CANARY} name",
        email=f"{CANARY.lower()}@reporter.example",
        phone=f"+41 {CANARY}",
        language="en",
        identity_disclosable=False,
    )
    person = Person(name="A. Example", country="TUR")
    report = Report(
        reference=CANARY[:20], reporter=reporter, country="TUR", cases=[case], persons=[person]
    )
    session.add(report)


def action_report(session: Session, country: str, at: datetime, **links: Any) -> None:
    session.add(ActionReport(country=country, received_at=at, summary="we wrote", **links))


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    """Every text part, decoded (plain and HTML)."""
    parts = []
    for part in message.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            parts.append(part.get_content())
    return "\n".join(parts)


AUDIENCE = {
    "include": [
        {"roles": ["speaker", "ipu_group"], "countries": "members"},
        {"roles": ["ambassador"], "countries": "concerned"},
        {"roles": ["media"], "regions": "concerned"},
    ],
    "exclude": [{"countries": ["GBR"]}],
}
