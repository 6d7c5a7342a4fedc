"""Receipts and records as served to anyone (DESIGN §2, §4)."""

from __future__ import annotations

from typing import Any, TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import ANCHORED, CHAIN_TARGET_ID, FINAL, Batch, BatchEntry, ChainTarget, Record
from ledger.hashing import from_hex32, to_hex
from ledger.receipt import Receipt


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


def receipt_from_rows(
    record_hash: str,
    proof: bytes | None,
    batch: Batch | None,
    target: ChainTarget | None,
    *,
    genesis: str | None = None,
) -> Receipt:
    """A receipt for a stored record; pending unless its batch is anchored on the current target.

    A batch anchored on a chain or contract that is no longer the target (a
    reset dev chain) is not served as anchored: that proof no longer holds.
    ``genesis``, when known, is the genesis hash of the chain the service
    talks to now; a target recorded on another genesis is not current.
    """
    anchored = (
        batch is not None
        and batch.status in (ANCHORED, FINAL)
        and target is not None
        and (batch.chain_id, batch.contract) == (target.chain_id, target.contract)
        and (genesis is None or genesis == target.genesis_hash)
    )
    if not anchored or batch is None:
        return Receipt.pending(record_hash)
    assert batch.block_number is not None and batch.block_hash is not None  # noqa: S101
    assert batch.tx_hash is not None and batch.chain_id is not None  # noqa: S101
    assert batch.contract is not None and batch.log_index is not None  # noqa: S101
    assert batch.block_timestamp is not None  # noqa: S101
    return Receipt.anchored(
        record_hash=record_hash,
        proof=split_proof(proof),
        root=batch.root,
        batch_id=batch.id,
        batch_size=batch.size,
        chain_id=batch.chain_id,
        contract=batch.contract,
        tx_hash=batch.tx_hash,
        block_number=batch.block_number,
        block_hash=batch.block_hash,
        log_index=batch.log_index,
        timestamp=batch.block_timestamp,
        final=batch.status == FINAL,
    )


def get_receipt(*, session: Session, record_hash: str, genesis: str | None = None) -> Receipt:
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


def record_status(batch: Batch | None) -> str:
    """The public status of a record: pending until its batch is anchored."""
    if batch is None or batch.status not in (ANCHORED, FINAL):
        return "pending"
    return batch.status


def batch_view(batch: Batch) -> dict[str, Any]:
    anchor = None
    if batch.status in (ANCHORED, FINAL):
        anchor = {
            "chain_id": batch.chain_id,
            "contract": batch.contract,
            "tx_hash": batch.tx_hash,
            "block_number": batch.block_number,
            "block_hash": batch.block_hash,
            "log_index": batch.log_index,
            "timestamp": batch.block_timestamp,
            "gas_used": batch.gas_used,
        }
    elif batch.status == "submitted":
        anchor = {
            "chain_id": batch.chain_id,
            "contract": batch.contract,
            "tx_hash": batch.tx_hash,
            "nonce": batch.tx_nonce,
        }
    return {
        "id": batch.id,
        "status": batch.status,
        "size": batch.size,
        "root": batch.root,
        "sealed_at": batch.sealed_at.isoformat(),
        "anchored_at": batch.anchored_at.isoformat() if batch.anchored_at else None,
        "final_at": batch.final_at.isoformat() if batch.final_at else None,
        "reanchor_count": batch.reanchor_count,
        "anchor": anchor,
    }
