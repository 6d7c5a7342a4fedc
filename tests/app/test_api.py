"""The HTTP API: every route, every error status a client can cause (problem+json)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import event

from app.records.purchase_order import SCHEMA
from app.runtime import Runtime
from app.services.agencies import add_agency, revoke_agency
from app.services.ingest import parse_items, record_items
from ledger import record_hash
from tests.support.orders import BUYER_RUC, OTHER_BUYER_RUC, order, valid_ruc

pytestmark = [pytest.mark.db, pytest.mark.chain]


@pytest.fixture
def api_key(runtime: Runtime) -> str:
    with runtime.session_factory() as session:
        return add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: Response, status: int, detail: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert detail in body["detail"], body
    return body


def anchor_all(runtime: Runtime) -> None:
    runtime.make_worker().tick(force_seal=True)


# -- POST /v1/purchase-orders ----------------------------------------------------------


def test_record_then_identical_then_conflict(client: TestClient, api_key: str) -> None:
    first = client.post("/v1/purchase-orders", json=order(1), headers=auth(api_key))
    assert first.status_code == 202
    body = first.json()
    assert body["status"] == "pending"
    assert body["receipt_url"] == f"/v1/receipts/{body['hash']}"
    same = client.post("/v1/purchase-orders", json=order(1), headers=auth(api_key))
    assert same.status_code == 200
    assert same.json()["hash"] == body["hash"]
    changed = order(1, status="ANULADA")
    conflict = client.post("/v1/purchase-orders", json=changed, headers=auth(api_key))
    problem = assert_problem(conflict, 409, "is already recorded with other content")
    assert problem["existing_hash"] == body["hash"]


def test_hash_is_keccak_of_the_record_as_validated(client: TestClient, api_key: str) -> None:
    posted = order(2)
    posted.pop("currency")  # the default (PEN) is filled in and hashed
    response = client.post("/v1/purchase-orders", json=posted, headers=auth(api_key))
    expected = record_hash(
        {"schema": "ancla/purchase-order/1", "purchase_order": {**posted, "currency": "PEN"}}
    )
    assert response.json()["hash"] == expected
    record = client.get(f"/v1/records/{expected}")
    assert record.status_code == 200
    assert record_hash(json.loads(record.content)) == expected


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "an API key is required"),
        ({"Authorization": "Bearer nonsense"}, "the API key is malformed"),
        ({"Authorization": "Bearer ancla_0000000000000000_secret"}, "the API key is not valid"),
    ],
)
def test_missing_or_bad_key_is_401(
    client: TestClient, api_key: str, headers: dict[str, str], detail: str
) -> None:
    response = client.post("/v1/purchase-orders", json=order(3), headers=headers)
    assert_problem(response, 401, detail)


def test_wrong_secret_for_a_real_key_id_is_401(client: TestClient, api_key: str) -> None:
    forged = api_key.rsplit("_", 1)[0] + "_" + "x" * 43
    assert_problem(
        client.post("/v1/purchase-orders", json=order(3), headers=auth(forged)),
        401,
        "the API key is not valid",
    )


def test_revoked_key_is_401(client: TestClient, api_key: str, runtime: Runtime) -> None:
    with runtime.session_factory() as session:
        revoke_agency(session=session, ruc=BUYER_RUC)
    response = client.post("/v1/purchase-orders", json=order(4), headers=auth(api_key))
    assert_problem(response, 401, "the API key has been revoked")


def test_another_buyers_order_is_403(client: TestClient, api_key: str) -> None:
    response = client.post(
        "/v1/purchase-orders", json=order(5, buyer_ruc=OTHER_BUYER_RUC), headers=auth(api_key)
    )
    assert_problem(response, 403, f"records orders of buyer {BUYER_RUC} only")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"total": 5796.99}, "total", "not a number"),
        ({"total": "1.00"}, "(body)", "subtotal + tax"),
        ({"buyer": {"ruc": "20600027427", "name": "X"}}, "buyer.ruc", "check digit"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"issued_at": "2026-01-31T09:57:50"}, "issued_at", "UTC offset"),
        (
            {"supplier": {"ruc": "10412742694", "name": "X" * 100_000}},
            "supplier.name",
            "must be at most 500 characters, not 100000",
        ),
        ({"order_number": ["OCAM-1"]}, "order_number", "must be a string"),
    ],
)
def test_invalid_order_is_422_naming_the_field(
    client: TestClient, api_key: str, change: dict[str, Any], field: str, message: str
) -> None:
    response = client.post(
        "/v1/purchase-orders", json={**order(6), **change}, headers=auth(api_key)
    )
    problem = assert_problem(response, 422, message)
    assert any(e["field"] == field and message in e["message"] for e in problem["errors"]), problem


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b'{"order_number": "A", "order_number": "B"}', 400, "duplicate key 'order_number'"),
        (b'{"total": NaN}', 400, "NaN is not valid JSON"),
        (b'{"order_number": "\xff"}', 400, "not valid UTF-8"),
        (b"[" * 200 + b"]" * 200, 400, "nested deeper than 64 levels"),
        (b"{", 400, "invalid JSON"),
    ],
)
def test_malformed_json_is_400(
    client: TestClient, api_key: str, body: bytes, status: int, detail: str
) -> None:
    response = client.post(
        "/v1/purchase-orders",
        content=body,
        headers={**auth(api_key), "Content-Type": "application/json"},
    )
    assert_problem(response, status, detail)


def test_non_json_content_type_is_415(client: TestClient, api_key: str) -> None:
    response = client.post(
        "/v1/purchase-orders",
        content=b"order=1",
        headers={**auth(api_key), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 415, "send JSON with Content-Type: application/json")


def test_oversized_body_is_413_and_records_nothing(
    make_settings: Any, api_key: str, runtime: Runtime
) -> None:
    from app.main import create_app

    small = Runtime.create(make_settings(max_body_bytes=2048))
    with TestClient(create_app(runtime=small)) as small_client:
        big = order(7, framework_agreement="X" * 4000)
        response = small_client.post("/v1/purchase-orders", json=big, headers=auth(api_key))
        assert_problem(response, 413, "limit")
        assert small_client.get("/v1/purchase-orders").json()["items"] == []


# -- bulk ----------------------------------------------------------------------------


def _outcome_counters() -> dict[str, float]:
    from prometheus_client import REGISTRY

    counters = {"accepted": REGISTRY.get_sample_value("ancla_records_accepted_total") or 0.0}
    for reason in ("invalid", "forbidden", "conflict"):
        counters[reason] = (
            REGISTRY.get_sample_value("ancla_records_rejected_total", {"reason": reason}) or 0.0
        )
    return counters


def test_bulk_reports_each_item(client: TestClient, api_key: str) -> None:
    client.post("/v1/purchase-orders", json=order(10), headers=auth(api_key))
    items = [
        order(10),  # exists
        order(11),  # created
        order(12, total="0.01"),  # invalid
        order(13, buyer_ruc=OTHER_BUYER_RUC),  # forbidden
        order(10, status="ANULADA"),  # conflict with the stored one
        order(11),  # identical to an earlier item of this request
        order(14, status="ANULADA"),
        order(14),  # conflicts with an earlier item of this request
    ]
    before = _outcome_counters()
    response = client.post(
        "/v1/purchase-orders/bulk", json={"purchase_orders": items}, headers=auth(api_key)
    )
    assert response.status_code == 200, response.text
    # /metrics counts each item's outcome ("exists" is neither accepted nor refused).
    after = _outcome_counters()
    assert {k: after[k] - before[k] for k in after} == {
        "accepted": 2,
        "invalid": 1,
        "forbidden": 1,
        "conflict": 2,
    }
    results = response.json()["results"]
    assert [r["status"] for r in results] == [200, 202, 422, 403, 409, 200, 202, 409]
    assert [r["index"] for r in results] == list(range(8))
    assert results[2]["errors"][0]["field"] == "(order)"
    assert response.json()["summary"] == {
        "exists": 2,
        "created": 2,
        "invalid": 1,
        "forbidden": 1,
        "conflict": 2,
    }
    listed = client.get("/v1/purchase-orders", params={"buyer": BUYER_RUC}).json()["items"]
    assert sorted(i["order_number"] for i in listed) == sorted(
        order(i)["order_number"] for i in (10, 11, 14)
    )


def test_bulk_limits(client: TestClient, api_key: str) -> None:
    too_many = {"purchase_orders": [{}] * 10_001}
    response = client.post("/v1/purchase-orders/bulk", json=too_many, headers=auth(api_key))
    assert_problem(response, 422, "at most 10000 items")
    response = client.post("/v1/purchase-orders/bulk", json={"orders": []}, headers=auth(api_key))
    assert_problem(response, 422, "purchase_orders: Field required")
    response = client.post("/v1/purchase-orders/bulk", json={"purchase_orders": [order(1)]})
    assert_problem(response, 401, "an API key is required")


# -- reads -----------------------------------------------------------------------------


def test_list_filters_and_cursor(client: TestClient, api_key: str) -> None:
    hashes = []
    for i in range(5):
        hashes.append(
            client.post("/v1/purchase-orders", json=order(20 + i), headers=auth(api_key)).json()[
                "hash"
            ]
        )
    first = client.get("/v1/purchase-orders", params={"limit": 2}).json()
    assert [i["hash"] for i in first["items"]] == hashes[:2]
    second = client.get(
        "/v1/purchase-orders", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [i["hash"] for i in second["items"]] == hashes[2:4]
    third = client.get(
        "/v1/purchase-orders", params={"limit": 2, "cursor": second["next_cursor"]}
    ).json()
    assert [i["hash"] for i in third["items"]] == hashes[4:] and third["next_cursor"] is None
    by_supplier = client.get("/v1/purchase-orders", params={"supplier": "10412742694"}).json()
    assert len(by_supplier["items"]) == 5
    assert (
        client.get("/v1/purchase-orders", params={"supplier": "20611694629"}).json()["items"] == []
    )
    # The example orders are issued 2026-01-31 09:57 in Peru (14:57 UTC).
    day = client.get(
        "/v1/purchase-orders", params={"issued_from": "2026-01-31", "issued_to": "2026-01-31"}
    ).json()
    assert len(day["items"]) == 5
    assert (
        client.get("/v1/purchase-orders", params={"issued_from": "2026-02-01"}).json()["items"]
        == []
    )


def _issued(day: int, hour: int) -> str:
    return f"2026-01-{day:02d}T{hour:02d}:00:00-05:00"


def _pages(client: TestClient, params: dict[str, Any]) -> list[str]:
    """Every order number of a list, following next_cursor two at a time."""
    numbers: list[str] = []
    cursor = None
    while True:
        page = client.get(
            "/v1/purchase-orders",
            params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})},
        )
        assert page.status_code == 200, page.text
        body = page.json()
        numbers += [item["order_number"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return numbers


def test_filtered_lists_are_in_order_of_issue_and_the_whole_list_in_order_of_acceptance(
    client: TestClient, api_key: str
) -> None:
    # Accepted in this order; issued out of order, with ties on issued_at.
    issued = [(5, 9), (3, 9), (5, 9), (4, 12), (3, 9), (6, 8), (4, 12)]
    numbers = []
    for i, (day, hour) in enumerate(issued):
        posted = order(100 + i, issued_at=_issued(day, hour))
        response = client.post("/v1/purchase-orders", json=posted, headers=auth(api_key))
        assert response.status_code == 202, response.text
        numbers.append(posted["order_number"])
    # sorted() is stable: ties on issued_at stay in order of acceptance.
    ranked = sorted(zip(issued, numbers, strict=True), key=lambda pair: pair[0])
    by_issue = [number for _, number in ranked]
    assert by_issue != numbers  # the two orders differ, so the test tells them apart
    assert _pages(client, {}) == numbers
    assert _pages(client, {"buyer": BUYER_RUC}) == by_issue
    assert _pages(client, {"supplier": order()["supplier"]["ruc"]}) == by_issue
    assert _pages(client, {"issued_from": "2026-01-04"}) == [
        number for (day, _), number in ranked if day >= 4
    ]
    # A cursor continues the list it came from, not another one.
    unfiltered = client.get("/v1/purchase-orders", params={"limit": 2}).json()["next_cursor"]
    filtered = client.get("/v1/purchase-orders", params={"limit": 2, "buyer": BUYER_RUC}).json()[
        "next_cursor"
    ]
    mixed = [
        {"buyer": BUYER_RUC, "cursor": unfiltered},
        {"cursor": filtered},
    ]
    for params in mixed:
        assert_problem(
            client.get("/v1/purchase-orders", params=params),
            422,
            "cursor is not one this service issued for this list",
        )


def test_a_filtered_page_is_one_index_range_not_a_scan_or_a_sort(
    client: TestClient, runtime: Runtime
) -> None:
    """At 1,000,000 records two days of orders took 405 ms in id order (the
    planner walked the primary key); along (issued_at, id) a page is read in
    order from the index and the read stops at the page's end."""
    orders = [
        order(
            2000 + i,
            issued_at=_issued(1 + i % 28, 8 + i % 10),
            supplier={"ruc": valid_ruc("20", f"{i % 300:08d}"), "name": "PROVEEDOR"},
        )
        for i in range(3000)
    ]
    with runtime.session_factory() as session:
        results = record_items(
            session=session, agency=None, schema=SCHEMA, items=parse_items(SCHEMA, orders)
        )
    assert {r.outcome for r in results} == {"created"}
    dialect = runtime.engine.dialect.name
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM records" in statement:
            statements.append((statement, parameters))

    filters = [
        ({"issued_from": "2026-01-10", "issued_to": "2026-01-11"}, "ix_records_issued"),
        ({"buyer": BUYER_RUC, "issued_from": "2026-01-10"}, "ix_records_buyer_issued"),
        ({"supplier": valid_ruc("20", f"{7:08d}")}, "ix_records_supplier_issued"),
    ]
    for params, index in filters:
        statements.clear()
        event.listen(runtime.engine, "before_cursor_execute", seen)
        try:
            page = client.get("/v1/purchase-orders", params={**params, "limit": 5})
        finally:
            event.remove(runtime.engine, "before_cursor_execute", seen)
        assert page.status_code == 200 and len(page.json()["items"]) == 5
        ((statement, parameters),) = statements
        with runtime.engine.connect() as connection:
            if dialect == "postgresql":
                connection.exec_driver_sql("ANALYZE records")
                plan = "\n".join(
                    row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
                )
                assert f"Index Scan using {index} on records" in plan, plan
                assert "Sort" not in plan, plan
            else:
                plan = "\n".join(
                    row[-1]
                    for row in connection.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + statement, parameters
                    )
                )
                assert f"USING INDEX {index}" in plan, plan
                assert "TEMP B-TREE" not in plan, plan


