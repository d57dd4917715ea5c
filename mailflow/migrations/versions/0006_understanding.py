"""What intake understands of a message: urgency, the classification with its reasons, the
thread key and how the message was linked; link suggestions for triage; an action report whose
parliament is not known yet.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LINK_METHODS = ("new", "duplicate", "reply", "case_code", "subject")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(
            sa.Column("urgent", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("classification", sa.Text(), nullable=True))
        batch.add_column(sa.Column("subject_key", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("linked_by", sa.String(length=16), nullable=True))
        batch.create_index(op.f("ix_messages_subject_key"), ["subject_key"])
        batch.create_check_constraint(
            op.f("ck_messages_linked_by"),
            "linked_by IN (" + ", ".join(f"'{m}'" for m in LINK_METHODS) + ")",
        )
    with op.batch_alter_table("action_reports") as batch:
        batch.alter_column("country", existing_type=sa.String(length=3), nullable=True)
    op.create_table(
        "link_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(report_id IS NOT NULL) <> (case_id IS NOT NULL)",
            name=op.f("ck_link_suggestions_one_target"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_link_suggestions_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_pk"],
            ["messages.id"],
            name=op.f("fk_link_suggestions_message_pk_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_link_suggestions_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_suggestions")),
        sa.UniqueConstraint(
            "message_pk",
            "report_id",
            "case_id",
            name=op.f("uq_link_suggestions_message_pk_report_id_case_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("link_suggestions")
    with op.batch_alter_table("action_reports") as batch:
        batch.alter_column("country", existing_type=sa.String(length=3), nullable=False)
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint(op.f("ck_messages_linked_by"), type_="check")
        batch.drop_index(op.f("ix_messages_subject_key"))
        batch.drop_column("linked_by")
        batch.drop_column("subject_key")
        batch.drop_column("classification")
        batch.drop_column("urgent")
