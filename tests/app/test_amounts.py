"""Amounts are kept exactly in the query columns: the largest an order may hold (15
digits and 2 decimals) on both databases, and SQLite databases made before
migration 0004 (which kept totals as REAL) are repaired from the records' bytes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.cli import upgrade_database
from app.runtime import Runtime
from app.services.agencies import add_agency
from ledger.canonical import canonical_bytes, hash_canonical
from tests.support.orders import BUYER_RUC, order
from tests.support.services import audit

pytestmark = pytest.mark.db

# 17 significant digits: a float (what SQLite's NUMERIC keeps) has about 15.9.
LARGE = order(
    1, subtotal="847457627118643.99", tax="152542372881355.92", total="999999999999999.91"
)


@pytest.mark.chain
def test_the_largest_amounts_come_back_exactly(client: TestClient, runtime: Runtime) -> None:
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key
    posted = client.post(
        "/v1/purchase-orders", json=LARGE, headers={"Authorization": f"Bearer {key}"}
    )
    assert posted.status_code == 202, posted.text
    listed = client.get("/v1/purchase-orders").json()["items"]
    assert [item["total"] for item in listed] == ["999999999999999.91"]
    runtime.make_worker().tick(force_seal=True)
    # The audit compares the query columns with the records' bytes.
    report = audit(runtime)
    assert report.ok, report.to_dict()


def test_migration_0004_repairs_totals_sqlite_kept_as_real(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade_database(url, "0003")
    record = {"schema": "ancla/purchase-order/1", "purchase_order": LARGE}
    canonical = canonical_bytes(record)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO records (hash, canonical, schema, buyer_ruc, order_number, "
                "supplier_ruc, supplier_name, buyer_name, issued_at, currency, total, source, "
                "accepted_at) VALUES (:hash, :canonical, 'ancla/purchase-order/1', :buyer, "
                ":number, :supplier, 'S', 'B', '2026-01-31 14:57:50.000000', 'PEN', :total, "
                "'api', '2026-01-31 15:00:00.000000')"
            ),
            {
                "hash": hash_canonical(canonical),
                "canonical": canonical,
                "buyer": LARGE["buyer"]["ruc"],
                "number": LARGE["order_number"],
                "supplier": LARGE["supplier"]["ruc"],
                "total": 999999999999999.91,  # what version 0003 kept: a REAL
            },
        )
        kept = connection.execute(text("SELECT total, typeof(total) FROM records")).one()
    assert kept[1] == "real" and Decimal(str(kept[0])) != Decimal("999999999999999.91")
    upgrade_database(url)
    with engine.connect() as connection:
        repaired = connection.execute(text("SELECT total, typeof(total) FROM records")).one()
    engine.dispose()
    assert tuple(repaired) == ("999999999999999.91", "text")
