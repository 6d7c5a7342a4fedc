"""An independent monitor's own tables: monitor_state, monitor_batches, monitor_findings

`ancla monitor` keeps its mirror of a service in an Ancla database of its own
(the records, batches and batch entries it verified against the chain, in the
ledger's own tables, so `ancla export` reads a mirror as it reads a service's
database) and its progress and findings in these three tables: what it watches
and how far it read the chain (one row), each batch anchored on chain with the
monitor's verdict on it, and each finding once per kind and subject. A
service's database leaves them empty.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "monitor_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("genesis_hash", sa.String(66), nullable=False),
        sa.Column("contract", sa.String(42), nullable=False),
        sa.Column("api_url", sa.String(500), nullable=False),
        sa.Column("from_block", sa.BigInteger(), nullable=False),
        sa.Column("scanned_to", sa.BigInteger(), nullable=True),
        sa.Column("last_batch_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_state")),
    )
    op.create_table(
        "monitor_batches",
        sa.Column("batch_id", BigIntId, autoincrement=False, nullable=False),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("leaf_count", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_monitor_batches")),
    )
    op.create_index(op.f("ix_monitor_batches_status"), "monitor_batches", ["status"], unique=False)
    op.create_table(
        "monitor_findings",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("record_hash", sa.String(66), nullable=True),
        sa.Column("order_ref", sa.String(200), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_findings")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_monitor_findings_fingerprint")),
    )
    op.create_index(op.f("ix_monitor_findings_kind"), "monitor_findings", ["kind"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_monitor_findings_kind"), table_name="monitor_findings")
    op.drop_table("monitor_findings")
    op.drop_index(op.f("ix_monitor_batches_status"), table_name="monitor_batches")
    op.drop_table("monitor_batches")
    op.drop_table("monitor_state")
