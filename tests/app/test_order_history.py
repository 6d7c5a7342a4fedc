"""Every stage of an order (DESIGN §2 "Order history"): events chained by hash to the
order's record, their rules, receipts, documents by digest, and racing appends."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.opendata.importing import read_perucompras_csv
from app.runtime import Runtime
from app.services.agencies import add_agency
from ledger import Receipt, record_hash, verify_receipt
from tests.support.orders import BUYER_RUC, OTHER_BUYER_RUC, order

pytestmark = [pytest.mark.db, pytest.mark.chain]

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
REPO = Path(__file__).resolve().parents[2]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_of(runtime: Runtime, ruc: str = BUYER_RUC, name: str = "MINISTERIO PÚBLICO") -> str:
    with runtime.session_factory() as session:
        return add_agency(session=session, ruc=ruc, name=name).api_key


def real_order() -> dict[str, Any]:
    """The first order of the vendored Perú Compras report (a real order, DESIGN §4)."""
    row = next(iter(read_perucompras_csv(VECTORS / "import" / "ReportePCBienes202602.csv")))
    assert row.order is not None and row.order["buyer"]["ruc"] == BUYER_RUC
    return row.order


def assert_problem(response: httpx.Response, status: int, detail: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert detail in body["detail"], body
    return body


class History:
    """An order recorded through the API, and appends to its history."""

    def __init__(self, client: TestClient, key: str, posted: dict[str, Any]) -> None:
        self.client, self.key, self.order = client, key, posted
        created = client.post("/v1/purchase-orders", json=posted, headers=auth(key))
        assert created.status_code == 202, created.text
        self.hashes = [created.json()["hash"]]
        self.url = f"/v1/purchase-orders/{posted['buyer']['ruc']}/{posted['order_number']}"

    @property
    def head(self) -> str:
        return self.hashes[-1]

    def append(self, kind: str, occurred_at: str, **members: Any) -> httpx.Response:
        body = {"prev": self.head, "type": kind, "occurred_at": occurred_at, **members}
        response = self.client.post(f"{self.url}/events", json=body, headers=auth(self.key))
        if response.status_code == 202:
            self.hashes.append(response.json()["hash"])
        return response


def test_a_real_order_through_its_whole_life(
    runtime: Runtime, client: TestClient, rpc_url: str, tmp_path: Path
) -> None:
    history = History(client, key_of(runtime), real_order())
    acta = b"%PDF-1.7 acta de conformidad firmada\n" * 100
    acta_sha256 = hashlib.sha256(acta).hexdigest()

    accepted = history.append("accepted", "2026-01-31T10:05:00-05:00")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["seq"] == 1 and accepted.json()["status"] == "pending"
    delivered = history.append(
        "delivered",
        "2026-02-10T16:00:00-05:00",
        note="Conformidad del área usuaria",
        documents=[
            {
                "title": "Acta de conformidad",
                "url": "https://example.gob.pe/acta.pdf",
                "sha256": acta_sha256,
            }
        ],
    )
    assert delivered.status_code == 202, delivered.text
    invoice = {
        "number": "E001-123",
        "issued_at": "2026-02-11T09:00:00-05:00",
        "amount": "5796.99",
        "currency": "PEN",
    }
    assert (
        history.append("invoiced", "2026-02-11T09:00:00-05:00", invoice=invoice).status_code == 202
    )
    first = {"amount": "3000.00", "currency": "PEN", "reference": "SIAF 2026-0001234"}
    second = {"amount": "2796.99", "currency": "PEN", "reference": "SIAF 2026-0001300"}
    assert history.append("paid", "2026-03-02T11:20:00-05:00", payment=first).status_code == 202
    assert history.append("paid", "2026-03-09T11:20:00-05:00", payment=second).status_code == 202

    over = history.append(
        "paid", "2026-03-10T11:20:00-05:00", payment={"amount": "0.01", "currency": "PEN"}
    )
    assert_problem(over, 422, "payments would total 5797.00, above the order's total 5796.99 PEN")

    view = client.get(history.url).json()
    assert view["head"] == history.head and view["seq"] == 5
    assert [h["type"] for h in view["history"]] == [
        "issued",
        "accepted",
        "delivered",
        "invoiced",
        "paid",
        "paid",
    ]
    assert [h["seq"] for h in view["history"]] == list(range(6))
    assert [h["hash"] for h in view["history"]] == history.hashes
    assert [h["prev"] for h in view["history"]] == [None, *history.hashes[:-1]]
    assert view["current"]["invoiced"] == "5796.99" and view["current"]["paid"] == "5796.99"
    assert view["current"]["outstanding"] == "0.00" and view["current"]["delivered"] is True
    assert view["purchase_order"] == history.order | {"currency": "PEN"}

    bound = client.get(f"/v1/documents/{acta_sha256}").json()
    assert [(r["hash"], r["type"], r["titles"]) for r in bound["records"]] == [
        (history.hashes[2], "delivered", ["Acta de conformidad"])
    ]

    runtime.make_worker().tick(force_seal=True)
    receipts = [client.get(f"/v1/receipts/{h}").json() for h in history.hashes]
    assert {r["status"] for r in receipts} == {"final"}
    for record_hash_, receipt in zip(history.hashes, receipts, strict=True):
        record = json.loads(client.get(f"/v1/records/{record_hash_}").content)
        assert record_hash(record) == record_hash_
        assert verify_receipt(Receipt.from_json(receipt), record, rpc_url=rpc_url).ok
    # The batch's tree, rebuilt by @openzeppelin/merkle-tree itself, proves each one.
    batch_id = receipts[0]["batch"]["id"]
    dump = client.get(f"/v1/batches/{batch_id}/tree").json()
    leaves = [value[0] for value in (entry["value"] for entry in dump["values"])]
    oz = subprocess.run(
        ["node", "tests/support/oz_tree.js", "--no-dump"],
        input=json.dumps({"cases": [{"hashes": leaves}]}),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    (case,) = json.loads(oz.stdout)["cases"]
    for receipt in receipts:
        assert case["root"] == receipt["merkle"]["root"]
        index = leaves.index(receipt["hash"])
        assert case["proofs"][index] == receipt["merkle"]["proof"]
    assert all(h["status"] == "final" for h in client.get(history.url).json()["history"])


def test_each_rule_is_refused_with_its_status_and_message(
    runtime: Runtime, client: TestClient
) -> None:
    key = key_of(runtime)
    history = History(client, key, order(1))  # issued 2026-01-31T09:57:50-05:00, total 1180.01
    stale = history.head
    assert history.append("accepted", "2026-02-01T10:00:00-05:00").status_code == 202

    forked = client.post(
        f"{history.url}/events",
        json={"prev": stale, "type": "accepted", "occurred_at": "2026-02-01T11:00:00-05:00"},
        headers=auth(key),
    )
    problem = assert_problem(forked, 409, f"prev {stale} is not the head")
    assert problem["head"] == history.head

    early = history.append("accepted", "2026-01-30T10:00:00-05:00")
    assert_problem(early, 422, "is before the order was issued")
    dollars = history.append(
        "paid", "2026-02-02T10:00:00-05:00", payment={"amount": "1.00", "currency": "USD"}
    )
    assert_problem(dollars, 422, "the payment is in USD, but the order is in PEN")
    too_much = history.append(
        "invoiced",
        "2026-02-02T10:00:00-05:00",
        invoice={
            "number": "F1",
            "issued_at": "2026-02-02T10:00:00-05:00",
            "amount": "5000.00",
            "currency": "PEN",
        },
    )
    assert_problem(
        too_much, 422, "invoices would total 5000.00, above the order's total 1180.01 PEN"
    )
    other = order(2)
    moved = history.append(
        "amended", "2026-02-02T10:00:00-05:00", purchase_order=other, rationale="error"
    )
    assert_problem(moved, 422, "an amendment keeps the order's buyer and number")
    amended = order(1, subtotal="200.00", tax="36.00", total="236.00")
    raised = history.append(
        "amended", "2026-02-03T10:00:00-05:00", purchase_order=amended, rationale="más unidades"
    )
    assert raised.status_code == 202, raised.text
    assert client.get(history.url).json()["current"]["total"] == "236.00"

    invalid = history.append(
        "paid", "2026-02-04T10:00:00-05:00", payment={"amount": 5, "currency": "PEN", "x": 1}
    )
    body = assert_problem(invalid, 422, "payment.amount")
    assert {e["field"] for e in body["errors"]} == {"payment.amount", "payment.x"}
    assert_problem(
        history.append("refunded", "2026-02-04T10:00:00-05:00"), 422, "type: must be one of"
    )
    assert_problem(
        client.post(
            f"{history.url}/events",
            json={
                "buyer_ruc": BUYER_RUC,
                "prev": history.head,
                "type": "accepted",
                "occurred_at": "2026-02-04T10:00:00-05:00",
            },
            headers=auth(key),
        ),
        422,
        "buyer_ruc: the order is named by the path",
    )

    cancelled = history.append("cancelled", "2026-02-05T10:00:00-05:00", rationale="desistimiento")
    assert cancelled.status_code == 202
    after = history.append("accepted", "2026-02-06T10:00:00-05:00")
    assert_problem(after, 409, "is cancelled: nothing may follow its cancellation")

    # The identical record again: 200, the same hash and seq.
    again = client.post(
        f"{history.url}/events",
        json={
            "prev": history.hashes[-2],
            "type": "cancelled",
            "occurred_at": "2026-02-05T10:00:00-05:00",
            "rationale": "desistimiento",
        },
        headers=auth(key),
    )
    assert again.status_code == 200, again.text
    assert (again.json()["hash"], again.json()["seq"]) == (history.head, 3)

    unknown = client.post(
        f"/v1/purchase-orders/{BUYER_RUC}/NOPE-1/events",
        json={"prev": history.head, "type": "accepted", "occurred_at": "2026-02-06T10:00:00-05:00"},
        headers=auth(key),
    )
    assert_problem(unknown, 404, f"order NOPE-1 of buyer {BUYER_RUC} is not recorded")
    theirs = client.post(
        f"/v1/purchase-orders/{OTHER_BUYER_RUC}/X-1/events",
        json={"prev": history.head, "type": "accepted", "occurred_at": "2026-02-06T10:00:00-05:00"},
        headers=auth(key),
    )
    assert_problem(theirs, 403, f"records events of buyer {BUYER_RUC} only")
    assert client.get(history.url).json()["seq"] == 3


def test_bulk_events_chain_to_earlier_items_of_the_same_bulk(
    runtime: Runtime, client: TestClient
) -> None:
    key = key_of(runtime)
    history = History(client, key, order(3))
    accepted = {
        "buyer_ruc": BUYER_RUC,
        "order_number": history.order["order_number"],
        "prev": history.head,
        "type": "accepted",
        "occurred_at": "2026-02-01T10:00:00-05:00",
    }
    accepted_hash = record_hash(
        {
            "schema": "ancla/order-event/1",
            "order": {"buyer_ruc": BUYER_RUC, "order_number": history.order["order_number"]},
            "prev": history.head,
            "event": {"type": "accepted", "occurred_at": "2026-02-01T10:00:00-05:00"},
        }
    )
    paid = {
        **accepted,
        "prev": accepted_hash,
        "type": "paid",
        "payment": {"amount": "18.00", "currency": "PEN"},
    }
    forked = {**accepted, "occurred_at": "2026-02-01T10:30:00-05:00"}
    response = client.post(
        "/v1/events/bulk",
        json={"events": [accepted, paid, forked, {"type": "accepted"}, accepted]},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 202, 409, 422, 200]
    assert results[0]["hash"] == accepted_hash and results[0]["seq"] == 1
    assert results[1]["seq"] == 2 and results[2]["head"] == results[1]["hash"]
    assert {e["field"] for e in results[3]["errors"]} >= {"buyer_ruc", "order_number", "prev"}
    assert client.get(history.url).json()["head"] == results[1]["hash"]


def test_racing_appends_to_one_head_never_fork(runtime: Runtime, client: TestClient) -> None:
    """Many clients append to the same head at once: exactly one 202, the rest 409."""
    from app.main import create_app

    key = key_of(runtime)
    history = History(client, key, order(4))
    head = history.head

    async def race() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return list(
                await asyncio.gather(
                    *(
                        http.post(
                            f"{history.url}/events",
                            json={
                                "prev": head,
                                "type": "status",
                                "occurred_at": "2026-02-01T10:00:00-05:00",
                                "status": f"ESTADO {i}",
                            },
                            headers=auth(key),
                        )
                        for i in range(12)
                    )
                )
            )

    del create_app
    answers = asyncio.run(race())
    assert sorted(a.status_code for a in answers) == [202] + [409] * 11
    winner = next(a for a in answers if a.status_code == 202).json()["hash"]
    assert {a.json()["head"] for a in answers if a.status_code == 409} == {winner}
    view = client.get(history.url).json()
    assert [h["hash"] for h in view["history"]] == [head, winner]
