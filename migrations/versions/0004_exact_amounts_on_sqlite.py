"""records.total: exact decimal text on SQLite (was a REAL there)

SQLite stored NUMERIC amounts as REAL, so totals of more than ~15 significant
digits came back changed. The column becomes text on SQLite and every total is
derived again from the record's canonical bytes (the source of truth), which
also repairs the values already rounded. PostgreSQL's NUMERIC was exact: no
change there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 17:20:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.alter_column(
            "total", existing_type=sa.Numeric(20, 2), type_=sa.String(40), existing_nullable=False
        )
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, canonical FROM records")).all()
    updates = []
    for record_id, canonical in rows:
        order = json.loads(bytes(canonical)).get("purchase_order") or {}
        if "total" not in order:  # not a purchase order: nothing derived to repair
            continue
        total = Decimal(order["total"])
        updates.append({"id": record_id, "total": format(total.quantize(Decimal("0.01")), "f")})
    if updates:
        connection.execute(sa.text("UPDATE records SET total = :total WHERE id = :id"), updates)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.alter_column(
            "total", existing_type=sa.String(40), type_=sa.Numeric(20, 2), existing_nullable=False
        )
