"""Files bound to records, by digest: record_documents (GET /v1/documents/{sha256})

An order's documents may carry the SHA-256 of their file, and order events
bind files by digest (``document`` events, and the documents of ``delivered``
and ``status`` events). Finding every record that binds one file needs an
index from digest to record: one narrow row per (digest, record), written
with the record. The upgrade fills it for the orders already recorded.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 08:30:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PURCHASE_ORDER = "ancla/purchase-order/1"


def upgrade() -> None:
    op.create_table(
        "record_documents",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column(
            "record_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            nullable=False,
            autoincrement=False,
        ),
        sa.PrimaryKeyConstraint("sha256", "record_id", name="pk_record_documents"),
    )
    bind = op.get_bind()
    # Only records whose bytes mention a digest at all are read.
    mentions = (
        "position('\"sha256\"'::bytea in canonical) > 0"
        if bind.dialect.name == "postgresql"
        else "instr(canonical, CAST('\"sha256\"' AS BLOB)) > 0"
    )
    rows = bind.execute(
        sa.text(
            f"SELECT id, canonical FROM records WHERE schema = :po AND {mentions}"  # noqa: S608
        ).bindparams(po=_PURCHASE_ORDER)
    )
    bound = []
    for record_id, canonical in rows:
        documents = json.loads(bytes(canonical))["purchase_order"].get("documents", [])
        digests = {d["sha256"] for d in documents if "sha256" in d}
        bound += [{"sha256": digest, "record_id": record_id} for digest in sorted(digests)]
    if bound:
        op.bulk_insert(
            sa.table("record_documents", sa.column("sha256"), sa.column("record_id")), bound
        )


def downgrade() -> None:
    op.drop_table("record_documents")
