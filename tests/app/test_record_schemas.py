"""Record schemas are plug-ins: a schema only this test knows is recorded, anchored,
served, listed and audited by the generic parts, unchanged (app.records.registry)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError
from sqlalchemy import update

from app.models import Record
from app.records.purchase_order import SCHEMA as PURCHASE_ORDER
from app.records.registry import (
    RecordColumns,
    RecordSchema,
    UnknownSchema,
    register,
    registered,
    schema_named,
    unregister,
)
from app.records.vocabulary import STRICT, Name, Ruc
from app.runtime import Runtime
from app.services.ingest import parse_items, record_items
from app.services.orders import ListFilters, list_records
from ledger import Receipt, record_hash, verify_receipt
from tests.support.orders import BUYER_RUC, order
from tests.support.services import audit, ensure_agency

pytestmark = [pytest.mark.db, pytest.mark.chain]

NOTE_SCHEMA = "ancla-test/note/1"


class Note(BaseModel):
    """A schema of this test's own: a buyer's numbered note."""

    model_config = STRICT

    buyer_ruc: Ruc
    number: Name
    text: Name

    def record(self) -> dict[str, Any]:
        return {"schema": NOTE_SCHEMA, "note": self.model_dump(mode="json")}


def _note(data: object) -> Note:
    return Note.model_validate(data)


def _columns(record: Mapping[str, Any]) -> RecordColumns:
    note = record["note"]
    return RecordColumns(
        buyer_ruc=note["buyer_ruc"],
        order_number=note["number"],
        identity=f"{note['buyer_ruc']}/{note['number']}",
    )


NOTES = RecordSchema(
    name=NOTE_SCHEMA,
    noun="note",
    plural="notes",
    parse=_note,
    columns=_columns,
    describe=lambda columns: f"note {columns.order_number} of buyer {columns.buyer_ruc}",
)


@pytest.fixture
def notes() -> Iterator[RecordSchema]:
    register(NOTES)
    yield NOTES
    unregister(NOTE_SCHEMA)


def note(number: int, text: str = "acta de conformidad") -> dict[str, Any]:
    return {"buyer_ruc": BUYER_RUC, "number": f"N-{number}", "text": text}


def record_notes(runtime: Runtime, items: list[dict[str, Any]]) -> list[Any]:
    agency = ensure_agency(runtime.session_factory)
    with runtime.session_factory() as session:
        return record_items(
            session=session, agency=agency, schema=NOTES, items=parse_items(NOTES, items)
        )


def test_the_registry_knows_the_purchase_order_and_refuses_a_second_schema_of_its_name(
    notes: RecordSchema,
) -> None:
    assert schema_named(PURCHASE_ORDER.name) is PURCHASE_ORDER
    assert {s.name for s in registered()} >= {PURCHASE_ORDER.name, NOTE_SCHEMA}
    with pytest.raises(ValueError, match="already registered"):
        register(RecordSchema(**{**NOTES.__dict__, "noun": "other"}))
    with pytest.raises(UnknownSchema, match="no record schema 'ancla-test/none/1'"):
        schema_named("ancla-test/none/1")


def test_a_new_schema_is_recorded_anchored_served_listed_and_audited(
    notes: RecordSchema, runtime: Runtime, client: TestClient, rpc_url: str
) -> None:
    created, same, conflict, invalid = record_notes(
        runtime,
        [note(1), note(1), note(1, text="otra cosa"), {**note(2), "extra": "x"}],
    )
    assert (created.outcome, same.outcome, same.hash) == ("created", "exists", created.hash)
    assert conflict.outcome == "conflict" and conflict.existing_hash == created.hash
    assert conflict.detail.startswith(f"note N-1 of buyer {BUYER_RUC} is already recorded")
    assert invalid.outcome == "invalid" and invalid.errors[0]["field"] == "extra"
    assert created.hash == record_hash(Note.model_validate(note(1)).record())

    # A purchase order beside it, in the same batch.
    with runtime.session_factory() as session:
        posted = record_items(
            session=session,
            agency=None,
            schema=PURCHASE_ORDER,
            items=parse_items(PURCHASE_ORDER, [order(1)]),
        )
    assert posted[0].outcome == "created"
    runtime.make_worker().tick(force_seal=True)

    stored = client.get(f"/v1/records/{created.hash}")
    assert stored.status_code == 200
    record = json.loads(stored.content)
    assert record == {"schema": NOTE_SCHEMA, "note": note(1)}
    receipt = client.get(f"/v1/receipts/{created.hash}").json()
    assert receipt["status"] == "final" and receipt["batch"]["size"] == 2
    report = verify_receipt(Receipt.from_json(receipt), record, rpc_url=rpc_url)
    assert report.ok

    with runtime.session_factory() as session:
        listed = list_records(
            session=session,
            schema=NOTE_SCHEMA,
            genesis=None,
            filters=ListFilters(buyer=BUYER_RUC),
            limit=10,
        )
    assert [(i["hash"], i["order_number"], i["status"]) for i in listed["items"]] == [
        (created.hash, "N-1", "final")
    ]
    assert client.get("/v1/purchase-orders").json()["items"][0]["hash"] == posted[0].hash

    assert audit(runtime).ok, audit(runtime).to_dict()


def test_the_audit_derives_a_new_schemas_columns_from_its_bytes(
    notes: RecordSchema, runtime: Runtime
) -> None:
    (created,) = record_notes(runtime, [note(3)])
    runtime.make_worker().tick(force_seal=True)
    with runtime.session_factory() as session:
        session.execute(
            update(Record).where(Record.hash == created.hash).values(identity=f"{BUYER_RUC}/N-9")
        )
        session.commit()
    report = audit(runtime)
    assert [(d.kind, d.record_hash, d.expected, d.actual) for d in report.discrepancies] == [
        ("derived_mismatch", created.hash, f"{BUYER_RUC}/N-3", f"{BUYER_RUC}/N-9")
    ]


def test_a_record_of_a_schema_nobody_registered_is_reported(
    notes: RecordSchema, runtime: Runtime
) -> None:
    (created,) = record_notes(runtime, [note(4)])
    unregister(NOTE_SCHEMA)
    report = audit(runtime)
    assert [(d.kind, d.record_hash, d.actual) for d in report.discrepancies] == [
        ("derived_mismatch", created.hash, f"no record schema {NOTE_SCHEMA!r} is registered")
    ]


def test_a_schemas_validation_errors_are_reported_per_field(notes: RecordSchema) -> None:
    (parsed,) = parse_items(NOTES, [{"buyer_ruc": 20600027426, "number": "N-1", "text": " x"}])
    assert isinstance(parsed, ValidationError)
    fields = {error["loc"][0] for error in parsed.errors()}
    assert fields == {"buyer_ruc", "text"}
