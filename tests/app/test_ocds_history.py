"""Order histories in OCDS (issue 16, item 8): one release per record, each with its
record's proof, and record packages whose compiled and versioned releases are the
OCDS merge of them (ocdsmerge), all valid offline against the 1.1.5 schemas."""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ocdsmerge import Merger

from app.opendata import export, mapping, packages
from app.records.order_event import parse_event
from app.records.purchase_order import PURCHASE_ORDER_EXAMPLE, PurchaseOrder
from app.runtime import Runtime
from ledger.canonical import record_hash
from tests.app.test_ocds import PACKAGE, VECTORS, assert_valid, errors_of
from tests.app.test_order_history import History, key_of
from tests.support.orders import BUYER_RUC, order

ORDER = copy.deepcopy(PURCHASE_ORDER_EXAMPLE)  # status ACEPTADA, 3 items, 1 document
NUMBER = ORDER["order_number"]
OCID = f"ocds-ancla0-{BUYER_RUC}-{NUMBER}"
# 200 packs of paper instead of 150: 4980.00 + 850.00 + 327.70.
AMENDED = copy.deepcopy(ORDER)
AMENDED["items"][0]["quantity"] = "200"
AMENDED.update(subtotal="6157.70", tax="1108.39", total="7266.09")
ACTA = b"%PDF-1.7 acta de conformidad\n" * 50
INFORME = b"%PDF-1.7 informe de conformidad firmado\n" * 80
ACTA_URL = "https://example.gob.pe/actas/acta de conformidad.pdf"  # a space: escaped in OCDS
INVOICE = {
    "number": "E001-123",
    "issued_at": "2026-02-11T09:00:00-05:00",
    "amount": "7266.09",
    "currency": "PEN",
}
BOUND = {
    "title": "Informe de conformidad firmado",
    "document_type": "completionCertificate",
    "media_type": "application/pdf",
    "size": len(INFORME),
    "sha256": hashlib.sha256(INFORME).hexdigest(),
    "url": "https://example.gob.pe/informe.pdf",
}
# (type, occurred_at, members): the order's whole life after it was issued.
STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("accepted", "2026-02-01T10:00:00-05:00", {"note": "Aceptada"}),
    (
        "amended",
        "2026-02-02T10:00:00-05:00",
        {"purchase_order": AMENDED, "rationale": "Se amplía a 200 paquetes de papel"},
    ),
    (
        "delivered",
        "2026-02-10T16:00:00-05:00",
        {
            "note": "Conformidad del área usuaria",
            "documents": [
                {
                    "title": "Acta de conformidad",
                    "url": ACTA_URL,
                    "sha256": hashlib.sha256(ACTA).hexdigest(),
                }
            ],
        },
    ),
    ("invoiced", "2026-02-11T09:00:00-05:00", {"invoice": INVOICE}),
    (
        "paid",
        "2026-03-02T11:20:00-05:00",
        {"payment": {"amount": "5000.00", "currency": "PEN", "reference": "SIAF 2026-0001234"}},
    ),
    ("paid", "2026-03-09T11:20:00-05:00", {"payment": {"amount": "2266.09", "currency": "PEN"}}),
    (
        "status",
        "2026-03-10T08:00:00-05:00",
        {
            "status": "ENTREGADA",
            "documents": [{"title": "Reporte mensual", "url": "https://example.gob.pe/r.pdf"}],
        },
    ),
    ("document", "2026-03-11T12:00:00-05:00", {"document": BOUND}),
    ("cancelled", "2026-03-20T09:00:00-05:00", {"rationale": "Resolución por incumplimiento"}),
]
# An order cancelled before the supplier accepted it.
UNACCEPTED = order(7, status="PUBLICADA")
UNACCEPTED_CANCELLED = ("cancelled", "2026-02-03T10:00:00-05:00", {"rationale": "Desistimiento"})

BUYER_REF = {"id": f"PE-RUC-{BUYER_RUC}", "name": ORDER["buyer"]["name"]}
SUPPLIER_REF = {"id": f"PE-RUC-{ORDER['supplier']['ruc']}", "name": ORDER["supplier"]["name"]}


def recorded_history(
    posted: dict[str, Any], steps: list[tuple[str, str, dict[str, Any]]]
) -> list[tuple[dict[str, Any], str]]:
    """An order's records and hashes as ingest would make them, with no database."""
    first = PurchaseOrder.model_validate(posted).to_record()
    history = [(first, record_hash(first))]
    for kind, occurred_at, members in steps:
        body = {
            "buyer_ruc": posted["buyer"]["ruc"],
            "order_number": posted["order_number"],
            "prev": history[-1][1],
            "type": kind,
            "occurred_at": occurred_at,
            **members,
        }
        record = parse_event(body).record()
        history.append((record, record_hash(record)))
    return history