def test_list_reads_query_columns_not_records_bytes(
    client: TestClient, api_key: str, runtime: Runtime
) -> None:
    client.post("/v1/purchase-orders", json=order(80), headers=auth(api_key))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", seen)
    try:
        items = client.get("/v1/purchase-orders").json()["items"]
    finally:
        event.remove(runtime.engine, "before_cursor_execute", seen)
    assert [i["order_number"] for i in items] == [order(80)["order_number"]]
    listing = [s for s in statements if "FROM records" in s]
    assert listing and all(
        "records.canonical" not in s and "batch_entries.proof" not in s for s in listing
    )


def _cursor(**position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"cursor": "garbage"}, "cursor is not one this service issued"),
        # Well-formed, but not a time the database can hold, or not a time at all.
        *(
            ({"buyer": BUYER_RUC, "cursor": _cursor(after=1, issued=issued)}, "cursor is not one")
            for issued in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", 7, None)
        ),
        ({"buyer": BUYER_RUC, "cursor": _cursor(after=1)}, "cursor is not one"),
        ({"cursor": _cursor(after=True)}, "cursor is not one"),
        ({"limit": 0}, "limit"),
        ({"buyer": "123"}, "buyer"),
        ({"issued_from": "yesterday"}, "issued_from"),
        ({"issued_from": "2026-02-02", "issued_to": "2026-02-01"}, "issued_from is after"),
    ],
)
def test_list_rejects_bad_parameters(
    client: TestClient, params: dict[str, Any], detail: str
) -> None:
    assert_problem(client.get("/v1/purchase-orders", params=params), 422, detail)


