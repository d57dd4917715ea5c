"""Deliveries keep the rendered message (content-addressed in blobs) and are found by address.

`body_sha256` lets the delivery worker send, and resend after a crash, exactly the bytes that
were rendered when the message was queued. The index on `to_address` serves "when was this
sender last acknowledged" and tying bounces back to their recipient.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: on SQLite the foreign key needs a table rebuild (env.py turns batch on).
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            op.f("fk_deliveries_body_sha256_blobs"), "blobs", ["body_sha256"], ["sha256"]
        )
        batch.create_index(op.f("ix_deliveries_body_sha256"), ["body_sha256"], unique=False)
        batch.create_index(op.f("ix_deliveries_to_address"), ["to_address"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index(op.f("ix_deliveries_to_address"))
        batch.drop_index(op.f("ix_deliveries_body_sha256"))
        batch.drop_constraint(op.f("fk_deliveries_body_sha256_blobs"), type_="foreignkey")
        batch.drop_column("body_sha256")
