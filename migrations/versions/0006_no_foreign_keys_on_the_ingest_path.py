"""No foreign keys on the tables every record writes: records, the queue, batch entries

PostgreSQL checks a foreign key with a trigger per inserted row that looks the
referenced row up and locks it (FOR KEY SHARE). Each record written made four
such checks: its agency, its queue row's record, and its batch entry's record
and batch. Measured on binary COPY of 1,000-row groups: 5.5 us of server CPU
per check, 22 us per record, about a third of what PostgreSQL spent per
record in bulk ingest.

What they guarded is kept by other means. The ledger is insert-only: records,
batches and agencies are never deleted by Ancla, and a queue row or batch
entry is written in the same transaction as the row it names (ids drawn from
the sequence, the batch inserted first). A row deleted or changed outside
Ancla is what `ancla verify` exists to find: a record missing from its batch
is `missing_record`, and an entry, queue row or record naming a batch, record
or agency that does not exist is `dangling_reference`. The sealer refuses a
queue row whose record is gone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 08:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, constraint, column, referred table). SQLite alters a table by
# copying it and dropping the original, which its foreign keys refuse while
# another table points at it: the tables pointing at records come first.
_FOREIGN_KEYS = (
    ("batch_entries", "fk_batch_entries_record_id_records", "record_id", "records"),
    ("batch_entries", "fk_batch_entries_batch_id_batches", "batch_id", "batches"),
    ("pending_records", "fk_pending_records_record_id_records", "record_id", "records"),
    ("records", "fk_records_agency_id_agencies", "agency_id", "agencies"),
)


def upgrade() -> None:
    for table in ("batch_entries", "pending_records", "records"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for owner, name, _, _ in _FOREIGN_KEYS:
                if owner == table:
                    batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table in ("records", "pending_records", "batch_entries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for owner, name, column, referred in _FOREIGN_KEYS:
                if owner == table:
                    batch_op.create_foreign_key(name, referred, [column], ["id"])
