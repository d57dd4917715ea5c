"""The sender's indexes cover only the rows still to send.

The claim query ("the oldest due rows, in id order, LIMIT n") used the index on (state,
next_attempt_at) and then sorted every waiting row, for every claim: quadratic in the size of
a campaign (12 ms a claim at 20,000 waiting rows on SQLite). Two partial indexes over the
`pending` and `sending` rows replace it: one in id order for the claim, which stops at its
LIMIT, and one on next_attempt_at for "when is the next row due".

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "state IN ('pending', 'sending')"  # as in models_outreach.ACTIVE_SQL, frozen here


def upgrade() -> None:
    op.drop_index("ix_deliveries_state_next_attempt_at", table_name="deliveries")
    for name, column in (
        ("ix_deliveries_claimable", "id"),
        ("ix_deliveries_due", "next_attempt_at"),
    ):
        op.create_index(
            name,
            "deliveries",
            [column],
            sqlite_where=sa.text(ACTIVE),
            postgresql_where=sa.text(ACTIVE),
        )


def downgrade() -> None:
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_index("ix_deliveries_claimable", table_name="deliveries")
    op.create_index(
        "ix_deliveries_state_next_attempt_at", "deliveries", ["state", "next_attempt_at"]
    )
