"""Records by order number alone: ix_records_order_number for the pages' search

The public search (DESIGN §9) finds a purchase order from its number alone,
without the buyer's RUC: a number is unique per buyer only, so it names one
order or a few at different buyers. No index began with order_number (the
identity index begins with ``<buyer RUC>/<order number>``), so the lookup
read every record. The new index holds the number and the schema (an order's
events carry its number too), then the list's (issued_at, id) order: the
search reads one index range, newest issued first.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:00:00
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
        ["order_number", "schema", "issued_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_records_order_number", table_name="records")
