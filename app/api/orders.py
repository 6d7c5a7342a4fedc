"""Purchase orders: record (agencies) and read (anyone). Thin: every read and write
is a service call (app.services.ingest, app.services.orders)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.api.bulk import record_bulk
from app.api.deps import AgencyDep, RuntimeDep, SessionDep
from app.api.problems import problem
from app.api.strict_json import ParsedJSONRoute
from app.records.purchase_order import PURCHASE_ORDER_SCHEMA, SCHEMA, PurchaseOrder
from app.services.ingest import (
    MAX_BULK_ITEMS,
)
from app.services.orders import ListFilters, get_order, links, list_records
from app.services.receipts import record_status

router = APIRouter(
    prefix="/v1/purchase-orders", tags=["purchase orders"], route_class=ParsedJSONRoute
)

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

    (result,) = await runtime.recorder.record(agency, SCHEMA, [order])
    if result.outcome in ("created", "exists") and result.hash is not None:
        status = "pending"
        if result.outcome == "exists":
            status = await run_in_threadpool(runtime.read, record_status, record_hash=result.hash)
        return JSONResponse(
            {
                "hash": result.hash,
                "order_number": result.order_number,
                "status": status,
                **links(result.hash),
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
async def record_orders_in_bulk(
    request: BulkRequest, agency: AgencyDep, runtime: RuntimeDep
) -> Response:
    """Each item is judged alone: its own status (202, 200, 403, 409 or 422) and hash or
    errors, in request order. Items accepted are durable when this answers."""

    return await record_bulk(runtime, agency, SCHEMA, request.purchase_orders)


@router.get("", summary="List purchase orders", responses={422: PROBLEM})
def list_orders(
    session: SessionDep,
    runtime: RuntimeDep,
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
    return list_records(
        session=session,
        schema=PURCHASE_ORDER_SCHEMA,
        genesis=runtime.chain_genesis(),
        filters=ListFilters(buyer, supplier, issued_from, issued_to),
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/{buyer_ruc}/{order_number:path}",
    summary="One purchase order, its hash, status and history",
    responses={404: PROBLEM},
)
def read_order(
    session: SessionDep,
    runtime: RuntimeDep,
    buyer_ruc: Annotated[str, Path(pattern=r"^\d{11}$")],
    order_number: Annotated[str, Path(max_length=64)],
) -> dict[str, Any]:
    return get_order(
        session=session,
        buyer_ruc=buyer_ruc,
        order_number=order_number,
        genesis=runtime.chain_genesis(),
    )
