"""Reading orders: lists of records by their query columns, and one order's view.

Every read the API and the pages make of orders goes through here; the
routes only parse parameters and shape nothing themselves. Lists work for
any schema's records (their query columns, app.records.registry), so they
name the schema they list.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.orm import Session, defer

from app.errors import InvalidInput, NotFound
from app.models import Batch, Record
from app.records.order_event import ORDER_EVENT_SCHEMA, OrderState, apply_event, start_order
from app.records.purchase_order import PURCHASE_ORDER_SCHEMA, order_identity
from app.records.registry import ChainRefusal
from app.services.receipts import chain_target, public_status, with_batch
from ledger.canonical import parse_json_strict

# Peru is UTC-05:00 all year (no daylight saving); dates in filters are Peru dates.
PERU = timezone(timedelta(hours=-5), "PET")


@dataclass(frozen=True)
class ListFilters:
    """What a list of records is narrowed to (all None: every record of the schema)."""

    buyer: str | None = None
    supplier: str | None = None
    issued_from: date | None = None
    issued_to: date | None = None

    @property
    def any(self) -> bool:
        return bool(self.buyer or self.supplier or self.issued_from or self.issued_to)


def links(record_hash: str) -> dict[str, str]:
    return {
        "receipt_url": f"/v1/receipts/{record_hash}",
        "record_url": f"/v1/records/{record_hash}",
    }


def _encode_cursor(last: Record, *, by_issue: bool) -> str:
    position: dict[str, Any] = {"after": last.id}
    if by_issue:
        assert last.issued_at is not None  # noqa: S101 - a filtered list is by issue time
        position["issued"] = last.issued_at.isoformat()
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _decode_cursor(cursor: str, *, by_issue: bool) -> tuple[int, datetime | None]:
    """The id (and, for a filtered list, the issue time) a page starts after."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        after = data["after"]
        if type(after) is not int or not 0 <= after < 2**63:
            raise ValueError
        issued = None
        if by_issue:
            issued = datetime.fromisoformat(data["issued"])
            if issued.utcoffset() is None:
                raise ValueError
            # In UTC here, where a time beyond the calendar's ends fails as
            # OverflowError, rather than where the database reads it.
            issued = issued.astimezone(UTC)
        elif "issued" in data:
            raise ValueError
        return after, issued
    except (ValueError, KeyError, TypeError, OverflowError):
        raise InvalidInput(
            "cursor is not one this service issued for this list (a cursor is valid "
            "only with the filters of the page that gave it)"
        ) from None


def _money(value: Any) -> str | None:
    return None if value is None else f"{value:.2f}"


def summary(record: Record, status: str) -> dict[str, Any]:
    """One record of a list, from its query columns (never its bytes)."""
    issued_at = record.issued_at
    return {
        "order_number": record.order_number,
        "buyer": {"ruc": record.buyer_ruc, "name": record.buyer_name},
        "supplier": {"ruc": record.supplier_ruc, "name": record.supplier_name},
        "issued_at": None if issued_at is None else issued_at.astimezone(PERU).isoformat(),
        "currency": record.currency,
        "total": _money(record.total),
        "hash": record.hash,
        "status": status,
        "url": f"/v1/purchase-orders/{record.buyer_ruc}/{record.order_number}",
    }


