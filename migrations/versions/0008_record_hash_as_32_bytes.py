"""Record hashes stored as their 32 bytes, not as 66 characters of text

The unique index on records.hash takes random keys, so every record written
dirties a leaf page of it that no neighbour shares; it was the costliest
index on both databases (PostgreSQL: 4 of 14.7 µs of server CPU per record
stored). Its keys are now half as wide: fewer pages to write, to copy back
from SQLite's WAL and to keep in cache. The API and the code keep the text
form, ``0x`` + 64 lowercase hex digits; the column type (app.models.Hash32)
converts at the boundary, and the downgrade writes the same text back.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 17:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE records ALTER COLUMN hash TYPE bytea USING decode(substr(hash, 3), 'hex')"
        )
        return
    # SQLite before 3.41 has no unhex(): a function of this connection's. A
    # column of any declared type holds a BLOB as it is, so the values are
    # converted first and the table copied with its new type after.
    bind.connection.driver_connection.create_function("ancla_unhex", 1, _unhex, deterministic=True)
    op.execute("UPDATE records SET hash = ancla_unhex(hash)")
    with op.batch_alter_table("records") as batch_op:
        batch_op.alter_column(
            "hash", type_=sa.LargeBinary(32), existing_type=sa.String(66), existing_nullable=False
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE records ALTER COLUMN hash TYPE varchar(66)"
            " USING '0x' || encode(hash, 'hex')"
        )
        return
    op.execute("UPDATE records SET hash = '0x' || lower(hex(hash))")
    with op.batch_alter_table("records") as batch_op:
        batch_op.alter_column(
            "hash", type_=sa.String(66), existing_type=sa.LargeBinary(32), existing_nullable=False
        )
