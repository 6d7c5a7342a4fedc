"""Batch membership and proofs in their own table; a queue of pending records

Sealing a batch used to UPDATE every record of it (batch id, position and
proof), which rewrote each ~1.4 KB record and its index entries a second time:
on PostgreSQL 21 ms per 1,000 records against 4 ms to insert the same facts
into a narrow table, and on SQLite the same pages written twice to the WAL.
Records are now written once. `batch_entries` holds (record, batch, position,
proof), inserted at sealing; `pending_records` holds the ids of records in no
batch yet, inserted with the record and deleted at sealing. The existing rows
are moved over, then the three columns and their two indexes are dropped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 05:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


# SQLite alters `records` by copying it and dropping the old table, which its
# foreign keys refuse while another table's rows point at records. So the
# facts wait in a plain holding table (migration_0005_membership) while `records` is altered and the
# tables pointing at it do not exist.


def upgrade() -> None:
    op.execute(
        "CREATE TABLE migration_0005_membership AS "
        "SELECT id, batch_id, batch_position, proof FROM records"
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_records_pending",
            sqlite_where=sa.text("batch_id IS NULL"),
            postgresql_where=sa.text("batch_id IS NULL"),
        )
        batch_op.drop_index("ix_records_batch")
        batch_op.drop_constraint("fk_records_batch_id_batches", type_="foreignkey")
        batch_op.drop_column("proof")
        batch_op.drop_column("batch_position")
        batch_op.drop_column("batch_id")
    op.create_table(
        "pending_records",
        sa.Column("record_id", BigIntId, autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_pending_records_record_id_records")
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_pending_records")),
    )
    op.create_table(
        "batch_entries",
        sa.Column("record_id", BigIntId, autoincrement=False, nullable=False),
        sa.Column("batch_id", BigIntId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("proof", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_batch_entries_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_batch_entries_record_id_records")
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_batch_entries")),
        sa.UniqueConstraint(
            "batch_id", "position", name=op.f("uq_batch_entries_batch_id_position")
        ),
    )
    op.execute(
        "INSERT INTO batch_entries (record_id, batch_id, position, proof) "
        "SELECT id, batch_id, batch_position, proof FROM migration_0005_membership "
        "WHERE batch_id IS NOT NULL ORDER BY id"
    )
    op.execute(
        "INSERT INTO pending_records (record_id) "
        "SELECT id FROM migration_0005_membership WHERE batch_id IS NULL ORDER BY id"
    )
    op.drop_table("migration_0005_membership")


def downgrade() -> None:
    op.execute(
        "CREATE TABLE migration_0005_membership AS "
        "SELECT record_id AS id, batch_id, position AS batch_position, proof FROM batch_entries"
    )
    op.drop_table("batch_entries")
    op.drop_table("pending_records")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", BigIntId, nullable=True))
        batch_op.add_column(sa.Column("batch_position", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("proof", sa.LargeBinary(), nullable=True))
        batch_op.create_foreign_key("fk_records_batch_id_batches", "batches", ["batch_id"], ["id"])
        batch_op.create_index("ix_records_batch", ["batch_id", "batch_position"], unique=False)
        batch_op.create_index(
            "ix_records_pending",
            ["id"],
            unique=False,
            sqlite_where=sa.text("batch_id IS NULL"),
            postgresql_where=sa.text("batch_id IS NULL"),
        )
    op.execute(
        "UPDATE records SET batch_id = h.batch_id, batch_position = h.batch_position, "
        "proof = h.proof FROM migration_0005_membership AS h WHERE h.id = records.id"
    )
    op.drop_table("migration_0005_membership")
