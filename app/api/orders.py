"""Purchase orders: record (agencies) and read (anyone)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.orm import defer

from app.api.deps import AgencyDep, RuntimeDep, SessionDep
from app.api.problems import problem
from app.api.strict_json import ParsedJSONRoute
from app.errors import InvalidInput, NotFound
from app.models import Batch, Record
from app.records.purchase_order import PURCHASE_ORDER_SCHEMA, PurchaseOrder
from app.runtime import Runtime
from app.services.ingest import (
    MAX_BULK_ITEMS,
    ItemResult,
    Prepared,
    count_outcomes,
    parse_orders,
    prepare_orders,
    stored_status,
)
from app.services.receipts import record_status, with_batch
from ledger.canonical import parse_json_strict

router = APIRouter(
    prefix="/v1/purchase-orders", tags=["purchase orders"], route_class=ParsedJSONRoute
)
# Peru is UTC-05:00 all year (no daylight saving); dates in filters are Peru dates.
PERU = timezone(timedelta(hours=-5), "PET")

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


class Recorded(BaseModel):
    hash: str = Field(description="keccak256 of the record's RFC 8785 form")
    order_number: str
    status: str = Field(description="pending, anchored or final")
    receipt_url: str
    record_url: str


class BulkRequest(BaseModel):
    purchase_orders: list[dict[str, Any]] = Field(
        max_length=MAX_BULK_ITEMS,
        description=f"Up to {MAX_BULK_ITEMS:,} purchase orders, each as in the single POST",
    )


def _links(record_hash: str) -> dict[str, str]:
    return {
        "receipt_url": f"/v1/receipts/{record_hash}",
        "record_url": f"/v1/records/{record_hash}",
    }


@router.post(
    "",
    status_code=202,
    response_model=Recorded,
    summary="Record one purchase order",
    responses={
        200: {"model": Recorded, "description": "The identical record already exists"},
        401: PROBLEM,
        403: PROBLEM,
        409: PROBLEM,
        422: PROBLEM,
    },
)
async def record_one(order: PurchaseOrder, agency: AgencyDep, runtime: RuntimeDep) -> Response:
    """Record an order of the key's agency. 202: accepted and durable, anchoring pending;
    200: the identical record exists; 409: this buyer + order number exists with other
    content; 403: the order's buyer is not the key's agency."""

    (result,) = await runtime.recorder.record(agency, [order])
    if result.outcome in ("created", "exists") and result.hash is not None:
        status = "pending"
        if result.outcome == "exists":
            status = await run_in_threadpool(_existing_status, runtime, result.hash)
        return JSONResponse(
            {
                "hash": result.hash,
                "order_number": result.order_number,
                "status": status,
                **_links(result.hash),
            },
            status_code=result.status,
        )
    title = {"conflict": "Conflict", "forbidden": "Forbidden"}[result.outcome]
    extra: dict[str, Any] = {"existing_hash": result.existing_hash} if result.existing_hash else {}
    return problem(
        result.status, title, result.detail or title, instance="/v1/purchase-orders", **extra
    )


@router.post(
    "/bulk",
    summary="Record up to 10,000 purchase orders",
    response_class=JSONResponse,
    responses={401: PROBLEM, 413: PROBLEM, 422: PROBLEM},
)
async def record_bulk(request: BulkRequest, agency: AgencyDep, runtime: RuntimeDep) -> Response:
    """Each item is judged alone: its own status (202, 200, 403, 409 or 422) and hash or
    errors, in request order. Items accepted are durable when this answers."""

    # Validating and hashing up to 10,000 orders is CPU work: off the event loop.
    def prepare() -> tuple[list[ItemResult | None], list[Prepared]]:
        return prepare_orders(agency, parse_orders(request.purchase_orders))

    results, prepared = await run_in_threadpool(prepare)
    await runtime.recorder.store(prepared)
    recorded = count_outcomes(results)
    summary: dict[str, int] = {}
    for result in recorded:
        summary[result.outcome] = summary.get(result.outcome, 0) + 1
    # Encoded here with orjson: FastAPI's jsonable_encoder walked the 10,000
    # results in Python first.
    body = {"summary": summary, "results": [r.to_dict() for r in recorded]}
    return Response(orjson.dumps(body), media_type="application/json")


def _existing_status(runtime: Runtime, record_hash: str) -> str:
    with runtime.session_factory() as session:
        return stored_status(session, record_hash)


def _encode_cursor(last: Record, *, by_issue: bool) -> str:
    position: dict[str, Any] = {"after": last.id}
    if by_issue:
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


def _order_summary(record: Record, batch: Batch | None) -> dict[str, Any]:
    return {
        "order_number": record.order_number,
        "buyer": {"ruc": record.buyer_ruc, "name": record.buyer_name},
        "supplier": {"ruc": record.supplier_ruc, "name": record.supplier_name},
        "issued_at": record.issued_at.astimezone(PERU).isoformat(),
        "currency": record.currency,
        "total": f"{record.total:.2f}",
        "hash": record.hash,
        "status": record_status(batch),
        "url": f"/v1/purchase-orders/{record.buyer_ruc}/{record.order_number}",
    }


@router.get("", summary="List purchase orders", responses={422: PROBLEM})
def list_orders(
    session: SessionDep,
    buyer: Annotated[str | None, Query(pattern=r"^\d{11}$", description="Buyer RUC")] = None,
    supplier: Annotated[str | None, Query(pattern=r"^\d{11}$", description="Supplier RUC")] = None,
    issued_from: Annotated[date | None, Query(description="First issue date (Peru time)")] = None,
    issued_to: Annotated[date | None, Query(description="Last issue date (Peru time)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Without filters, every order in order of acceptance: following `next_cursor`
    from the first page never misses one, even one recorded meanwhile. With any
    filter, the matching orders in order of issue (`issued_at`, then acceptance).
    A cursor continues the list it came from, with the same filters."""
    # A filtered list follows the filter's index (app.models.Record): in id
    # order, the database either walked every record testing the filter or
    # sorted every match.
    by_issue = bool(buyer or supplier or issued_from or issued_to)
    order = (Record.issued_at, Record.id) if by_issue else (Record.id,)
    query = (
        with_batch(select(Record, Batch))
        # A page shows the query columns only: not the records' bytes.
        .options(defer(Record.canonical))
        .where(Record.schema == PURCHASE_ORDER_SCHEMA)
        .order_by(*order)
        .limit(limit + 1)
    )
    if buyer:
        query = query.where(Record.buyer_ruc == buyer)
    if supplier:
        query = query.where(Record.supplier_ruc == supplier)
    if issued_from:
        query = query.where(Record.issued_at >= datetime.combine(issued_from, time(), PERU))
    if issued_to:
        end = datetime.combine(issued_to + timedelta(days=1), time(), PERU)
        query = query.where(Record.issued_at < end)
    if issued_from and issued_to and issued_from > issued_to:
        raise InvalidInput("issued_from is after issued_to")
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
    page = rows[:limit]
    return {
        "items": [_order_summary(record, batch) for record, batch in page],
        "next_cursor": _encode_cursor(page[-1][0], by_issue=by_issue)
        if len(rows) > limit
        else None,
    }


@router.get(
    "/{buyer_ruc}/{order_number:path}",
    summary="One purchase order, its hash, status and history",
    responses={404: PROBLEM},
)
def get_order(
    session: SessionDep,
    buyer_ruc: Annotated[str, Path(pattern=r"^\d{11}$")],
    order_number: Annotated[str, Path(max_length=64)],
) -> dict[str, Any]:
    rows = session.execute(
        with_batch(select(Record, Batch))
        .where(Record.buyer_ruc == buyer_ruc, Record.order_number == order_number)
        .order_by(Record.id)
    ).all()
    if not rows:
        raise NotFound(f"no purchase order {order_number} of buyer {buyer_ruc}")
    history = [
        {
            "hash": record.hash,
            "schema": record.schema,
            "status": record_status(batch),
            "accepted_at": record.accepted_at.isoformat(),
            "batch_id": batch.id if batch is not None else None,
            **_links(record.hash),
        }
        for record, batch in rows
    ]
    first, batch = rows[0]
    record = parse_json_strict(first.canonical)
    return {
        "purchase_order": record["purchase_order"],
        "hash": first.hash,
        "status": record_status(batch),
        "history": history,
    }
