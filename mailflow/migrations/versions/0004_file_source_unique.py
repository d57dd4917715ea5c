"""One arrival per (message, file path): concurrent backfills of the same files record it once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "uq_message_sources_file_path"
ONLY_FILES = sa.text("channel = 'file'")


def upgrade() -> None:
    op.create_index(
        NAME,
        "message_sources",
        ["message_pk", "path"],
        unique=True,
        sqlite_where=ONLY_FILES,
        postgresql_where=ONLY_FILES,
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="message_sources")