def list_records(
    *,
    session: Session,
    schema: str,
    genesis: str | None,
    filters: ListFilters,
    limit: int,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of ``schema``'s records: ``{"items": [...], "next_cursor": ...}``.

    Without filters, in order of acceptance: following ``next_cursor`` from
    the first page never misses one, even one recorded meanwhile. With any
    filter, in order of issue (``issued_at``, then acceptance). A cursor
    continues the list it came from, with the same filters.
    """
    # A filtered list follows the filter's index (app.models.Record): in id
    # order, the database either walked every record testing the filter or
    # sorted every match.
    by_issue = filters.any
    if filters.issued_from and filters.issued_to and filters.issued_from > filters.issued_to:
        raise InvalidInput("issued_from is after issued_to")
    order = (Record.issued_at, Record.id) if by_issue else (Record.id,)
    query = (
        with_batch(select(Record, Batch))
        # A page shows the query columns only: not the records' bytes.
        .options(defer(Record.canonical))
        .where(Record.schema == schema)
        .order_by(*order)
        .limit(limit + 1)
    )
    if filters.buyer:
        query = query.where(Record.buyer_ruc == filters.buyer)
    if filters.supplier:
        query = query.where(Record.supplier_ruc == filters.supplier)
    if filters.issued_from:
        query = query.where(Record.issued_at >= datetime.combine(filters.issued_from, time(), PERU))
    if filters.issued_to:
        end = datetime.combine(filters.issued_to + timedelta(days=1), time(), PERU)
        query = query.where(Record.issued_at < end)
    if cursor:
        after, issued = _decode_cursor(cursor, by_issue=by_issue)
        if issued is None:
            query = query.where(Record.id > after)
        else:
            # Typed parameters: the column's own form of a time (SQLite text).
            query = query.where(
                tuple_(Record.issued_at, Record.id)
                > tuple_(
                    bindparam("after_issued", issued, type_=Record.issued_at.type),
                    bindparam("after_id", after, type_=Record.id.type),
                )
            )
    rows = session.execute(query).all()
    target = chain_target(session)
    page = rows[:limit]
    return {
        "items": [
            summary(record, public_status(batch, target, genesis=genesis)) for record, batch in page
        ],
        "next_cursor": _encode_cursor(page[-1][0], by_issue=by_issue)
        if len(rows) > limit
        else None,
    }


def _history_entry(
    seq: int, record: Record, parsed: dict[str, Any], status: str, batch: Batch | None
) -> dict[str, Any]:
    if record.schema == PURCHASE_ORDER_SCHEMA:
        kind, occurred_at, prev = "issued", parsed["purchase_order"]["issued_at"], None
    else:
        kind, occurred_at = parsed["event"]["type"], parsed["event"]["occurred_at"]
        prev = parsed["prev"]
    return {
        "seq": seq,
        "hash": record.hash,
        "schema": record.schema,
        "type": kind,
        "occurred_at": occurred_at,
        "prev": prev,
        "status": status,
        "accepted_at": record.accepted_at.isoformat(),
        "batch_id": batch.id if batch is not None else None,
        **links(record.hash),
    }


def get_order(
    *, session: Session, buyer_ruc: str, order_number: str, genesis: str | None
) -> dict[str, Any]:
    """One purchase order: as issued, as it stands now, its head and its history.

    The history is read from the order's record along the hash chain (each
    event's identity is its prev, app.records.order_event) and folded with
    the same rules ingest applies, so the state shown is the state new
    events are judged against.
    """
    target = chain_target(session)
    query = with_batch(select(Record, Batch)).order_by(Record.id)
    found = session.execute(
        query.where(
            Record.schema == PURCHASE_ORDER_SCHEMA,
            Record.identity == order_identity(buyer_ruc, order_number),
        )
    ).first()
    if found is None:
        raise NotFound(f"no purchase order {order_number} of buyer {buyer_ruc}")
    record, batch = found
    parsed = parse_json_strict(record.canonical)
    issued = parsed["purchase_order"]
    state: OrderState = start_order(record.hash, parsed)
    first_status = public_status(batch, target, genesis=genesis)
    history = [_history_entry(0, record, parsed, first_status, batch)]
    broken = None
    while broken is None:
        following = session.execute(
            query.where(Record.schema == ORDER_EVENT_SCHEMA, Record.identity == state.head)
        ).first()
        if following is None:
            break
        record, batch = following
        parsed = parse_json_strict(record.canonical)
        try:
            state = apply_event(state, record.hash, parsed)
        except ChainRefusal as refusal:
            # Shown, not hidden: the stored history breaks its rules here.
            broken = f"at {record.hash}: {refusal.detail}"
        status = public_status(batch, target, genesis=genesis)
        history.append(_history_entry(len(history), record, parsed, status, batch))
    return {
        "purchase_order": issued,
        "hash": history[0]["hash"],
        "status": first_status,
        "current": state.to_dict(),
        "head": state.head,
        "seq": state.seq,
        "broken": broken,
        "history": history,
    }


def position_in_history(
    *, session: Session, record_hash: str, genesis: str | None
) -> dict[str, Any]:
    """Where a stored record stands in its order's history: ``{"seq", "status"}``."""
    found = session.execute(
        select(Record.buyer_ruc, Record.order_number).where(Record.hash == record_hash)
    ).first()
    if found is None or found.buyer_ruc is None or found.order_number is None:
        raise NotFound(f"no record with hash {record_hash} in an order's history")
    order = get_order(
        session=session, buyer_ruc=found.buyer_ruc, order_number=found.order_number, genesis=genesis
    )
    for entry in order["history"]:
        if entry["hash"] == record_hash:
            return {"seq": entry["seq"], "status": entry["status"]}
    raise NotFound(f"record {record_hash} is not in the history of its order")
