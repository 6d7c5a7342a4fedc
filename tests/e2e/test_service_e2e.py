"""End to end: 500 orders in (single and bulk) -> anchored -> every receipt verifies.

Verified twice, independently of the service: with ``ledger.verify_receipt``
and with the ``ancla verify-receipt`` command (in-process for the 500, and
once as a real subprocess), each against the chain alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.main import create_app
from app.runtime import Runtime
from app.services.agencies import add_agency
from ledger import Receipt, verify_receipt
from tests.support.hardhat import wait_until
from tests.support.orders import BUYER_RUC, order
from tests.support.services import ancla

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.chain]


def test_500_orders_are_anchored_and_every_receipt_verifies(
    make_settings: Any, tmp_path: Path
) -> None:
    runtime = Runtime.create(make_settings(batch_max_size=120, batch_max_age_seconds=0.5))
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(runtime=runtime, worker=True)) as client:
        hashes: list[str] = []
        for i in range(200):
            response = client.post("/v1/purchase-orders", json=order(i), headers=headers)
            assert response.status_code == 202, response.text
            hashes.append(response.json()["hash"])
        for start in (200, 350):
            body = {"purchase_orders": [order(i) for i in range(start, start + 150)]}
            response = client.post("/v1/purchase-orders/bulk", json=body, headers=headers)
            assert response.json()["summary"] == {"created": 150}
            hashes += [r["hash"] for r in response.json()["results"]]
        assert len(set(hashes)) == 500

        def all_final() -> bool:
            return all(
                client.get(f"/v1/receipts/{h}").json()["status"] == "final" for h in hashes[-5:]
            ) and all(b["status"] == "final" for b in client.get("/v1/batches").json()["items"])

        wait_until(all_final, timeout=120)
        receipts = [client.get(f"/v1/receipts/{h}").json() for h in hashes]
        records = [json.loads(client.get(f"/v1/records/{h}").content) for h in hashes]
        batches = client.get("/v1/batches").json()["items"]

    assert sum(b["size"] for b in batches) == 500
    assert [b["id"] for b in batches] == list(range(len(batches), 0, -1))
    rpc = runtime.settings.rpc_url
    for receipt, record in zip(receipts, records, strict=True):
        assert receipt["status"] == "final"
        assert verify_receipt(Receipt.from_json(receipt), record, rpc_url=rpc).ok

    runner = CliRunner()
    receipt_file, record_file = tmp_path / "receipt.json", tmp_path / "record.json"
    for receipt, record in zip(receipts, records, strict=True):
        receipt_file.write_text(json.dumps(receipt))
        record_file.write_text(json.dumps(record, ensure_ascii=False))
        result = runner.invoke(
            cli_app,
            [
                "verify-receipt",
                str(receipt_file),
                "--record",
                str(record_file),
                "--rpc",
                rpc,
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["valid"] is True

    result = ancla(
        "verify-receipt",
        str(receipt_file),
        "--record",
        str(record_file),
        "--rpc",
        rpc,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
