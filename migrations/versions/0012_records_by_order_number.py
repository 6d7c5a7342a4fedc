"""Records by order number alone: ix_records_order_number for the pages' search

The public search (DESIGN §9) finds a purchase order from its number alone,
without the buyer's RUC: a number is unique per buyer only, so it names one
order or a few at different buyers. No index began with order_number (the
identity index begins with ``<buyer RUC>/<order number>``), so the lookup
read every record. The index holds the number alone: every record written
updates every index of records, so each column here costs ingest, and one
number names a handful of records (its orders and their events), which the
search filters and sorts in memory.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 13:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_records_order_number",
        "records",
        ["order_number"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_records_order_number", table_name="records")
