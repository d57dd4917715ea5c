"""Outreach: contacts, suppressions, campaigns and the per-recipient delivery ledger."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from mailflow.store.models_base import Base, check_in
from mailflow.store.types import utcnow

SUPPRESSION_REASONS = ("opt_out", "hard_bounce", "manual")
CAMPAIGN_STATUSES = ("draft", "approved", "sending", "paused", "done", "cancelled")
DELIVERY_STATES = ("pending", "sending", "sent", "deferred", "failed", "bounced", "suppressed")


def normalise_email(address: str) -> str:
    """The form addresses are stored and compared in: trimmed, lower-cased."""
    return address.strip().lower()


class Contact(Base):
    """Someone campaigns are sent to: a Speaker, an IPU group, a committee, an MP..."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation: Mapped[str | None] = mapped_column(String(255))
    person_name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(ForeignKey("recipient_roles.code"), index=True)
    country: Mapped[str | None] = mapped_column(String(3), index=True)
    # Comma-separated ISO 639-1 codes, preferred first ("fr,en").
    languages: Mapped[str] = mapped_column(String(64), default="en")
    email: Mapped[str] = mapped_column(String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @validates("email")
    def _normalise_email(self, _key: str, address: str) -> str:
        return normalise_email(address)


class Suppression(Base):
    """An address never to mail again (opt-out, hard bounce, or a manual block)."""

    __tablename__ = "suppressions"
    __table_args__ = (check_in("reason", SUPPRESSION_REASONS),)

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[str | None] = mapped_column(Text)

    @validates("email")
    def _normalise_email(self, _key: str, address: str) -> str:
        return normalise_email(address)


class Campaign(Base):
    """A mailing of a decision (or other template set) to an audience of contacts.

    The CHECKs make approval all-or-nothing and keep an unapproved campaign from leaving the
    draft state: `approved_digest` hashes the content at approval, so an edit that resets it
    also stops the sending.
    """

    __tablename__ = "campaigns"
    __table_args__ = (
        check_in("status", CAMPAIGN_STATUSES),
        CheckConstraint(
            "(approved_by IS NULL AND approved_at IS NULL AND approved_digest IS NULL)"
            " OR (approved_by IS NOT NULL AND approved_at IS NOT NULL"
            " AND approved_digest IS NOT NULL)",
            name="approval",
        ),
        CheckConstraint(
            "status IN ('draft', 'cancelled') OR approved_digest IS NOT NULL",
            name="approved_before_sending",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(64))  # template set name
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"), index=True)
    audience: Mapped[str] = mapped_column(Text, default="{}")  # JSON selection of contacts
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(255))
    approved_at: Mapped[datetime | None]
    approved_digest: Mapped[str | None] = mapped_column(String(64))
    # The subject per language, as JSON ({"en": "...", "fr": "..."}); part of the approved content.
    subjects: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    # When `campaign send` first queued the mailing: reminders count from here, and only action
    # reports received after it answer the campaign.
    sent_at: Mapped[datetime | None]

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="campaign")


# The states of a row still to be sent, as SQL text: partial indexes are only used by queries
# that spell their condition with the same literals (ledger.claimable), not bound parameters.
ACTIVE_SQL = "state IN ('pending', 'sending')"


class Delivery(Base):
    """One outbound message to one recipient: a campaign mailing or an acknowledgement.

    The ledger that makes sending idempotent: one row per (campaign, contact, purpose, round):
    the mailing itself is round 0, reminders rounds 1, 2, ...; `verp_token` and `reply_token`
    tie bounces and replies back to the row, `unsubscribe_token` an opt-out.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id", "purpose", "round"),
        check_in("state", DELIVERY_STATES),
        CheckConstraint("attempts >= 0", name="attempts"),
        # The sender's queries read only the rows still to send, however long the ledger of
        # sent ones grows: partial indexes over `pending` and `sending` rows (ACTIVE_SQL).
        # The claim walks the first in id order and stops at its LIMIT; without it, SQLite
        # sorted every waiting row for each claim (12 ms a claim at 20,000 waiting rows).
        Index(
            "ix_deliveries_claimable",
            "id",
            sqlite_where=text(ACTIVE_SQL),
            postgresql_where=text(ACTIVE_SQL),
        ),
        Index(  # when the next row falls due
            "ix_deliveries_due",
            "next_attempt_at",
            sqlite_where=text(ACTIVE_SQL),
            postgresql_where=text(ACTIVE_SQL),
        ),
        Index(None, "to_address"),  # one acknowledgement per sender per window; bounces
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    # The received message this answers, e.g. the report an acknowledgement is for.
    in_reply_to_message_pk: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(8))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)  # the one we set
    verp_token: Mapped[str] = mapped_column(String(64), unique=True)
    reply_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    smtp_response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None]
    # The rendered message exactly as sent (content-addressed in blobs), written with the row
    # so that a retry or a crash recovery sends the same bytes. Nullable: rows older than 0005.
    body_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    # 0 for a campaign's mailing (and everything else), n for its n-th reminder to a contact.
    round: Mapped[int] = mapped_column(default=0, server_default="0")
    # Names this delivery in List-Unsubscribe and the body's opt-out link (bulk audiences).
    unsubscribe_token: Mapped[str | None] = mapped_column(String(64), unique=True)

    campaign: Mapped[Campaign | None] = relationship(back_populates="deliveries")
