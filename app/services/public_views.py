"""The reads of the public pages (DESIGN §9) that no single API call makes.

The pages (app/web/pages.py) build no query: what they show comes from here
and from the services the API uses (orders, receipts, batches, documents),
so a page and the API never disagree about a record's status or content.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from app.models import ANCHORED, FINAL, Batch, BatchEntry, PendingRecord, Record
from app.records.purchase_order import PURCHASE_ORDER_SCHEMA
from app.services.batches import batch_view, get_batch
from app.services.orders import get_order, summary
from app.services.receipts import (
    chain_target,
    get_receipt,
    get_record_bytes,
    parse_hash,
    public_anchor,
    public_status,
    with_batch,
)
from ledger.canonical import parse_json_strict


def ledger_state(*, session: Session, genesis: str | None) -> dict[str, Any]:
    """What the ledger holds: records, batches, pending records, the last anchor and
    the chain and contract batches are anchored on (None before the first anchor)."""
    target = chain_target(session)
    last = session.scalars(
        select(Batch).where(Batch.status.in_((ANCHORED, FINAL))).order_by(Batch.id.desc()).limit(1)
    ).first()
    anchor = public_anchor(last, target, genesis=genesis)
    return {
        "records": session.scalar(select(func.count()).select_from(Record)) or 0,
        "batches": session.scalar(select(func.count()).select_from(Batch)) or 0,
        "pending": session.scalar(select(func.count()).select_from(PendingRecord)) or 0,
        "last_anchor": None
        if anchor is None or last is None
        else {
            "batch_id": last.id,
            "size": last.size,
            "status": public_status(last, target, genesis=genesis),
            "tx_hash": anchor.tx_hash,
            "block_number": anchor.block_number,
            "timestamp": anchor.timestamp,
        },
        "chain": None
        if target is None
        else {
            "chain_id": target.chain_id,
            "contract": target.contract,
            "current": genesis is None or genesis == target.genesis_hash,
        },
    }


def latest_orders(
    *, session: Session, genesis: str | None, limit: int = 10
) -> list[dict[str, Any]]:
    """The purchase orders recorded last, newest first (list_records' summaries)."""
    rows = session.execute(
        with_batch(select(Record, Batch))
        .options(defer(Record.canonical))
        .where(Record.schema == PURCHASE_ORDER_SCHEMA)
        .order_by(Record.id.desc())
        .limit(limit)
    ).all()
    target = chain_target(session)
    return [
        summary(record, public_status(batch, target, genesis=genesis)) for record, batch in rows
    ]


def order_page(
    *, session: Session, buyer_ruc: str, order_number: str, genesis: str | None
) -> dict[str, Any]:
    """:func:`app.services.orders.get_order`, with each later record's event as recorded
    (``events``: hash -> the record's ``event`` member), for the timeline."""
    order = get_order(
        session=session, buyer_ruc=buyer_ruc, order_number=order_number, genesis=genesis
    )
    later = [entry["hash"] for entry in order["history"][1:]]
    events: dict[str, Any] = {}
    if later:
        for record_hash, canonical in session.execute(
            select(Record.hash, Record.canonical).where(Record.hash.in_(later))
        ):
            events[record_hash] = parse_json_strict(canonical).get("event")
    return {**order, "events": events}


def record_page(*, session: Session, record_hash: str, genesis: str | None) -> dict[str, Any]:
    """One record: its bytes as recorded (and parsed), its receipt, its order and batch."""
    record_hash = parse_hash(record_hash)
    canonical = get_record_bytes(session=session, record_hash=record_hash)
    receipt = get_receipt(session=session, record_hash=record_hash, genesis=genesis)
    row = session.execute(
        with_batch(select(Record.schema, Record.buyer_ruc, Record.order_number, Batch.id)).where(
            Record.hash == record_hash
        )
    ).one()
    return {
        "hash": record_hash,
        "schema": row.schema,
        "canonical": canonical.decode("utf-8", "replace"),
        "record": parse_json_strict(canonical),
        "receipt": receipt.to_dict(),
        "status": receipt.status,
        "batch_id": row.id,
        "order": None
        if row.buyer_ruc is None or row.order_number is None
        else {"buyer_ruc": row.buyer_ruc, "order_number": row.order_number},
    }


def batch_page(
    *, session: Session, batch_id: int, genesis: str | None, start: int = 0, limit: int = 100
) -> dict[str, Any]:
    """One batch (its view, public status) and ``limit`` of its records from position
    ``start``, in tree order; ``next_start`` continues the list."""
    batch = get_batch(session=session, batch_id=batch_id)
    target = chain_target(session)
    rows = session.execute(
        select(BatchEntry.position, Record.hash, Record.schema, Record.buyer_ruc)
        .add_columns(Record.order_number)
        .join(Record, Record.id == BatchEntry.record_id)
        .where(BatchEntry.batch_id == batch_id, BatchEntry.position >= start)
        .order_by(BatchEntry.position)
        .limit(limit + 1)
    ).all()
    return {
        **batch_view(batch),
        "public_status": public_status(batch, target, genesis=genesis),
        "records": [
            {
                "position": r.position,
                "hash": r.hash,
                "schema": r.schema,
                "buyer_ruc": r.buyer_ruc,
                "order_number": r.order_number,
            }
            for r in rows[:limit]
        ],
        "next_start": rows[limit].position if len(rows) > limit else None,
    }


def records_of_ruc(
    *, session: Session, ruc: str, genesis: str | None, limit: int = 50
) -> dict[str, Any]:
    """Orders where ``ruc`` is the buyer, and where it is the supplier (newest issued first)."""
    target = chain_target(session)

    def of(column: Any) -> list[dict[str, Any]]:
        rows = session.execute(
            with_batch(select(Record, Batch))
            .options(defer(Record.canonical))
            .where(Record.schema == PURCHASE_ORDER_SCHEMA, column == ruc)
            .order_by(Record.issued_at.desc(), Record.id.desc())
            .limit(limit)
        ).all()
        return [
            summary(record, public_status(batch, target, genesis=genesis)) for record, batch in rows
        ]

    return {"ruc": ruc, "as_buyer": of(Record.buyer_ruc), "as_supplier": of(Record.supplier_ruc)}


def orders_numbered(
    *, session: Session, order_number: str, genesis: str | None, limit: int = 50
) -> dict[str, Any]:
    """The purchase orders numbered ``order_number``, at any buyer (newest issued first).

    An order number is unique per buyer only (a second order with the same buyer and
    number is a 409, DESIGN §4), so a number alone may name orders of several buyers.
    Found through ix_records_order_number, whatever the ledger holds.
    """
    target = chain_target(session)
    rows = session.execute(
        with_batch(select(Record, Batch))
        .options(defer(Record.canonical))
        .where(Record.order_number == order_number, Record.schema == PURCHASE_ORDER_SCHEMA)
        .order_by(Record.issued_at.desc(), Record.id.desc())
        .limit(limit)
    ).all()
    return {
        "order_number": order_number,
        "orders": [
            summary(record, public_status(batch, target, genesis=genesis)) for record, batch in rows
        ],
    }
