"""Valid purchase orders for tests, built from the DESIGN example."""

from __future__ import annotations

import copy
from typing import Any

from app.records.purchase_order import PURCHASE_ORDER_EXAMPLE, ruc_check_digit

BUYER_RUC = PURCHASE_ORDER_EXAMPLE["buyer"]["ruc"]
OTHER_BUYER_RUC = "20177217043"  # MUNICIPALIDAD PROVINCIAL DEL CUSCO (a real RUC)

# A real order with only the required members (DESIGN §4's second row).
MINIMAL_ORDER: dict[str, Any] = {
    "order_number": "OCAM-2026-300684-2-0",
    "buyer": {"ruc": "20177217043", "name": "MUNICIPALIDAD PROVINCIAL DEL CUSCO"},
    "supplier": {"ruc": "20611694629", "name": "INTISSUR PUNO E.I.R.L."},
    "issued_at": "2026-01-30T19:19:03-05:00",
    "subtotal": "174064.00",
    "tax": "31331.52",
    "total": "205395.52",
}


def order(i: int = 0, *, buyer_ruc: str = BUYER_RUC, **changes: Any) -> dict[str, Any]:
    """A valid order numbered ``i`` (distinct order number and amounts per i)."""
    data = copy.deepcopy(PURCHASE_ORDER_EXAMPLE)
    data.pop("items", None)
    data["order_number"] = f"OCAM-2026-{1000 + i}-7-0"
    data["buyer"]["ruc"] = buyer_ruc
    cents = 100_000 + i
    subtotal = cents
    tax = cents * 18 // 100
    data["subtotal"] = f"{subtotal // 100}.{subtotal % 100:02d}"
    data["tax"] = f"{tax // 100}.{tax % 100:02d}"
    total = subtotal + tax
    data["total"] = f"{total // 100}.{total % 100:02d}"
    data.update(changes)
    return data


def valid_ruc(prefix: str, body8: str) -> str:
    body = prefix + body8
    return body + ruc_check_digit(body)
