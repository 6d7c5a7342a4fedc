"""Order histories: append events (agencies). Thin: validation and storing are
app.services.ingest's, the order's chain rules app.records.order_event's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.api.bulk import record_bulk
from app.api.deps import AgencyDep, RuntimeDep
from app.api.problems import problem
from app.api.strict_json import ParsedJSONRoute
from app.errors import InvalidInput
from app.records.order_event import SCHEMA as EVENTS
from app.services.ingest import (
    MAX_BULK_ITEMS,
    parse_items,
)
from app.services.orders import links, position_in_history

router = APIRouter(tags=["order histories"], route_class=ParsedJSONRoute)
PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_TITLES = {
    "conflict": "Conflict",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "invalid": "Invalid input",
}

EVENT_EXAMPLE = {
    "prev": "0x" + "ab" * 32,
    "type": "paid",
    "occurred_at": "2026-03-02T11:20:00-05:00",
    "payment": {"amount": "5796.99", "currency": "PEN", "reference": "SIAF 2026-0001234"},
}


class Appended(BaseModel):
    hash: str = Field(description="keccak256 of the event record's RFC 8785 form")
    seq: int = Field(description="The record's position in the order's history (the order is 0)")
    status: str = Field(description="pending, anchored or final")
    receipt_url: str
    record_url: str
    order_url: str


class BulkEvents(BaseModel):
    events: list[dict[str, Any]] = Field(
        max_length=MAX_BULK_ITEMS,
        description=f"Up to {MAX_BULK_ITEMS:,} events, each with buyer_ruc and order_number; "
        "an event's prev may be the hash of an earlier item of the same bulk",
    )


def _order_url(buyer_ruc: str, order_number: str) -> str:
    return f"/v1/purchase-orders/{buyer_ruc}/{order_number}"


@router.post(
    "/v1/purchase-orders/{buyer_ruc}/{order_number:path}/events",
    status_code=202,
    response_model=Appended,
    summary="Append one event to an order's history",
    responses={
        200: {"model": Appended, "description": "The identical event is already recorded"},
        401: PROBLEM,
        403: PROBLEM,
        404: PROBLEM,
        409: PROBLEM,
        422: PROBLEM,
    },
)
async def append_event(
    buyer_ruc: Annotated[str, Path(max_length=11)],
    order_number: Annotated[str, Path(max_length=64)],
    body: Annotated[dict[str, Any], Body(openapi_examples={"paid": {"value": EVENT_EXAMPLE}})],
    agency: AgencyDep,
    runtime: RuntimeDep,
) -> Response:
    """`{"prev", "type", "occurred_at", …}` (DESIGN §2). 202: accepted and durable, with
    its hash and `seq`; 200: the identical event exists; 409: `prev` is not the order's
    head (the problem's `head` names it) or the order is cancelled; 404: no such order;
    403: another buyer's order; 422: invalid (each field named)."""
    named = sorted({"buyer_ruc", "order_number"} & set(body))
    if named:
        raise InvalidInput(f"{', '.join(named)}: the order is named by the path, not by the body")
    item = {**body, "buyer_ruc": buyer_ruc, "order_number": order_number}
    (result,) = await runtime.recorder.record(agency, EVENTS, parse_items(EVENTS, [item]))
    instance = f"{_order_url(buyer_ruc, order_number)}/events"
    if result.outcome in ("created", "exists") and result.hash is not None:
        seq, status = result.seq, "pending"
        if result.outcome == "exists":
            found = await run_in_threadpool(
                runtime.read, position_in_history, record_hash=result.hash
            )
            seq, status = found["seq"], found["status"]
        return JSONResponse(
            {
                "hash": result.hash,
                "seq": seq,
                "status": status,
                **links(result.hash),
                "order_url": _order_url(buyer_ruc, order_number),
            },
            status_code=result.status,
        )
    extra: dict[str, Any] = {}
    if result.head is not None:
        extra["head"] = result.head
    if result.errors:
        extra["errors"] = result.errors
    detail = result.detail or _TITLES[result.outcome]
    if result.errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in result.errors[:5])
    return problem(result.status, _TITLES[result.outcome], detail, instance=instance, **extra)


@router.post(
    "/v1/events/bulk",
    summary="Append up to 10,000 events to orders' histories",
    response_class=JSONResponse,
    responses={401: PROBLEM, 413: PROBLEM, 422: PROBLEM},
)
async def append_bulk(request: BulkEvents, agency: AgencyDep, runtime: RuntimeDep) -> Response:
    """Each item is judged alone, in order (its own status: 202, 200, 403, 404, 409 or 422,
    with its hash and `seq`, or its errors); an item may chain to an earlier item of the
    same bulk. Items accepted are durable when this answers."""

    return await record_bulk(runtime, agency, EVENTS, request.events)
