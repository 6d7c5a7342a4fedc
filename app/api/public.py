"""Public reads: records, receipts, verification, batches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.api.deps import ReadSessionDep, RuntimeDep, SessionDep
from app.api.strict_json import ParsedJSONRoute
from app.errors import IntegrityFailure, InvalidInput, NotFound
from app.models import Batch
from app.services.batching import batch_tree
from app.services.receipts import batch_view, get_receipt, get_record_bytes, parse_hash
from ledger.canonical import parse_record
from ledger.errors import VerificationError
from ledger.receipt import Receipt
from ledger.verify import verify_receipt

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

    def work() -> dict[str, Any]:
        # One hop to the thread pool for all the blocking work of the lookup.
        genesis = runtime.chain_genesis()
        with runtime.read_session_factory() as session:
            return get_receipt(session=session, record_hash=record_hash, genesis=genesis).to_dict()

    return await run_in_threadpool(work)


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
def verify(body: VerifyRequest, session: SessionDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The same steps and report as `ancla verify-receipt`; 200 with valid true/false."""
    if (body.receipt is None) == (body.hash is None):
        raise InvalidInput("give either receipt (with optional record) or hash")
    record = None
    if body.hash is not None:
        record_hash = parse_hash(body.hash)
        parsed = get_receipt(
            session=session, record_hash=record_hash, genesis=runtime.chain_genesis()
        )
        record = parse_record(get_record_bytes(session=session, record_hash=record_hash))
    else:
        assert body.receipt is not None  # noqa: S101
        parsed = Receipt.from_json(body.receipt)
        # Already parsed strictly by the JSON middleware; the record step
        # re-hashes it and refuses anything that is not a record.
        record = body.record
    try:
        report = verify_receipt(
            parsed, record, rpc_url=runtime.settings.rpc_url, confirmations=body.confirmations
        )
    except VerificationError as exc:
        return {**(exc.report.to_dict() if exc.report else {}), "error": str(exc)}
    return {**report.to_dict(), "error": None}


@router.get("/v1/batches", summary="Batches, newest first", responses={422: PROBLEM})
def list_batches(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only batches with a smaller id")
    ] = None,
) -> dict[str, Any]:
    query = select(Batch).order_by(Batch.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Batch.id < before)
    batches = list(session.scalars(query))
    page = batches[:limit]
    return {
        "items": [batch_view(b) for b in page],
        "next_before": page[-1].id if len(batches) > limit else None,
    }


def _batch(session: SessionDep, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return batch


BatchId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get(
    "/v1/batches/{batch_id}",
    summary="One batch and its anchor",
    responses={404: PROBLEM, 422: PROBLEM},
)
def get_batch(batch_id: BatchId, session: SessionDep) -> dict[str, Any]:
    return batch_view(_batch(session, batch_id))


@router.get(
    "/v1/batches/{batch_id}/tree",
    summary="The batch's Merkle tree as an OpenZeppelin standard-v1 dump",
    responses={404: PROBLEM, 422: PROBLEM},
)
def get_batch_tree(batch_id: BatchId, session: SessionDep) -> dict[str, Any]:
    """Load it with `StandardMerkleTree.load(dump)` from @openzeppelin/merkle-tree."""
    batch = _batch(session, batch_id)
    tree = batch_tree(session=session, batch=batch)
    if tree.root != batch.root:
        # The records no longer rebuild the sealed root: never serve a false tree.
        raise IntegrityFailure(
            f"batch {batch_id}'s records do not rebuild its root; run `ancla verify`"
        )
    return tree.dump()