def test_get_order_with_history(client: TestClient, api_key: str) -> None:
    posted = order(30, order_number="OC/2026/30")
    created = client.post("/v1/purchase-orders", json=posted, headers=auth(api_key)).json()
    response = client.get(f"/v1/purchase-orders/{BUYER_RUC}/OC/2026/30")
    assert response.status_code == 200
    body = response.json()
    assert body["hash"] == created["hash"]
    assert body["purchase_order"]["order_number"] == "OC/2026/30"
    assert body["status"] == "pending"
    assert [h["hash"] for h in body["history"]] == [created["hash"]]
    assert_problem(client.get(f"/v1/purchase-orders/{BUYER_RUC}/NOPE"), 404, "no purchase order")


def test_receipt_pending_then_final(client: TestClient, api_key: str, runtime: Runtime) -> None:
    created = client.post("/v1/purchase-orders", json=order(40), headers=auth(api_key)).json()
    pending = client.get(f"/v1/receipts/{created['hash']}").json()
    assert pending == {
        "receipt_version": 1,
        "hash": created["hash"],
        "status": "pending",
        "merkle": None,
        "batch": None,
        "anchor": None,
    }
    anchor_all(runtime)
    final = client.get(f"/v1/receipts/{created['hash']}").json()
    assert final["status"] == "final"
    assert final["batch"] == {"id": 1, "size": 1}
    assert final["anchor"]["contract"] == runtime.settings.contract_address
    assert (
        client.get(f"/v1/purchase-orders/{BUYER_RUC}/{order(40)['order_number']}").json()["status"]
        == "final"
    )


