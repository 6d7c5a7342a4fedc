"""Records of any schema: an identity column, query columns optional

The records table was shaped for one schema: every purchase-order column was
NOT NULL, and the only uniqueness besides the hash was a partial index on
(buyer_ruc, order_number) for purchase orders. Each schema now says what
identifies one of its records (app.records.registry): ``identity`` holds it
(a purchase order's is ``<buyer RUC>/<order number>``), and one unique index
on (schema, identity) refuses a second record of the same identity for every
schema alike. The query columns a schema does not use stay NULL.

The upgrade fills ``identity`` for the purchase orders already recorded
(``ancla verify`` checks it against the bytes like every query column). On
SQLite, making columns nullable copies the table (as 0008 did: about 10 s
per 300,000 records); PostgreSQL only drops the NOT NULL constraints, and
builds the new index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PURCHASE_ORDER = "ancla/purchase-order/1"

# The columns only some schemas fill, with their types as migrations 0001-0004 made them.
_QUERY_COLUMNS = (
    ("buyer_ruc", sa.String(11)),
    ("order_number", sa.String(64)),
    ("supplier_ruc", sa.String(11)),
    ("supplier_name", sa.String(500)),
    ("buyer_name", sa.String(500)),
    ("issued_at", sa.DateTime(timezone=True)),
    ("currency", sa.String(3)),
)


def _total_type() -> sa.types.TypeEngine[object]:
    # 0004: decimal text on SQLite, NUMERIC(20, 2) on PostgreSQL.
    if op.get_bind().dialect.name == "sqlite":
        return sa.String(40)
    return sa.Numeric(20, 2)


def _alter(batch_op: BatchOperations, *, nullable: bool) -> None:
    for name, type_ in (*_QUERY_COLUMNS, ("total", _total_type())):
        batch_op.alter_column(name, existing_type=type_, nullable=nullable)


# SQLite copies the table in batch mode, with its indexes as reflected: the
# partial unique indexes are dropped before and made after, so none is ever
# copied without its WHERE clause.


def upgrade() -> None:
    op.drop_index("uq_records_purchase_order", table_name="records")
    with op.batch_alter_table("records") as batch_op:
        batch_op.add_column(sa.Column("identity", sa.String(200), nullable=True))
        _alter(batch_op, nullable=True)
    op.execute(
        sa.text(
            "UPDATE records SET identity = buyer_ruc || '/' || order_number WHERE schema = :po"
        ).bindparams(po=_PURCHASE_ORDER)
    )
    op.create_index(
        "uq_records_identity",
        "records",
        # Identity first: a lookup names many identities of one schema at once.
        ["identity", "schema"],
        unique=True,
        sqlite_where=sa.text("identity IS NOT NULL"),
        postgresql_where=sa.text("identity IS NOT NULL"),
    )


def downgrade() -> None:
    # Only purchase orders fit the old table: a record of another schema
    # would break its NOT NULL columns, so the downgrade refuses to run.
    others = (
        op.get_bind()
        .execute(
            sa.text("SELECT count(*) FROM records WHERE schema <> :po").bindparams(
                po=_PURCHASE_ORDER
            )
        )
        .scalar_one()
    )
    if others:
        raise RuntimeError(
            f"{others} records are of schemas other than {_PURCHASE_ORDER}; "
            "the schema before 0009 cannot hold them"
        )
    op.drop_index("uq_records_identity", table_name="records")
    with op.batch_alter_table("records") as batch_op:
        _alter(batch_op, nullable=False)
        batch_op.drop_column("identity")
    op.create_index(
        "uq_records_purchase_order",
        "records",
        ["buyer_ruc", "order_number"],
        unique=True,
        sqlite_where=sa.text(f"schema = '{_PURCHASE_ORDER}'"),
        postgresql_where=sa.text(f"schema = '{_PURCHASE_ORDER}'"),
    )