def proven(history: list[tuple[dict[str, Any], str]]) -> list[mapping.ProvenRecord]:
    return [
        mapping.ProvenRecord(
            record=record,
            record_hash=digest,
            receipt_url=f"https://ancla.example/v1/receipts/{digest}",
            record_url=f"https://ancla.example/v1/records/{digest}",
            status="pending",
        )
        for record, digest in history
    ]


def releases_of(
    posted: dict[str, Any], steps: list[tuple[str, str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    return list(mapping.history_releases(proven(recorded_history(posted, steps))))


# --- the whole life of an order, through the API -----------------------------------------


@pytest.mark.db
@pytest.mark.chain
def test_an_orders_history_is_one_release_per_record(runtime: Runtime, client: TestClient) -> None:
    key = key_of(runtime)
    history = History(client, key, ORDER)
    for kind, occurred_at, members in STEPS[:-1]:
        appended = history.append(kind, occurred_at, **members)
        assert appended.status_code == 202, appended.text
    unaccepted = History(client, key, UNACCEPTED)
    runtime.make_worker().tick(force_seal=True)
    # Recorded after the batch: these two are pending, every record before is final.
    kind, occurred_at, members = STEPS[-1]
    assert history.append(kind, occurred_at, **members).status_code == 202
    kind, occurred_at, members = UNACCEPTED_CANCELLED
    assert unaccepted.append(kind, occurred_at, **members).status_code == 202
    hashes = history.hashes
    assert len(hashes) == 1 + len(STEPS)

    response = client.get("/v1/export/ocds")
    assert response.status_code == 200, response.text
    package = response.json()
    assert_valid(package, "release-package-schema.json")
    releases = package["releases"]
    # One release per record, its id the record's hash; histories whole, in history order.
    assert [r["id"] for r in releases] == hashes + unaccepted.hashes
    life, other = releases[: len(hashes)], releases[len(hashes) :]
    assert {r["ocid"] for r in life} == {OCID}
    assert {r["ocid"] for r in other} == {f"ocds-ancla0-{BUYER_RUC}-{UNACCEPTED['order_number']}"}
    assert [r["date"] for r in life] == [ORDER["issued_at"]] + [s[1] for s in STEPS]
    assert [r["tag"] for r in life] == [
        ["award", "contract"],
        ["contractUpdate"],
        ["contractAmendment"],
        ["implementation"],
        ["implementationUpdate"],
        ["implementationUpdate"],
        ["implementationUpdate"],
        ["contractUpdate"],
        ["contractUpdate"],
        ["contractTermination"],
    ]
    assert all(r["initiationType"] == "tender" for r in releases)
    assert all(r["contracts"][0]["id"] == r["contracts"][0]["awardID"] == NUMBER for r in life)

    # Every release carries the proof of ITS record, as the receipt says.
    for release in releases:
        digest, proof = release["id"], release["ancla"]
        receipt = client.get(f"/v1/receipts/{digest}").json()
        assert proof["recordHash"] == digest
        assert proof["recordUrl"] == f"http://testserver/v1/records/{digest}"
        assert proof["receiptUrl"] == f"http://testserver/v1/receipts/{digest}"
        assert proof["status"] == receipt["status"]
        if receipt["status"] == "pending":
            assert "batchId" not in proof and "transactionHash" not in proof
        else:
            assert (proof["batchId"], proof["merkleRoot"]) == (
                receipt["batch"]["id"],
                receipt["merkle"]["root"],
            )
            anchor = receipt["anchor"]
            assert (
                proof["chainId"],
                proof["contract"],
                proof["transactionHash"],
                proof["blockNumber"],
            ) == (
                anchor["chain_id"],
                anchor["contract"],
                anchor["tx_hash"],
                anchor["block_number"],
            )
    assert [r["ancla"]["status"] for r in life] == ["final"] * len(STEPS) + ["pending"]
    assert [r["ancla"]["recordSchema"] for r in life] == ["ancla/purchase-order/1"] + [
        "ancla/order-event/1"
    ] * len(STEPS)

    issued, accepted, amended, delivered, invoiced, paid, paid_rest, status, bound, ended = (
        r["contracts"][0] for r in life
    )
    assert issued["value"]["amount"] == 5796.99 and issued["status"] == "active"
    assert accepted == {
        "id": NUMBER,
        "awardID": NUMBER,
        "status": "active",
        "dateSigned": "2026-02-01T10:00:00-05:00",
    }
    assert amended["value"] == {
        "amount": 7266.09,
        "currency": "PEN",
        "amountNet": 6157.7,
        "amountGross": 7266.09,
    }
    assert amended["items"][0]["quantity"] == 200
    assert amended["amendments"] == [
        {
            "id": "2",
            "date": "2026-02-02T10:00:00-05:00",
            "rationale": "Se amplía a 200 paquetes de papel",
            "amendsReleaseID": hashes[1],  # the record before: the acceptance
            "releaseID": hashes[2],  # this record
        }
    ]
    acta = {
        "id": "3-1",
        "title": "Acta de conformidad",
        "url": ACTA_URL.replace(" ", "%20"),
        "sha256": hashlib.sha256(ACTA).hexdigest(),
        "datePublished": "2026-02-10T16:00:00-05:00",
    }
    milestone = {
        "id": "3",
        "type": "delivery",
        "status": "met",
        "dateMet": "2026-02-10T16:00:00-05:00",
        "description": "Conformidad del área usuaria",
        "documents": [acta],
    }
    assert delivered["implementation"] == {"milestones": [milestone]}
    invoice = {
        "id": "E001-123",
        "kind": "invoice",
        "date": "2026-02-11T09:00:00-05:00",
        "value": {"amount": 7266.09, "currency": "PEN"},
        "payer": BUYER_REF,
        "payee": SUPPLIER_REF,
    }
    first_payment = {
        "id": "SIAF 2026-0001234",  # the payment's reference
        "kind": "payment",
        "date": "2026-03-02T11:20:00-05:00",
        "value": {"amount": 5000, "currency": "PEN"},
        "payer": BUYER_REF,
        "payee": SUPPLIER_REF,
    }
    # No reference: the record's position in the history.
    second_payment = {
        "id": "6",
        "kind": "payment",
        "date": "2026-03-09T11:20:00-05:00",
        "value": {"amount": 2266.09, "currency": "PEN"},
        "payer": BUYER_REF,
        "payee": SUPPLIER_REF,
    }
    assert invoiced["implementation"] == {"transactions": [invoice]}
    assert paid["implementation"] == {"transactions": [first_payment]}
    assert paid_rest["implementation"] == {"transactions": [second_payment]}
    report = {
        "id": "7-1",
        "title": "Reporte mensual",
        "url": "https://example.gob.pe/r.pdf",
        "datePublished": "2026-03-10T08:00:00-05:00",
    }
    # ENTREGADA maps to active; the state as Perú Compras writes it stays in statusDetails.
    assert status == {
        "id": NUMBER,
        "awardID": NUMBER,
        "status": "active",
        "statusDetails": "ENTREGADA",
        "documents": [report],
    }
    document = {
        "id": "8-1",
        "documentType": "completionCertificate",
        "title": BOUND["title"],
        "format": "application/pdf",
        "url": BOUND["url"],
        "datePublished": "2026-03-11T12:00:00-05:00",
        "sha256": BOUND["sha256"],
        "size": len(INFORME),
    }
    assert bound["documents"] == [document]
    cancellation = {
        "id": "9-1",
        "documentType": "cancellationDetails",
        "description": "Resolución por incumplimiento",
        "datePublished": "2026-03-20T09:00:00-05:00",
    }
    # Cancelled once in force (accepted, delivered, paid): the contract was terminated.
    assert ended == {
        "id": NUMBER,
        "awardID": NUMBER,
        "status": "terminated",
        "documents": [cancellation],
    }
    # Never accepted: cancelled, in OCDS's sense too.
    assert other[1]["tag"] == ["contractTermination"]
    assert other[1]["contracts"][0]["status"] == "cancelled"
    assert other[1]["contracts"][0]["documents"][0]["documentType"] == "cancellationDetails"

    # --- the record package: compiled and versioned releases by the OCDS merge rules
    response = client.get("/v1/export/ocds", params={"package": "record"})
    assert response.status_code == 200, response.text
    record_package = response.json()
    assert_valid(record_package, "record-package-schema.json")
    record, other_record = record_package["records"]
    assert record["ocid"] == OCID and record["releases"] == life
    compiled = record["compiledRelease"]
    assert compiled["id"] == f"{OCID}-2026-03-20T09:00:00-05:00"
    assert compiled["tag"] == ["compiled"] and compiled["date"] == "2026-03-20T09:00:00-05:00"
    assert "ancla" not in compiled
    contract = compiled["contracts"][0]
    assert contract["value"] == amended["value"]  # the amended value
    assert [item["quantity"] for item in contract["items"]] == [200, 100, 58]
    assert compiled["awards"][0]["value"] == {"amount": 5796.99, "currency": "PEN"}  # as awarded
    assert contract["status"] == "terminated" and contract["statusDetails"] == "ENTREGADA"
    assert contract["dateSigned"] == "2026-02-01T10:00:00-05:00"  # the acceptance
    assert contract["amendments"] == amended["amendments"]
    assert contract["implementation"] == {
        "milestones": [milestone],
        "transactions": [invoice, first_payment, second_payment],
    }
    assert [d["id"] for d in contract["documents"]] == ["1", "7-1", "8-1", "9-1"]
    assert contract["documents"][1:] == [report, document, cancellation]
    payments = [t for t in contract["implementation"]["transactions"] if t["kind"] == "payment"]
    assert round(sum(t["value"]["amount"] for t in payments), 2) == 7266.09
    # What any OCDS tool compiles from the published releases.
    merger = Merger(schema=packages.merge_schema())
    assert compiled == merger.create_compiled_release(copy.deepcopy(life))
    assert other_record["compiledRelease"]["contracts"][0]["status"] == "cancelled"

    versioned = record["versionedRelease"]
    assert errors_of("versioned-release-validation-schema.json", versioned, extended=False) == []
    assert versioned["ocid"] == OCID
    assert not {"id", "date", "tag", "ancla"} & set(versioned)
    assert versioned == merger.create_versioned_release(copy.deepcopy(life))
    contract = versioned["contracts"][0]
    assert contract["id"] == NUMBER  # ids are not versioned
    assert contract["value"]["amount"] == [
        {
            "releaseID": hashes[0],
            "releaseDate": ORDER["issued_at"],
            "releaseTag": ["award", "contract"],
            "value": 5796.99,
        },
        {
            "releaseID": hashes[2],
            "releaseDate": "2026-02-02T10:00:00-05:00",
            "releaseTag": ["contractAmendment"],
            "value": 7266.09,
        },
    ]
    # A value repeated (active, then active again on acceptance) is one version.
    assert [(v["releaseID"], v["value"]) for v in contract["status"]] == [
        (hashes[0], "active"),
        (hashes[9], "terminated"),
    ]
    transactions = contract["implementation"]["transactions"]
    assert [t["id"] for t in transactions] == ["E001-123", "SIAF 2026-0001234", "6"]
    assert [[v["releaseID"] for v in t["value"]["amount"]] for t in transactions] == [
        [hashes[4]],
        [hashes[5]],
        [hashes[6]],
    ]

    # The dispatcher counts orders whatever the format; CSV stays one row per order.
    for file_format in ("ocds", "ocds-record", "csv"):
        with runtime.session_factory() as session:
            out = io.StringIO(newline="")
            assert export.write_export(out, session=session, format=file_format) == 2
    rows = list(csv.DictReader(io.StringIO(client.get("/v1/export/csv").text)))
    assert [row["hash"] for row in rows] == [hashes[0], unaccepted.hashes[0]]


# --- the mapping alone -------------------------------------------------------------------


@pytest.mark.unit
def test_pure_history_releases_equal_and_validate() -> None:
    releases = releases_of(ORDER, STEPS)
    history = recorded_history(ORDER, STEPS)
    assert [r["id"] for r in releases] == [digest for _, digest in history]
    # The order's own release is release_for's, unchanged by the history.
    first, first_hash = history[0]
    assert releases[0] == mapping.release_for(
        first,
        record_hash=first_hash,
        receipt_url=f"https://ancla.example/v1/receipts/{first_hash}",
        status="pending",
    )
    assert_valid(packages.release_package(releases, PACKAGE), "release-package-schema.json")
    embedded = packages.record_package(releases, PACKAGE)
    assert_valid(embedded, "record-package-schema.json")
    linked = packages.record_package(releases, PACKAGE, release_package_uri=PACKAGE.uri)
    assert_valid(linked, "record-package-schema.json")
    assert [r["url"] for r in linked["records"][0]["releases"]] == [
        f"{PACKAGE.uri}#{r['id']}" for r in releases
    ]
    assert linked["records"][0]["compiledRelease"] == embedded["records"][0]["compiledRelease"]


@pytest.mark.unit
def test_transaction_ids_stay_unique_within_the_contract() -> None:
    again = {"amount": "1.00", "currency": "PEN", "reference": "E001-1"}
    releases = releases_of(
        ORDER,
        [
            (
                "invoiced",
                "2026-02-11T09:00:00-05:00",
                {"invoice": {**INVOICE, "number": "E001-1", "amount": "1.00"}},
            ),
            ("paid", "2026-02-12T09:00:00-05:00", {"payment": again}),
            ("paid", "2026-02-13T09:00:00-05:00", {"payment": again}),
            ("paid", "2026-02-14T09:00:00-05:00", {"payment": {**again, "reference": "5"}}),
            (
                "paid",
                "2026-02-15T09:00:00-05:00",
                {"payment": {"amount": "1.00", "currency": "PEN"}},
            ),
        ],
    )
    ids = [r["contracts"][0]["implementation"]["transactions"][0]["id"] for r in releases[1:]]
    # Two with one id would merge into one: a later one takes its position too.
    assert ids == ["E001-1", "E001-1/2", "E001-1/3", "5", "5/5"]
    compiled = packages.compiled_release(releases)
    assert len(compiled["contracts"][0]["implementation"]["transactions"]) == 5


@pytest.mark.unit
def test_a_status_that_ends_the_contract_and_one_that_is_not_mapped() -> None:
    releases = releases_of(
        UNACCEPTED,
        [
            ("status", "2026-02-01T10:00:00-05:00", {"status": "EN PROCESO DE ENTREGA"}),
            ("status", "2026-02-02T10:00:00-05:00", {"status": "CULMINADA"}),
        ],
    )
    unmapped, ended = (r["contracts"][0] for r in releases[1:])
    assert "status" not in unmapped and unmapped["statusDetails"] == "EN PROCESO DE ENTREGA"
    assert releases[1]["tag"] == ["contractUpdate"]
    assert ended["status"] == "terminated" and releases[2]["tag"] == ["contractTermination"]
    compiled = packages.compiled_release(releases)["contracts"][0]
    assert (compiled["status"], compiled["statusDetails"]) == ("terminated", "CULMINADA")


@pytest.mark.unit
def test_releases_merge_in_date_order() -> None:
    # A source reported the second status late: recorded last, dated before the first.
    releases = releases_of(
        UNACCEPTED,
        [
            ("status", "2026-02-05T10:00:00-05:00", {"status": "ACEPTADA"}),
            ("status", "2026-02-02T10:00:00-05:00", {"status": "PUBLICADA"}),
        ],
    )
    assert [r["contracts"][0]["statusDetails"] for r in releases[1:]] == ["ACEPTADA", "PUBLICADA"]
    compiled = packages.compiled_release(releases)
    # OCDS merges by date: the latest-dated release says the current values.
    assert compiled["contracts"][0]["statusDetails"] == "ACEPTADA"
    assert compiled["date"] == "2026-02-05T10:00:00-05:00"


@pytest.mark.unit
def test_a_history_that_is_not_the_ledgers_is_refused() -> None:
    history = recorded_history(ORDER, STEPS[:3])
    records = proven(history)

    def refused(changed: list[mapping.ProvenRecord], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            list(mapping.history_releases(changed))

    # An event left out: the next one's prev is not the head.
    refused([records[0], records[2]], "does not follow the order's history: prev")
    wrong_hash = dataclasses.replace(records[1], record_hash=records[2].record_hash)
    refused([records[0], wrong_hash], "but the record hashes to")
    extra = copy.deepcopy(history[1][0])
    extra["event"]["x"] = 1
    refused(
        [records[0], dataclasses.replace(records[1], record=extra)],
        "not a valid order event",
    )
    refused([records[0], records[0]], "expected 'ancla/order-event/1'")


# --- merging: ocdsmerge, offline, with the shipped schema ----------------------------------


@pytest.mark.unit
def test_merging_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("merging tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    packages._merger.cache_clear()  # read the schema and its rules again, here
    try:
        releases = releases_of(ORDER, STEPS)
        assert packages.compiled_release(releases)["tag"] == ["compiled"]
        assert packages.versioned_release(releases)["ocid"] == OCID
    finally:
        packages._merger.cache_clear()
    rules = packages.merge_rules()
    assert rules[("ancla",)] == rules[("id",)] == "omitWhenMerged"


@pytest.mark.unit
def test_the_shipped_release_schema_is_the_vendored_one() -> None:
    shipped = packages.RELEASE_SCHEMA_PATH.read_bytes()
    assert shipped == (VECTORS / "release-schema.json").read_bytes()
    # tests/vectors/ocds/SOURCES.md: OCDS 1.1.5's schema/release-schema.json.
    assert hashlib.sha256(shipped).hexdigest() == (
        "fac192e1ccfb061f5164bdb2d64c29e517c0f81661996b97de40cebc55a2c1bc"
    )
    assert json.loads(shipped)["id"].endswith("/1__1__5/release-schema.json")
    assert Path(packages.RELEASE_SCHEMA_PATH).parent == Path(packages.__file__).parent