def test_receipt_and_record_are_one_statement_outside_a_transaction(
    client: TestClient, api_key: str, runtime: Runtime
) -> None:
    """Lookups by hash are the reads auditors make most: one statement each and,
    on PostgreSQL, no BEGIN/ROLLBACK round trips around it (autocommit)."""
    created = client.post("/v1/purchase-orders", json=order(41), headers=auth(api_key)).json()
    anchor_all(runtime)
    seen: list[tuple[str, str | None]] = []

    def statement(conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        # psycopg: INTRANS once a transaction was begun for this statement.
        status = dbapi.info.transaction_status.name if hasattr(dbapi, "info") else None
        seen.append((text, status))

    event.listen(runtime.read_engine, "after_cursor_execute", statement)
    try:
        receipt = client.get(f"/v1/receipts/{created['hash']}").json()
        record = client.get(f"/v1/records/{created['hash']}")
    finally:
        event.remove(runtime.read_engine, "after_cursor_execute", statement)
    assert receipt["status"] == "final"
    assert receipt["anchor"]["contract"] == runtime.settings.contract_address
    assert record.status_code == 200
    assert [text.split()[0] for text, _ in seen] == ["SELECT", "SELECT"]
    assert "chain_target" in seen[0][0]
    if runtime.engine.dialect.name == "postgresql":
        assert runtime.read_engine is not runtime.engine
        assert [status for _, status in seen] == ["IDLE", "IDLE"]


@pytest.mark.parametrize("path", ["/v1/receipts/{h}", "/v1/records/{h}"])
def test_unknown_and_malformed_hashes(client: TestClient, path: str) -> None:
    assert_problem(client.get(path.format(h="0x" + "ab" * 32)), 404, "no record with hash")
    assert_problem(client.get(path.format(h="0xABC")), 422, "must be 0x followed by 64")


# -- verify ----------------------------------------------------------------------------


def test_verify_by_hash_and_by_receipt(client: TestClient, api_key: str, runtime: Runtime) -> None:
    created = client.post("/v1/purchase-orders", json=order(50), headers=auth(api_key)).json()
    anchor_all(runtime)
    by_hash = client.post("/v1/verify", json={"hash": created["hash"]}).json()
    assert by_hash["valid"] is True and by_hash["steps"][0]["step"] == "record"
    receipt = client.get(f"/v1/receipts/{created['hash']}").json()
    record = json.loads(client.get(f"/v1/records/{created['hash']}").content)
    good = client.post("/v1/verify", json={"receipt": receipt, "record": record}).json()
    assert good["valid"] is True
    other = {**record, "purchase_order": {**record["purchase_order"], "total": "1.00"}}
    bad = client.post("/v1/verify", json={"receipt": receipt, "record": other}).json()
    assert bad["valid"] is False and bad["failed_step"] == "record"


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({}, 422, "give either receipt"),
        ({"hash": "0x12"}, 422, "record hash must be 0x"),
        ({"hash": "0x" + "ab" * 32}, 404, "no record with hash"),
        ({"receipt": {"receipt_version": 1}}, 422, "invalid receipt"),
        ({"receipt": {}, "hash": "0x" + "ab" * 32}, 422, "give either receipt"),
        ({"hash": "0x" + "ab" * 32, "confirmations": 0}, 422, "confirmations"),
        ({"hash": "0x" + "ab" * 32, "extra": 1}, 422, "Extra inputs are not permitted"),
        (
            {
                "receipt": {
                    "receipt_version": 1,
                    "hash": "0x" + "ab" * 32,
                    "status": "pending",
                    "merkle": None,
                    "batch": None,
                    "anchor": None,
                },
                "record": {"purchase_order": {}},
            },
            422,
            'a record must have a non-empty string member "schema"',
        ),
    ],
)
def test_verify_rejects_bad_requests(
    client: TestClient, body: dict[str, Any], status: int, detail: str
) -> None:
    assert_problem(client.post("/v1/verify", json=body), status, detail)


