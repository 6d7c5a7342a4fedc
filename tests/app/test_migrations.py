"""Migration 0005 moves batch membership and proofs out of `records` without
losing any, and its downgrade puts them back."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from app.cli import alembic_config, upgrade_database
from app.db import normalise_url

pytestmark = pytest.mark.db

PROOF_0, PROOF_1 = bytes(range(32)), bytes(range(32, 64))


def _insert_0004_ledger(connection: Any) -> list[int]:
    """Two records in batch 1 (positions 0 and 1) and one pending, as 0004 stored them."""
    connection.execute(
        text(
            "INSERT INTO batches (id, status, size, root, sealed_at, fee_bumps, reanchor_count)"
            " VALUES (1, 'sealed', 2, :root, '2026-01-31 15:00:00', 0, 0)"
        ),
        {"root": "0x" + "ab" * 32},
    )
    ids = []
    for n, (batch_id, position, proof) in enumerate(
        [(1, 1, PROOF_1), (1, 0, PROOF_0), (None, None, None)]
    ):
        connection.execute(
            text(
                "INSERT INTO records (hash, canonical, schema, buyer_ruc, order_number,"
                " supplier_ruc, supplier_name, buyer_name, issued_at, currency, total, source,"
                " accepted_at, batch_id, batch_position, proof) VALUES (:hash, :canonical,"
                " 'ancla/purchase-order/1', '20600027426', :number, '20100070970', 'S', 'B',"
                " '2026-01-31 14:57:50', 'PEN', '1.00', 'api', '2026-01-31 15:00:00',"
                " :batch_id, :position, :proof)"
            ),
            {
                "hash": f"0x{n:064x}",
                "canonical": b"{}",
                "number": f"N-{n}",
                "batch_id": batch_id,
                "position": position,
                "proof": proof,
            },
        )
        ids.append(connection.execute(text("SELECT max(id) FROM records")).scalar_one())
    return ids


def test_0005_moves_batch_membership_and_the_queue_and_its_downgrade_restores_them(
    database_url: str,
) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "0004")
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.begin() as connection:
            first, second, pending = _insert_0004_ledger(connection)
        upgrade_database(database_url)
        with engine.connect() as connection:
            entries = connection.execute(
                text(
                    "SELECT record_id, batch_id, position, proof FROM batch_entries"
                    " ORDER BY position"
                )
            ).all()
            queued = connection.execute(text("SELECT record_id FROM pending_records")).all()
            columns = {c["name"] for c in inspect(connection).get_columns("records")}
        assert [(r, b, p, bytes(proof)) for r, b, p, proof in entries] == [
            (second, 1, 0, PROOF_0),
            (first, 1, 1, PROOF_1),
        ]
        assert [r for (r,) in queued] == [pending]
        assert not {"batch_id", "batch_position", "proof"} & columns

        command.downgrade(config, "0004")
        with engine.connect() as connection:
            restored = connection.execute(
                text("SELECT id, batch_id, batch_position, proof FROM records ORDER BY id")
            ).all()
            tables = set(inspect(connection).get_table_names())
        assert [
            (i, b, p, None if proof is None else bytes(proof)) for i, b, p, proof in restored
        ] == [
            (first, 1, 1, PROOF_1),
            (second, 1, 0, PROOF_0),
            (pending, None, None, None),
        ]
        assert not {"batch_entries", "pending_records"} & tables
    finally:
        engine.dispose()
