"""Sealing stays a per-batch cost however large the ledger grows, and never
rewrites a record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select, text

from app.cli import upgrade_database
from app.db import SessionFactory, make_engine, make_session_factory
from app.models import Batch, BatchEntry, PendingRecord
from app.records.purchase_order import SCHEMA, PurchaseOrder
from app.services.batching import _seal, next_in_queue, seal_batches
from app.services.ingest import record_items
from ledger.merkle import MerkleTree
from tests.support.orders import order
from tests.support.services import ensure_agency

pytestmark = pytest.mark.db

LEDGER_ROWS = 60_000


def record(session_factory: SessionFactory, count: int) -> None:
    """Record ``count`` distinct orders through the ingest service."""
    orders = [PurchaseOrder.model_validate(order(n)) for n in range(count)]
    with session_factory() as session:
        record_items(
            session=session,
            agency=ensure_agency(session_factory),
            schema=SCHEMA,
            items=orders,
        )


@pytest.fixture
def session_factory(database_url: str) -> Iterator[SessionFactory]:
    upgrade_database(database_url)
    engine = make_engine(database_url, pool_size=1)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def test_sealing_inserts_entries_and_empties_the_queue_without_writing_records(
    session_factory: SessionFactory,
) -> None:
    record(session_factory, 30)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(PendingRecord)) == 30
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            sealed = seal_batches(session=session, max_size=20, max_age_seconds=0, force=True)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert [b.size for b in sealed] == [20, 10]
        assert session.scalar(select(func.count()).select_from(PendingRecord)) == 0
        entries = session.execute(
            select(BatchEntry.batch_id, BatchEntry.position).order_by(BatchEntry.record_id)
        ).all()
    assert [tuple(e) for e in entries] == [(1, p) for p in range(20)] + [(2, p) for p in range(10)]
    writes = [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT", "COPY"))]
    assert writes and not any("records " in s.split("(")[0] for s in writes), writes


@pytest.mark.postgresql_only
@pytest.mark.parametrize(
    "ledger_rows",
    [
        # The queue's statistics count rows sealed since it was last analysed.
        pytest.param(LEDGER_ROWS, id="stale-queue-statistics"),
        # A young ledger, as in the first minute of a bulk run: a scan of
        # every record looks cheaper than 1,000 index lookups, and was planned.
        pytest.param(20_000, id="young-ledger"),
    ],
)
def test_taking_the_queue_fetches_records_by_primary_key_not_by_a_scan(
    session_factory: SessionFactory, ledger_rows: int
) -> None:
    record(session_factory, 1)
    with session_factory() as session:
        # A ledger of LEDGER_ROWS records, copies of that one with their own keys,
        # of which the newest 1,000 are queued; the queue's statistics still
        # count the rows sealed since it was last analysed, as under load.
        session.execute(
            text(
                "INSERT INTO records (hash, canonical, schema, buyer_ruc, buyer_name, order_number,"
                " supplier_ruc, supplier_name, issued_at, currency, total, agency_id, source,"
                " accepted_at) SELECT sha256(convert_to('h' || g, 'UTF8')), canonical, schema,"
                " buyer_ruc, buyer_name, 'N' || g, supplier_ruc, supplier_name, issued_at,"
                " currency, total, agency_id, source, accepted_at"
                " FROM records, generate_series(2, :rows) AS g"
            ),
            {"rows": ledger_rows},
        )
        session.execute(text("ALTER TABLE pending_records SET (autovacuum_enabled = false)"))
        session.execute(
            text(
                "INSERT INTO pending_records (record_id) SELECT id FROM records"
                " ON CONFLICT DO NOTHING"
            )
        )
        session.commit()
        session.execute(text("ANALYZE records"))
        session.execute(text("ANALYZE pending_records"))
        session.execute(
            text(
                "DELETE FROM pending_records"
                " WHERE record_id <= (SELECT max(id) - 1000 FROM records)"
            )
        )
        session.commit()
        connection = session.connection()
        query = next_in_queue(1000).compile(
            dialect=connection.dialect, compile_kwargs={"literal_binds": True}
        )
        plan = "\n".join(line for (line,) in connection.exec_driver_sql(f"EXPLAIN {query}"))
        session.rollback()
    assert "Seq Scan on records" not in plan, plan
    # Each queued record is fetched by its id, not met along a walk of all of them.
    assert "Index Cond: (id = " in plan, plan


def test_a_batch_is_not_sealed_with_records_that_left_the_queue(
    session_factory: SessionFactory,
) -> None:
    # What a second sealer (two leaders) would leave behind: records taken off
    # the queue. Sealing them again must fail whole, leaving no batch.
    record(session_factory, 3)
    with session_factory() as session:
        taken = session.execute(next_in_queue(3)).all()
        session.execute(delete(PendingRecord).where(PendingRecord.record_id == taken[0].record_id))
        session.commit()
        tree = MerkleTree.of_digests([row.hash for row in taken])
        with pytest.raises(RuntimeError, match="batch 1: 1 of its records were no longer pending"):
            _seal(session, [row.record_id for row in taken], tree.root, tree.proof_bytes())
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
        assert session.scalar(select(func.count()).select_from(BatchEntry)) == 0
        assert session.scalar(select(func.count()).select_from(PendingRecord)) == 2


def test_a_queued_record_deleted_outside_ancla_stops_sealing_with_its_id(
    session_factory: SessionFactory,
) -> None:
    # No foreign key refuses the delete (migration 0006); the sealer must.
    record(session_factory, 3)
    with session_factory() as session:
        gone = session.execute(next_in_queue(3)).all()[1].record_id
        session.execute(text("DELETE FROM records WHERE id = :id"), {"id": gone})
        session.commit()
        with pytest.raises(
            RuntimeError, match=f"queued record id {gone} is not in the records table"
        ):
            seal_batches(session=session, max_size=3, max_age_seconds=0, force=True)
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
        assert session.scalar(select(func.count()).select_from(PendingRecord)) == 3
