"""Helpers for the delivery tests at scale: settings for a relay, campaigns made with the ORM."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import OutboundMessage, enqueue
from mailflow.settings import DatabaseSettings, OutboundSettings, ServiceSettings, Settings
from mailflow.store.models import Campaign, Contact, Delivery
from tests.servers.smtp_sink import SMTPSink

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FROM = "committee@example.org"
BOUNCES = "bounces.example.org"
TEXT = "The Committee adopted the decision below at its session.\n" * 40


class Clock:
    """A clock the test moves by hand: rate limits and retries are checked by value."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def relay_settings(tmp_path: Path, db_url: str, sink: SMTPSink, **outbound: Any) -> Settings:
    values: dict[str, Any] = {
        "from_address": FROM,
        "bounce_domain": BOUNCES,
        "relay_host": sink.host,
        "relay_port": sink.port,
        "relay_security": "none",
        **outbound,
    }
    return Settings(
        service=ServiceSettings(data_dir=tmp_path / "data"),
        database=DatabaseSettings(url=db_url),
        outbound=OutboundSettings(**values),
    )


def address(n: int, domains: int = 20) -> str:
    return f"mp{n}@parliament{n % domains}.example"


def make_campaign(
    sessions: sessionmaker[Session],
    addresses: list[str],
    *,
    name: str = "decision",
    now: datetime = T0,
) -> int:
    """An approved campaign with a contact (new or existing) and a ledger row per address."""
    with sessions.begin() as session:
        campaign = Campaign(
            name=name,
            purpose="decision",
            status="sending",
            created_by="secretariat",
            approved_by="the chair",
            approved_at=now,
            approved_digest="0" * 64,
        )
        session.add(campaign)
        known = {c.email: c for c in session.scalars(select(Contact))}
        contacts = [known.get(a) or Contact(role="speaker", email=a) for a in addresses]
        session.add_all(contacts)
        session.flush()
        for contact in contacts:
            enqueue(
                session,
                decision_for(contact.email),
                now=now,
                campaign_id=campaign.id,
                contact_id=contact.id,
            )
        return campaign.id


def decision_for(to: str) -> OutboundMessage:
    return OutboundMessage(
        purpose="decision",
        to_address=to,
        from_address=FROM,
        from_name="The Committee",
        subject="Decision of the Committee",
        text=TEXT,
    )


def states(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(select(Delivery.state, func.count()).group_by(Delivery.state))
        return {state: count for state, count in rows}


def received_by_recipient(sink: SMTPSink) -> Counter[str]:
    return Counter(rcpt for message in sink.messages for rcpt in message.rcpt_tos)