# -- batches ---------------------------------------------------------------------------


def test_batches_and_tree_dump(client: TestClient, api_key: str, runtime: Runtime) -> None:
    for i in range(3):
        client.post("/v1/purchase-orders", json=order(60 + i), headers=auth(api_key))
    anchor_all(runtime)
    listed = client.get("/v1/batches").json()
    assert [b["id"] for b in listed["items"]] == [1]
    batch = client.get("/v1/batches/1").json()
    assert batch["status"] == "final" and batch["size"] == 3
    assert batch["anchor"]["tx_hash"].startswith("0x")
    dump = client.get("/v1/batches/1/tree").json()
    assert dump["format"] == "standard-v1" and dump["tree"][0] == batch["root"]
    assert_problem(client.get("/v1/batches/2"), 404, "no batch 2")
    assert_problem(client.get("/v1/batches/2/tree"), 404, "no batch 2")
    assert_problem(client.get("/v1/batches/0"), 422, "batch_id")
    assert_problem(client.get("/v1/batches", params={"limit": 1000}), 422, "limit")


def test_a_batchs_records_stream_as_ndjson_in_tree_order(
    client: TestClient, api_key: str, runtime: Runtime
) -> None:
    hashes = [
        client.post("/v1/purchase-orders", json=order(80 + i), headers=auth(api_key)).json()["hash"]
        for i in range(5)
    ]
    anchor_all(runtime)
    dump = client.get("/v1/batches/1/tree").json()
    response = client.get("/v1/batches/1/records")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = response.content.split(b"\n")
    assert lines.pop() == b""  # every line ends with its newline
    # Line i is value i of the tree, as recorded: its bytes hash to it.
    assert [record_hash(json.loads(line)) for line in lines] == [
        v["value"][0] for v in dump["values"]
    ]
    assert sorted(v["value"][0] for v in dump["values"]) == sorted(hashes)
    for line in lines:
        assert client.get(f"/v1/records/{record_hash(json.loads(line))}").content == line
    assert_problem(client.get("/v1/batches/2/records"), 404, "no batch 2")
    assert_problem(client.get("/v1/batches/0/records"), 422, "batch_id")


