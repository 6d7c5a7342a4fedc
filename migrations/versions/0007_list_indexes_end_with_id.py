"""The listing's indexes end with the record id: filtered pages in (issued_at, id) order

GET /v1/purchase-orders with a filter listed in id order, so PostgreSQL chose
between walking the primary key and testing every record against the filter,
or reading every match through the filter's index and sorting them. Either is
a scan of up to the whole ledger: at 1,000,000 records, two days of orders
took 405 ms, because the planner walked the primary key expecting matches
early and found them at its end (ids follow issue dates). A filtered list is
now in (issued_at, id) order, read along an index that holds exactly that
order after the filter's column: one index range per page, under a
millisecond at 1,000,000 records.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 14:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, columns before the change).
_INDEXES = (
    ("ix_records_buyer_issued", ["buyer_ruc", "issued_at"]),
    ("ix_records_supplier_issued", ["supplier_ruc", "issued_at"]),
    ("ix_records_issued", ["issued_at"]),
)


def upgrade() -> None:
    for name, columns in _INDEXES:
        op.drop_index(name, table_name="records")
        op.create_index(name, "records", [*columns, "id"])


def downgrade() -> None:
    for name, columns in _INDEXES:
        op.drop_index(name, table_name="records")
        op.create_index(name, "records", columns)
