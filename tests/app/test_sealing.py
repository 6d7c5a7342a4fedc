"""Sealing on PostgreSQL stays a per-batch cost however large the ledger grows."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.cli import upgrade_database
from app.db import make_engine, make_session_factory, postgresql_cursor
from app.purchase_order import PurchaseOrder
from app.services.batching import _PG_CREATE_SEAL_STAGE, _PG_SEAL
from app.services.ingest import record_orders
from tests.support.orders import order
from tests.support.services import ensure_agency

pytestmark = [pytest.mark.db, pytest.mark.postgresql_only]

LEDGER_ROWS = 60_000


def test_the_seal_update_reaches_records_by_primary_key_not_by_a_scan(database_url: str) -> None:
    # The staging table is never analysed; joined as-is, the planner guessed
    # thousands of rows and scanned every record on every seal.
    upgrade_database(database_url)
    engine = make_engine(database_url, pool_size=1)
    session_factory = make_session_factory(engine)
    agency = ensure_agency(session_factory)
    with session_factory() as session:
        record_orders(
            session=session, agency=agency, orders=[PurchaseOrder.model_validate(order(1))]
        )
        # A ledger of LEDGER_ROWS records, copies of that one with their own keys.
        session.execute(
            text(
                "INSERT INTO records (hash, canonical, schema, buyer_ruc, buyer_name, order_number,"
                " supplier_ruc, supplier_name, issued_at, currency, total, agency_id, source,"
                " accepted_at) SELECT 'h' || g, canonical, schema, buyer_ruc, buyer_name,"
                " 'N' || g, supplier_ruc, supplier_name, issued_at, currency, total, agency_id,"
                " source, accepted_at FROM records, generate_series(2, :rows) AS g"
            ),
            {"rows": LEDGER_ROWS},
        )
        session.commit()
        session.execute(text("ANALYZE records"))
        session.commit()
        ids = list(session.scalars(text("SELECT id FROM records ORDER BY id DESC LIMIT 1000")))
        with postgresql_cursor(session.connection()) as cursor:
            cursor.execute(_PG_CREATE_SEAL_STAGE)
            # A batch of 1,000 with proofs of 10 siblings, as a real seal stages it.
            cursor.execute(
                "INSERT INTO pg_temp.batch_positions_incoming"
                " SELECT id, 0, decode(repeat('ab', 320), 'hex') FROM records"
                " WHERE id = ANY(%(ids)s)",
                {"ids": ids},
            )
            cursor.execute("EXPLAIN " + _PG_SEAL, {"batch_id": 1, "ids": ids})
            plan = "\n".join(line for (line,) in cursor.fetchall())
        session.rollback()
    engine.dispose()
    assert "Seq Scan on records" not in plan, plan
    assert "Index Cond: (id = ANY" in plan, plan