# -- operations ------------------------------------------------------------------------


def test_health_ready_metrics(client: TestClient, api_key: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    client.post("/v1/purchase-orders", json=order(70), headers=auth(api_key))
    metrics = client.get("/metrics").text
    for name in (
        "ancla_records_accepted_total",
        "ancla_batches_sealed_total",
        "ancla_batches_anchored_total",
        "ancla_batches_final_total",
        "ancla_anchor_latency_seconds",
        "ancla_rpc_errors_total",
    ):
        assert name in metrics
    assert api_key not in metrics


def test_readyz_is_503_when_the_chain_is_down(make_settings: Any) -> None:
    from app.main import create_app
    from tests.support.hardhat import free_port

    down = Runtime.create(make_settings(rpc_url=f"http://127.0.0.1:{free_port()}"))
    with TestClient(create_app(runtime=down)) as down_client:
        response = down_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["chain"]["ok"] is False
    assert "unreachable" in response.json()["checks"]["chain"]["error"]


def test_unknown_route_is_problem_json(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404, "Not Found")
    assert_problem(client.delete("/v1/purchase-orders"), 405, "Method Not Allowed")


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/purchase-orders",
        "/v1/purchase-orders/bulk",
        "/v1/purchase-orders/{buyer_ruc}/{order_number}",
        "/v1/records/{record_hash}",
        "/v1/receipts/{record_hash}",
        "/v1/verify",
        "/v1/batches",
        "/v1/batches/{batch_id}",
        "/v1/batches/{batch_id}/tree",
        "/v1/batches/{batch_id}/records",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    assert client.get("/docs").status_code == 200
