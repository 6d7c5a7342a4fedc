"""Public reads: records, receipts, verification, batches. Thin: each route is one
service call (app.services.receipts, app.services.batches)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.api.deps import ReadSessionDep, RuntimeDep, SessionDep
from app.api.strict_json import ParsedJSONRoute
from app.services.batches import (
    batch_records,
    batch_view,
    get_batch,
    get_batch_tree,
    list_batches,
)
from app.services.documents import records_binding
from app.services.receipts import get_receipt, get_record_bytes, verify

router = APIRouter(tags=["public"], route_class=ParsedJSONRoute)
PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
HashPath = Annotated[str, Path(description="0x + 64 lowercase hex", examples=["0x" + "ab" * 32])]


@router.get(
    "/v1/records/{record_hash}",
    summary="The record as recorded (its exact canonical bytes)",
    responses={200: {"content": {"application/json": {}}}, 404: PROBLEM, 422: PROBLEM},
)
def get_record(record_hash: HashPath, session: ReadSessionDep) -> Response:
    """The RFC 8785 bytes that were hashed: keccak256 of this body is the hash."""
    return Response(
        get_record_bytes(session=session, record_hash=record_hash), media_type="application/json"
    )


@router.get(
    "/v1/receipts/{record_hash}",
    summary="The receipt of a record",
    responses={404: PROBLEM, 422: PROBLEM},
)
async def receipt(record_hash: HashPath, runtime: RuntimeDep) -> dict[str, Any]:
    """receipt_version 1 (DESIGN §2); pending until the record's batch is anchored."""

    # One hop to the thread pool for all the blocking work of the lookup.
    found = await run_in_threadpool(runtime.read, get_receipt, record_hash=record_hash)
    return found.to_dict()


class VerifyRequest(BaseModel):
    model_config = {"extra": "forbid"}

    receipt: dict[str, Any] | None = Field(default=None, description="A receipt to check")
    record: dict[str, Any] | None = Field(default=None, description="The record it is for")
    hash: str | None = Field(default=None, description="Or: check this service's receipt")
    confirmations: int = Field(default=1, ge=1, le=10_000)


@router.post(
    "/v1/verify",
    summary="Verify a receipt (and record) against the chain",
    responses={422: PROBLEM, 503: PROBLEM},
)
def verify_route(body: VerifyRequest, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The same steps and report as `ancla verify-receipt`; 200 with valid true/false."""
    return verify(
        session=session,
        receipt=body.receipt,
        record=body.record,
        record_hash=body.hash,
        rpc_url=runtime.settings.rpc_url,
        genesis=runtime.chain_genesis(),
        confirmations=body.confirmations,
    )


@router.get("/v1/batches", summary="Batches, newest first", responses={422: PROBLEM})
def batches(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only batches with a smaller id")
    ] = None,
) -> dict[str, Any]:
    return list_batches(session=session, limit=limit, before=before)


BatchId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get(
    "/v1/batches/{batch_id}",
    summary="One batch and its anchor",
    responses={404: PROBLEM, 422: PROBLEM},
)
def batch(batch_id: BatchId, session: SessionDep) -> dict[str, Any]:
    return batch_view(get_batch(session=session, batch_id=batch_id))


@router.get(
    "/v1/batches/{batch_id}/tree",
    summary="The batch's Merkle tree as an OpenZeppelin standard-v1 dump",
    responses={200: {"content": {"application/json": {}}}, 404: PROBLEM, 422: PROBLEM},
)
def batch_tree(batch_id: BatchId, session: SessionDep) -> Response:
    """Load it with `StandardMerkleTree.load(dump)` from @openzeppelin/merkle-tree."""
    # orjson: FastAPI's own encoding of a 10,000-leaf dump (30,000 strings) took
    # 150-250 ms, a monitor's wait for every batch; orjson takes 2-3 ms (measured).
    return Response(
        orjson.dumps(get_batch_tree(session=session, batch_id=batch_id)),
        media_type="application/json",
    )


@router.get(
    "/v1/batches/{batch_id}/records",
    summary="Every record of the batch as recorded, one RFC 8785 JSON per line, in tree order",
    responses={200: {"content": {"application/x-ndjson": {}}}, 404: PROBLEM, 422: PROBLEM},
    response_class=StreamingResponse,
)
def batch_records_route(batch_id: BatchId, session: SessionDep) -> StreamingResponse:
    """Line i is the record whose hash is value i of `/v1/batches/{id}/tree`: keccak256
    of the line's bytes (without its newline) is that hash. Streamed; for mirrors and
    monitors (`ancla monitor`)."""
    return StreamingResponse(
        batch_records(session=session, batch_id=batch_id), media_type="application/x-ndjson"
    )


@router.get(
    "/v1/documents/{sha256}",
    summary="Every record that binds a file, by the SHA-256 of its bytes",
    responses={422: PROBLEM},
)
async def documents(
    sha256: Annotated[str, Path(description="64 lowercase hex digits", examples=["ab" * 32])],
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Order documents and `document` events (and the documents of other events) whose
    digest is this one; `records` is empty when none binds it."""
    return await run_in_threadpool(runtime.read, records_binding, sha256=sha256)
