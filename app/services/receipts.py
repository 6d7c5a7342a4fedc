"""Receipts and records as served to anyone (DESIGN §2, §4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import ANCHORED, CHAIN_TARGET_ID, FINAL, Batch, BatchEntry, ChainTarget, Record
from ledger.anchors import Anchor
from ledger.canonical import parse_record
from ledger.errors import VerificationError
from ledger.hashing import from_hex32, to_hex
from ledger.receipt import Receipt
from ledger.verify import verify_receipt


def parse_hash(text: str) -> str:
    """A record hash from a URL or body: ``0x`` + 64 lowercase hex, or a 422."""
    try:
        from_hex32(text, what="record hash")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return text


def split_proof(proof: bytes | None) -> list[str]:
    data = proof or b""
    return [to_hex(data[i : i + 32]) for i in range(0, len(data), 32)]


_Columns = TypeVarTuple("_Columns")


def with_batch(query: Select[*_Columns]) -> Select[*_Columns]:
    """``query`` over records, joined with each record's batch entry and batch
    (both None while the record is pending)."""
    return query.outerjoin(BatchEntry, BatchEntry.record_id == Record.id).outerjoin(
        Batch, BatchEntry.batch_id == Batch.id
    )


PublicStatus = Literal["pending", "anchored", "final"]


def public_status(
    batch: Batch | None, target: ChainTarget | None, *, genesis: str | None
) -> PublicStatus:
    """A record's public status: THE one place it is decided.

    Receipts, order lists, the order view, the 200 "already recorded"
    answer and the exports all ask this. A record is pending until its
    batch is anchored on the current chain target; a batch anchored on a
    chain or contract that is no longer the target (a reset dev chain) is
    pending again, because that proof no longer holds. ``target`` is the
    chain_target row; ``genesis``, when known, is the genesis hash of the
    chain the service talks to now, and a target recorded on another
    genesis is not current (the worker may not have noticed the reset yet).
    """
    if batch is None or batch.status not in (ANCHORED, FINAL) or target is None:
        return "pending"
    if (batch.chain_id, batch.contract) != (target.chain_id, target.contract):
        return "pending"
    if genesis is not None and genesis != target.genesis_hash:
        return "pending"
    return "final" if batch.status == FINAL else "anchored"


def public_anchor(
    batch: Batch | None, target: ChainTarget | None, *, genesis: str | None
) -> Anchor | None:
    """The anchor a record's public status vouches for (None while pending)."""
    if batch is None or public_status(batch, target, genesis=genesis) == "pending":
        return None
    return batch.anchor


def chain_target(session: Session) -> ChainTarget | None:
    """The chain and contract batches are anchored on (None before the first anchor)."""
    return session.get(ChainTarget, CHAIN_TARGET_ID)


def receipt_from_rows(
    record_hash: str,
    proof: bytes | None,
    batch: Batch | None,
    target: ChainTarget | None,
    *,
    genesis: str | None,
) -> Receipt:
    """A stored record's receipt: pending unless :func:`public_status` says otherwise."""
    anchor = public_anchor(batch, target, genesis=genesis)
    if anchor is None or batch is None:
        return Receipt.pending(record_hash)
    return Receipt.anchored(
        record_hash=record_hash,
        proof=split_proof(proof),
        anchor=anchor,
        final=batch.status == FINAL,
    )


def get_receipt(*, session: Session, record_hash: str, genesis: str | None) -> Receipt:
    # One statement, one round trip: the record's entry and batch, and the
    # chain target beside them (a single row); a second query for the target
    # was a quarter of a lookup's time on PostgreSQL. Only the columns a
    # receipt needs: never the record's canonical bytes.
    row = session.execute(
        with_batch(select(Record.hash, BatchEntry.proof, Batch, ChainTarget))
        .outerjoin(ChainTarget, ChainTarget.id == CHAIN_TARGET_ID)
        .where(Record.hash == parse_hash(record_hash))
    ).one_or_none()
    if row is None:
        raise NotFound(f"no record with hash {record_hash}")
    return receipt_from_rows(row.hash, row.proof, row.Batch, row.ChainTarget, genesis=genesis)


def get_record_bytes(*, session: Session, record_hash: str) -> bytes:
    canonical = session.scalar(
        select(Record.canonical).where(Record.hash == parse_hash(record_hash))
    )
    if canonical is None:
        raise NotFound(f"no record with hash {record_hash}")
    return canonical


def record_status(*, session: Session, record_hash: str, genesis: str | None) -> PublicStatus:
    """The public status of a stored record (the 200 answer to a record sent again)."""
    row = session.execute(
        with_batch(select(Batch, ChainTarget))
        .select_from(Record)
        .outerjoin(ChainTarget, ChainTarget.id == CHAIN_TARGET_ID)
        .where(Record.hash == parse_hash(record_hash))
    ).one_or_none()
    if row is None:
        raise NotFound(f"no record with hash {record_hash}")
    return public_status(row.Batch, row.ChainTarget, genesis=genesis)


def verify(
    *,
    session: Session,
    receipt: Mapping[str, Any] | None,
    record: Mapping[str, Any] | None,
    record_hash: str | None,
    rpc_url: str,
    genesis: str | None,
    confirmations: int,
) -> dict[str, Any]:
    """``POST /v1/verify``: a given receipt (and record), or this service's receipt
    and record of ``record_hash``, checked against the chain at ``rpc_url``.

    The report of ``ledger.verify_receipt``, with ``error`` naming the failed
    step (None when valid).
    """
    if (receipt is None) == (record_hash is None):
        raise InvalidInput("give either receipt (with optional record) or hash")
    if record_hash is not None:
        record_hash = parse_hash(record_hash)
        parsed = get_receipt(session=session, record_hash=record_hash, genesis=genesis)
        record = parse_record(get_record_bytes(session=session, record_hash=record_hash))
    else:
        assert receipt is not None  # noqa: S101
        parsed = Receipt.from_json(receipt)
        # Already parsed strictly by the JSON middleware; the record step
        # re-hashes it and refuses anything that is not a record.
    try:
        report = verify_receipt(parsed, record, rpc_url=rpc_url, confirmations=confirmations)
    except VerificationError as exc:
        return {**(exc.report.to_dict() if exc.report else {}), "error": str(exc)}
    return {**report.to_dict(), "error": None}
