"""Campaigns keep their subjects and when they were sent; deliveries get reminder rounds.

The ledger's unique (campaign_id, contact_id) allowed one message per contact and campaign, so
a reminder could not be recorded. It becomes unique (campaign_id, contact_id, purpose, round):
the mailing is round 0, the n-th reminder round n, and re-running `campaign send` still cannot
queue a contact twice. `unsubscribe_token` names the delivery in List-Unsubscribe.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("subjects", sa.Text(), server_default="{}", nullable=False))
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    # Batch mode: SQLite changes constraints by rebuilding the table (env.py turns batch on).
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("round", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("unsubscribe_token", sa.String(length=64), nullable=True))
        batch.drop_constraint(op.f("uq_deliveries_campaign_id_contact_id"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_deliveries_campaign_id_contact_id_purpose_round"),
            ["campaign_id", "contact_id", "purpose", "round"],
        )
        batch.create_unique_constraint(
            op.f("uq_deliveries_unsubscribe_token"), ["unsubscribe_token"]
        )


def downgrade() -> None:
    # Fails (IntegrityError) if reminders were recorded: dropping them silently would lose the
    # ledger of what was sent. Delete the reminder rows by hand first, if that is really meant.
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint(op.f("uq_deliveries_unsubscribe_token"), type_="unique")
        batch.drop_constraint(
            op.f("uq_deliveries_campaign_id_contact_id_purpose_round"), type_="unique"
        )
        batch.create_unique_constraint(
            op.f("uq_deliveries_campaign_id_contact_id"), ["campaign_id", "contact_id"]
        )
        batch.drop_column("unsubscribe_token")
        batch.drop_column("round")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("sent_at")
        batch.drop_column("subjects")
