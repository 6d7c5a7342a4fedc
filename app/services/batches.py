"""Batches as served to anyone: their lifecycle, anchors and trees (DESIGN §4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import IntegrityFailure, NotFound
from app.models import SUBMITTED, Batch, BatchEntry, Record
from app.services.batching import batch_tree

# Records read per round trip (a server-side cursor on PostgreSQL) and sent per
# chunk of the response: one thread hop per chunk, not per record, and never
# more than this many records in memory whatever the batch's size.
RECORDS_PER_CHUNK: Final = 1000


def batch_view(batch: Batch) -> dict[str, Any]:
    """A batch as the API shows it: its lifecycle, and its anchor once sent."""
    anchor: dict[str, Any] | None = None
    stored = batch.anchor
    if stored is not None:
        anchor = {
            "chain_id": stored.chain_id,
            "contract": stored.contract,
            "tx_hash": stored.tx_hash,
            "block_number": stored.block_number,
            "block_hash": stored.block_hash,
            "log_index": stored.log_index,
            "timestamp": stored.timestamp,
            "gas_used": stored.gas_used,
        }
    elif batch.status == SUBMITTED:
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


def list_batches(*, session: Session, limit: int, before: int | None = None) -> dict[str, Any]:
    """Batches newest first, ``limit`` per page; ``next_before`` continues the list."""
    query = select(Batch).order_by(Batch.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Batch.id < before)
    batches = list(session.scalars(query))
    page = batches[:limit]
    return {
        "items": [batch_view(b) for b in page],
        "next_before": page[-1].id if len(batches) > limit else None,
    }


def get_batch(*, session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return batch


def get_batch_tree(*, session: Session, batch_id: int) -> dict[str, Any]:
    """The batch's tree as an OpenZeppelin ``standard-v1`` dump, rebuilt from its records."""
    batch = get_batch(session=session, batch_id=batch_id)
    tree = batch_tree(session=session, batch=batch)
    if tree.root != batch.root:
        # The records no longer rebuild the sealed root: never serve a false tree.
        raise IntegrityFailure(
            f"batch {batch_id}'s records do not rebuild its root; run `ancla verify`"
        )
    return tree.dump()


def batch_records(*, session: Session, batch_id: int) -> Iterator[bytes]:
    """Every record of the batch as recorded, one RFC 8785 JSON per line, in tree
    order (``batch_entries.position``): what ``GET /v1/batches/{id}/records``
    streams, for mirrors and monitors (DESIGN §4, §9).

    NotFound is raised here, before anything is sent, for an unknown batch; the
    records are then read ``RECORDS_PER_CHUNK`` at a time, each chunk ready to
    send. The stored bytes are sent as they are, never re-encoded: a record that
    no longer hashes to its leaf must be seen so by whoever checks. Canonical
    JSON holds no raw newline, so a line is a record.
    """
    get_batch(session=session, batch_id=batch_id)
    query = (
        select(Record.canonical)
        .join(BatchEntry, BatchEntry.record_id == Record.id)
        .where(BatchEntry.batch_id == batch_id)
        .order_by(BatchEntry.position)
        .execution_options(yield_per=RECORDS_PER_CHUNK)
    )

    def chunks() -> Iterator[bytes]:
        for partition in session.scalars(query).partitions():
            yield b"\n".join(partition) + b"\n"

    return chunks()
