"""Intake: raw bytes, received messages, where each arrival came from, IMAP progress."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sql_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailflow.store.models_base import Base, check_in
from mailflow.store.types import utcnow

if TYPE_CHECKING:
    from mailflow.store.models_cases import ActionReport, Report

MESSAGE_STATUSES = ("received", "processed", "quarantined")
CHANNELS = ("imap", "smtp", "lmtp", "file")
LINK_METHODS = ("new", "duplicate", "reply", "case_code", "subject")


class Blob(Base):
    """Content-addressed bytes (raw messages, attachments, decision documents), kept once."""

    __tablename__ = "blobs"
    __table_args__ = (CheckConstraint("size >= 0", name="size"),)

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)  # lower-case hex
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Message(Base):
    """One received e-mail: the same bytes received again update this row, never a new one.

    `message_id` is the Message-ID header; it is not unique, because a different message may
    reuse one (the `duplicate_of_id` link records what intake concluded).
    """

    __tablename__ = "messages"
    __table_args__ = (
        check_in("status", MESSAGE_STATUSES),
        CheckConstraint("times_received >= 1", name="times_received"),
        check_in("linked_by", LINK_METHODS),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    subject: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str | None] = mapped_column(Text)
    date: Mapped[datetime | None]
    kind: Mapped[str | None] = mapped_column(ForeignKey("message_kinds.code"), index=True)
    language: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="received", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    first_received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    times_received: Mapped[int] = mapped_column(default=1)
    processed_at: Mapped[datetime | None]
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"), index=True)
    action_report_id: Mapped[int | None] = mapped_column(
        ForeignKey("action_reports.id"), index=True
    )
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    # A bounce or reply to one of our deliveries. deliveries.in_reply_to_message_pk points
    # back here, so one side of the cycle is added after both tables exist (use_alter).
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", use_alter=True), index=True
    )
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    urgent: Mapped[bool] = mapped_column(default=False, server_default=sql_false())
    # The label fields and the rules that fired (JSON), as `mailflow explain` shows them.
    classification: Mapped[str | None] = mapped_column(Text)
    # The subject without Re:/Fwd:/TR:... prefixes, casefolded: how a follow-up without
    # In-Reply-To finds its thread (with the same correspondent).
    subject_key: Mapped[str | None] = mapped_column(String(255), index=True)
    # How the message was attached to its record: LINK_METHODS.
    linked_by: Mapped[str | None] = mapped_column(String(16))

    blob: Mapped[Blob] = relationship()
    sources: Mapped[list[MessageSource]] = relationship(
        back_populates="message", order_by="MessageSource.id"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.position"
    )
    report: Mapped[Report | None] = relationship()
    action_report: Mapped[ActionReport | None] = relationship()
    duplicate_of: Mapped[Message | None] = relationship(remote_side="Message.id")


class MessageSource(Base):
    """One arrival of a message: which channel, mailbox and UID, or which SMTP session.

    The IMAP identity (account, mailbox, uidvalidity, uid) is unique, so a re-poll of the same
    UID can never record a second arrival; the CHECK makes sure IMAP rows fill all four parts
    (NULLs would slip past the unique constraint).
    """

    __tablename__ = "message_sources"
    __table_args__ = (
        UniqueConstraint("account", "mailbox", "uidvalidity", "uid"),
        check_in("channel", CHANNELS),
        CheckConstraint(
            "channel <> 'imap' OR (account IS NOT NULL AND mailbox IS NOT NULL"
            " AND uidvalidity IS NOT NULL AND uid IS NOT NULL)",
            name="imap_uid",
        ),
        # A file ingested twice at once (two `mailflow ingest` runs) records one arrival.
        Index(
            "uq_message_sources_file_path",
            "message_pk",
            "path",
            unique=True,
            sqlite_where=text("channel = 'file'"),
            postgresql_where=text("channel = 'file'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    account: Mapped[str | None] = mapped_column(String(255))
    mailbox: Mapped[str | None] = mapped_column(String(255))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    smtp_session: Mapped[str | None] = mapped_column(String(64))
    smtp_peer: Mapped[str | None] = mapped_column(String(255))
    envelope_from: Mapped[str | None] = mapped_column(Text)
    envelope_to: Mapped[str | None] = mapped_column(Text)  # JSON array of addresses
    path: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    message: Mapped[Message] = relationship(back_populates="sources")


class ImapCheckpoint(Base):
    """How far the poller got in one IMAP folder: resume after `last_uid` while UIDVALIDITY
    holds. A row can exist before any success, to record the last error."""

    __tablename__ = "imap_checkpoints"

    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    folder: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    # Messages on the server above `last_uid` when the last pass started or stopped: what is
    # still to fetch. `None` until a pass has looked.
    backlog: Mapped[int | None] = mapped_column(BigInteger)


class Attachment(Base):
    """A MIME part of a message kept as a file; its bytes are in `blobs`."""

    __tablename__ = "attachments"
    __table_args__ = (
        UniqueConstraint("message_pk", "position"),
        CheckConstraint("size >= 0", name="size"),
        Index(None, "blob_sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    position: Mapped[int]  # order among the message's attachments, from 0
    filename: Mapped[str | None] = mapped_column(Text)  # sanitised: no path, no control chars
    declared_type: Mapped[str | None] = mapped_column(String(255))
    sniffed_type: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    disposition: Mapped[str | None] = mapped_column(String(32))

    message: Mapped[Message] = relationship(back_populates="attachments")
    blob: Mapped[Blob] = relationship()
