"""A small ledger for the public pages' tests: orders with histories, documents, hostile text.

Recorded through the API itself (a FastAPI TestClient or an httpx client of a live
server) and anchored on the test chain, so the pages show what a real service holds.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.records.purchase_order import PURCHASE_ORDER_EXAMPLE
from app.runtime import Runtime
from app.services.agencies import add_agency
from tests.support.orders import BUYER_RUC, order

# The bytes of the order's PDF and of its acta de conformidad (what a visitor drops).
ORDER_PDF = b"%PDF-1.7\n% Orden electronica OCAM-2026-1556-7-0\n" + b"0" * 4096
ACTA_PDF = b"%PDF-1.7\n% Acta de conformidad firmada\n" + b"1" * 2048
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "ÑANDÚ" S.A.C.'
HOSTILE_URL = 'https://example.gob.pe/oc.pdf?a="><script>alert(2)</script>'


class Client(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...
    def post(self, url: str, **kwargs: Any) -> Any: ...


@dataclass
class Ledger:
    key: str
    order: dict[str, Any]
    history: list[str] = field(default_factory=list)  # the real order's record hashes
    hostile: dict[str, Any] = field(default_factory=dict)
    hostile_hash: str = ""
    victim_hash: str = ""  # a record a test may alter in the database
    other_hashes: list[str] = field(default_factory=list)

    @property
    def order_path(self) -> str:
        return f"/o/{self.order['buyer']['ruc']}/{self.order['order_number']}"

    @property
    def final_hash(self) -> str:
        """The purchase order's own record (final once anchored)."""
        return self.history[0]


def _post(client: Client, url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    response = client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def populate(client: Client, runtime: Runtime) -> Ledger:
    """Record the ledger through ``client`` and anchor it (one batch, final)."""
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key
    posted = copy.deepcopy(PURCHASE_ORDER_EXAMPLE)
    posted["documents"] = [
        {
            "title": "Orden electrónica",
            "url": "https://apps1.perucompras.gob.pe/OrdenCompra/obtenerPdfOrdenPublico?ID_OrdenCompra=3447646",
            "sha256": hashlib.sha256(ORDER_PDF).hexdigest(),
        }
    ]
    ledger = Ledger(key=key, order=posted)
    ledger.history.append(_post(client, "/v1/purchase-orders", posted, key)["hash"])
    events_url = f"/v1/purchase-orders/{BUYER_RUC}/{posted['order_number']}/events"
    for event in (
        {"type": "accepted", "occurred_at": "2026-01-31T10:05:00-05:00"},
        {
            "type": "delivered",
            "occurred_at": "2026-02-10T16:00:00-05:00",
            "note": "Conformidad del área usuaria",
            "documents": [
                {
                    "title": "Acta de conformidad",
                    "url": "https://example.gob.pe/acta.pdf",
                    "sha256": hashlib.sha256(ACTA_PDF).hexdigest(),
                }
            ],
        },
        {
            "type": "paid",
            "occurred_at": "2026-03-02T11:20:00-05:00",
            "payment": {"amount": "5796.99", "currency": "PEN", "reference": "SIAF 2026-0001234"},
        },
    ):
        body = {"prev": ledger.history[-1], **event}
        ledger.history.append(_post(client, events_url, body, key)["hash"])

    hostile = order(
        7,
        supplier={"ruc": "20611694629", "name": HOSTILE},
        procurement_method=HOSTILE,
        documents=[{"title": HOSTILE, "url": HOSTILE_URL, "sha256": "ab" * 32}],
    )
    hostile["buyer"]["name"] = HOSTILE
    ledger.hostile = hostile
    ledger.hostile_hash = _post(client, "/v1/purchase-orders", hostile, key)["hash"]
    ledger.victim_hash = _post(client, "/v1/purchase-orders", order(8), key)["hash"]
    ledger.other_hashes = [
        _post(client, "/v1/purchase-orders", order(i), key)["hash"] for i in (9, 10)
    ]
    report = runtime.make_worker().tick(force_seal=True)
    assert report.sealed, report
    receipt = client.get(f"/v1/receipts/{ledger.final_hash}").json()
    assert receipt["status"] == "final", receipt
    return ledger
