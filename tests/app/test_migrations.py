"""Migrations: 0005 moves batch membership and proofs out of `records` without
losing any, 0006 drops the ingest path's foreign keys, 0007 ends the listing's
indexes with the record id, 0008 stores record hashes as 32 bytes, 0012 indexes
records by order number, each downgrade puts back what it changed, and the migrated
schema is the models' schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Inspector, create_engine, inspect, select, text
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.orm import Session

from app.cli import alembic_config, upgrade_database
from app.db import normalise_url
from app.models import Base, Hash32, Record

pytestmark = pytest.mark.db

_T = TypeVar("_T")
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


def _inspected(database_url: str, read: Callable[[Inspector], _T]) -> _T:
    # A new engine each time: a pooled SQLite connection kept reading its
    # cached schema after the migration rebuilt the table.
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            return read(inspect(connection))
    finally:
        engine.dispose()


def _foreign_keys(database_url: str) -> set[tuple[str, str, str]]:
    return _inspected(
        database_url,
        lambda inspector: {
            (table, fk["constrained_columns"][0], fk["referred_table"])
            for table in ("records", "pending_records", "batch_entries")
            for fk in inspector.get_foreign_keys(table)
        },
    )


def test_0006_drops_the_ingest_paths_foreign_keys_and_its_downgrade_restores_them(
    database_url: str,
) -> None:
    assert _foreign_keys(database_url) == set()
    command.downgrade(alembic_config(database_url), "0005")
    assert _foreign_keys(database_url) == {
        ("records", "agency_id", "agencies"),
        ("pending_records", "record_id", "records"),
        ("batch_entries", "record_id", "records"),
        ("batch_entries", "batch_id", "batches"),
    }
    upgrade_database(database_url)
    assert _foreign_keys(database_url) == set()


def _listing_indexes(database_url: str) -> dict[str, list[str]]:
    return _inspected(
        database_url,
        lambda inspector: {
            str(index["name"]): list(index["column_names"])
            for index in inspector.get_indexes("records")
            if str(index["name"]).endswith("issued")
        },
    )


def test_0007_ends_the_listing_indexes_with_the_id_and_its_downgrade_restores_them(
    database_url: str,
) -> None:
    after = {
        "ix_records_buyer_issued": ["buyer_ruc", "issued_at", "id"],
        "ix_records_supplier_issued": ["supplier_ruc", "issued_at", "id"],
        "ix_records_issued": ["issued_at", "id"],
    }
    assert _listing_indexes(database_url) == after
    command.downgrade(alembic_config(database_url), "0006")
    assert _listing_indexes(database_url) == {name: columns[:-1] for name, columns in after.items()}
    upgrade_database(database_url)
    assert _listing_indexes(database_url) == after


def test_0008_stores_record_hashes_as_32_bytes_and_its_downgrade_writes_the_text_back(
    database_url: str,
) -> None:
    command.downgrade(alembic_config(database_url), "0007")
    hashes = [f"0x{n:064x}" for n in (1, 2)] + ["0x" + "ab" * 32]
    engine = create_engine(normalise_url(database_url))
    stored = text("SELECT hash FROM records ORDER BY id")
    try:
        with engine.begin() as connection:
            for n, record_hash in enumerate(hashes):
                connection.execute(
                    text(
                        "INSERT INTO records (hash, canonical, schema, buyer_ruc, order_number,"
                        " supplier_ruc, supplier_name, buyer_name, issued_at, currency, total,"
                        " source, accepted_at) VALUES (:hash, :canonical,"
                        " 'ancla/purchase-order/1', '20600027426', :number, '20100070970', 'S',"
                        " 'B', '2026-01-31 14:57:50', 'PEN', '1.00', 'api', '2026-01-31 15:00:00')"
                    ),
                    {"hash": record_hash, "canonical": b"{}", "number": f"N-{n}"},
                )
        upgrade_database(database_url)
        with engine.connect() as connection:
            assert [bytes(value) for value in connection.execute(stored).scalars()] == [
                bytes.fromhex(record_hash[2:]) for record_hash in hashes
            ]
        with Session(engine) as session:
            assert list(session.scalars(select(Record.hash).order_by(Record.id))) == hashes
            assert session.scalar(select(Record.order_number).where(Record.hash == hashes[2])) == (
                "N-2"
            )
        command.downgrade(alembic_config(database_url), "0007")
        with engine.connect() as connection:
            assert list(connection.execute(stored).scalars()) == hashes
        upgrade_database(database_url)
    finally:
        engine.dispose()


def test_0012_indexes_records_by_order_number_and_its_downgrade_drops_it(
    database_url: str,
) -> None:
    def by_number(inspector: Inspector) -> list[list[str]]:
        return [
            list(index["column_names"])
            for index in inspector.get_indexes("records")
            if index["name"] == "ix_records_order_number"
        ]

    after = [["order_number"]]
    assert _inspected(database_url, by_number) == after
    command.downgrade(alembic_config(database_url), "0011")
    assert _inspected(database_url, by_number) == []
    upgrade_database(database_url)
    assert _inspected(database_url, by_number) == after


def test_the_migrated_schema_is_the_models_schema(database_url: str) -> None:
    # What the code queries (app/models.py) is what `ancla db upgrade` built.
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0x" + "ab" * 31, "a record hash must be 0x followed by 64 hex digits"),
        ("ab" * 33, "a record hash must be 0x followed by 64 hex digits"),
        ("0x" + "AB" * 32, "a record hash must be lowercase hex"),
        ("0x" + "zz" * 32, "a record hash must be lowercase hex"),
    ],
)
def test_the_hash_column_refuses_what_is_not_a_hash(value: str, message: str) -> None:
    # Hashes are written one way only (ledger.hashing): an uppercase form would
    # otherwise find the same stored bytes as the lowercase one.
    with pytest.raises(ValueError, match=message):
        Hash32().process_bind_param(value, sqlite_dialect())
