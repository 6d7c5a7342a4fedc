"""One function decides a record's public status (app.services.receipts.public_status):
receipts, lists, the order view, the 200 answer and the exports all agree, also in the
seconds after the chain under the ledger was reset and before the worker noticed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.runtime import Runtime
from app.services.agencies import add_agency
from ledger.chain import ChainClient
from tests.support.hardhat import start_node
from tests.support.orders import BUYER_RUC, order

pytestmark = [pytest.mark.db, pytest.mark.chain]


def every_status(client: TestClient, key: str, posted: dict[str, Any]) -> dict[str, Any]:
    """The status each view gives the one recorded order."""
    again = client.post("/v1/purchase-orders", json=posted, headers={"Authorization": key})
    assert again.status_code == 200, again.text
    record_hash = again.json()["hash"]
    view = client.get(f"/v1/purchase-orders/{BUYER_RUC}/{posted['order_number']}").json()
    (listed,) = client.get("/v1/purchase-orders").json()["items"]
    (filtered,) = client.get(f"/v1/purchase-orders?buyer={BUYER_RUC}").json()["items"]
    (row,) = csv.DictReader(io.StringIO(client.get("/v1/export/csv").text))
    (release,) = client.get("/v1/export/ocds").json()["releases"]
    (record,) = client.get("/v1/export/ocds?package=record").json()["records"]
    return {
        "receipt": client.get(f"/v1/receipts/{record_hash}").json()["status"],
        "200 answer": again.json()["status"],
        "order view": view["status"],
        "order history": [h["status"] for h in view["history"]],
        "list": listed["status"],
        "filtered list": filtered["status"],
        "csv": row["status"],
        "ocds release": release["ancla"]["status"],
        "ocds record": record["releases"][0]["ancla"]["status"],
    }


def agreeing(status: str) -> dict[str, Any]:
    return {
        "receipt": status,
        "200 answer": status,
        "order view": status,
        "order history": [status],
        "list": status,
        "filtered list": status,
        "csv": status,
        "ocds release": status,
        "ocds record": status,
    }


@pytest.fixture
def moved_chain(tmp_path: Path) -> Iterator[str]:
    node = start_node(tmp_path)  # a brand-new chain with the same chain id
    yield node.url
    node.stop()


def test_every_view_agrees_before_and_after_a_chain_reset(
    runtime: Runtime, client: TestClient, make_settings: Any, signer: Any, moved_chain: str
) -> None:
    with runtime.session_factory() as session:
        key = "Bearer " + add_agency(session=session, ruc=BUYER_RUC, name="MP").api_key
    posted = order(7)
    assert (
        client.post("/v1/purchase-orders", json=posted, headers={"Authorization": key}).status_code
        == 202
    )
    assert every_status(client, key, posted) == agreeing("pending")
    runtime.make_worker().tick(force_seal=True)
    assert every_status(client, key, posted) == agreeing("final")

    # The same database, now served against a reset chain (another genesis):
    # before the worker has looked, no view may still vouch for the old anchor.
    address, _ = ChainClient(moved_chain).deploy_registry(signer)
    moved = Runtime.create(make_settings(rpc_url=moved_chain, contract_address=address))
    with TestClient(create_app(runtime=moved)) as moved_client:
        assert every_status(moved_client, key, posted) == agreeing("pending")
        moved.make_worker().tick()
        assert every_status(moved_client, key, posted) == agreeing("final")
