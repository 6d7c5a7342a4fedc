"""`ancla verify` checks every order's history: records written past ingest's rules (as an
intruder with database access would) are found, each by its kind, naming order and record."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.models import PendingRecord, Record
from app.records.order_event import SCHEMA as EVENTS
from app.records.order_event import event_record
from app.runtime import Runtime
from app.services.agencies import add_agency
from ledger.canonical import canonical_bytes, hash_canonical
from tests.support.orders import BUYER_RUC, order
from tests.support.services import audit

pytestmark = [pytest.mark.db, pytest.mark.chain]


@pytest.fixture
def history(runtime: Runtime, client: TestClient) -> dict[str, Any]:
    """An order (total 1180.01 PEN) with two events, through the API."""
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MP").api_key
    headers = {"Authorization": f"Bearer {key}"}
    posted = order(1)
    hashes = [client.post("/v1/purchase-orders", json=posted, headers=headers).json()["hash"]]
    url = f"/v1/purchase-orders/{BUYER_RUC}/{posted['order_number']}/events"
    for kind, members in (
        ("accepted", {}),
        ("paid", {"payment": {"amount": "1000.00", "currency": "PEN"}}),
    ):
        body = {"prev": hashes[-1], "type": kind, "occurred_at": "2026-02-01T10:00:00-05:00"}
        answer = client.post(url, json={**body, **members}, headers=headers)
        assert answer.status_code == 202, answer.text
        hashes.append(answer.json()["hash"])
    return {"number": posted["order_number"], "hashes": hashes}


def forge(runtime: Runtime, record: dict[str, Any], **columns: Any) -> str:
    """Write a record as an intruder would: straight into the tables, past every rule."""
    canonical = canonical_bytes(record)
    record_hash = hash_canonical(canonical)
    values = {**EVENTS.columns(record)._asdict(), **columns}
    with runtime.session_factory() as session:
        row = Record(hash=record_hash, canonical=canonical, schema=EVENTS.name, **values)
        session.add(row)
        session.flush()
        session.add(PendingRecord(record_id=row.id))
        session.commit()
    return record_hash


def event(number: str, prev: str, kind: str = "accepted", **members: Any) -> dict[str, Any]:
    body = {"type": kind, "occurred_at": "2026-02-02T10:00:00-05:00", **members}
    return event_record(BUYER_RUC, number, prev, body)


def findings(runtime: Runtime) -> list[tuple[str, str | None, str | None]]:
    report = audit(runtime)
    return sorted((d.kind, d.record_hash, d.order) for d in report.discrepancies)


def test_a_clean_history_is_checked_and_clean(runtime: Runtime, history: dict[str, Any]) -> None:
    report = audit(runtime)
    assert report.ok, report.to_dict()
    assert report.histories_checked == 1 and report.records_checked == 3


def test_a_payment_above_the_total_is_a_rule_violation(
    runtime: Runtime, history: dict[str, Any]
) -> None:
    payment = {"amount": "500.00", "currency": "PEN"}
    forged = forge(
        runtime, event(history["number"], history["hashes"][-1], "paid", payment=payment)
    )
    where = f"{BUYER_RUC}/{history['number']}"
    assert findings(runtime) == [("rule_violation", forged, where)]
    (finding,) = audit(runtime).discrepancies
    assert "payments would total 1500.00, above the order's total 1180.01 PEN" in finding.detail


def test_an_event_after_cancellation_is_a_rule_violation(
    runtime: Runtime, history: dict[str, Any]
) -> None:
    cancel = forge(
        runtime, event(history["number"], history["hashes"][-1], "cancelled", rationale="x")
    )
    after = forge(runtime, event(history["number"], cancel))
    where = f"{BUYER_RUC}/{history['number']}"
    assert findings(runtime) == [("rule_violation", after, where)]


def test_a_fork_is_found_although_the_identity_column_was_changed_to_let_it_in(
    runtime: Runtime, history: dict[str, Any]
) -> None:
    forked = forge(
        runtime,
        event(history["number"], history["hashes"][0], "status", status="OTRO"),
        identity="0x" + "00" * 32,
    )
    where = f"{BUYER_RUC}/{history['number']}"
    kinds = findings(runtime)
    assert ("fork", forked, where) in kinds
    # The identity column no longer agrees with the bytes either.
    assert ("derived_mismatch", forked, None) in kinds


def test_a_broken_link_and_an_orphan_event(runtime: Runtime, history: dict[str, Any]) -> None:
    dangling = forge(runtime, event(history["number"], "0x" + "ab" * 32))
    orphan = forge(runtime, event("OCAM-2026-9999-1-0", "0x" + "cd" * 32))
    assert findings(runtime) == sorted(
        [
            ("broken_link", dangling, f"{BUYER_RUC}/{history['number']}"),
            ("orphan_event", orphan, f"{BUYER_RUC}/OCAM-2026-9999-1-0"),
        ]
    )
    report = audit(runtime)
    assert Counter(d.kind for d in report.discrepancies) == Counter(
        {"broken_link": 1, "orphan_event": 1}
    )
    assert report.to_dict()["discrepancies"][0]["order"]
