"""records: source column; agency optional for imported records

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=200), nullable=False, server_default="api")
        )
        batch_op.alter_column("agency_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.alter_column("agency_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("source")
