"""Sealing: group pending records into Merkle batches (DESIGN §4).

A batch is sealed when N records are pending or the oldest pending record is
T seconds old. Batch ids are assigned here, in sequence, by the single
anchoring leader: the contract accepts only the next id, so an id must never
be skipped (a database sequence could skip one on rollback).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count, repeat
from typing import cast

from sqlalchemy import LargeBinary, Select, Table, func, select, text, type_coerce
from sqlalchemy.orm import Session

from app.db import copy_rows, postgresql_cursor, serialized_writes, sqlite_multirow_inserts
from app.metrics import BATCHES_SEALED
from app.models import SEALED, Batch, BatchEntry, PendingRecord, Record, utcnow
from ledger.merkle import MerkleTree


def seal_batches(
    *,
    session: Session,
    max_size: int,
    max_age_seconds: float,
    now: datetime | None = None,
    force: bool = False,
) -> list[Batch]:
    """Seal every batch that is due; ``force`` seals what is pending now, whatever its age."""
    sealed: list[Batch] = []
    now = now or utcnow()
    while True:
        taken = session.execute(next_in_queue(max_size)).all()
        if not taken:
            break
        due = len(taken) >= max_size
        if not due:
            oldest = oldest_pending(session)
            due = oldest is not None and now - oldest >= timedelta(seconds=max_age_seconds)
        if not (due or force):
            break
        # Columns by zip in C: a Python loop over 10,000 rows per column, with
        # attribute access on each, was a fifth of a seal's CPU.
        record_ids, hashes = zip(*taken, strict=True)
        if None in hashes:
            # No foreign key keeps a queued record from being deleted (models.py):
            # only a change made outside Ancla does it, and a batch must not skip it.
            gone = [
                record_id
                for record_id, hash_ in zip(record_ids, hashes, strict=True)
                if hash_ is None
            ]
            raise RuntimeError(
                f"queued record id {gone[0]} is not in the records table"
                f" ({len(gone)} such); nothing sealed until an operator repairs the queue"
            )
        # The tree and its proofs are built before queueing for the write lock
        # (SQLite: one writer at a time across processes).
        tree = MerkleTree.of_digests(hashes)
        proofs = tree.proof_bytes()
        with serialized_writes(session):
            sealed.append(_seal(session, list(record_ids), tree.root, proofs))
    return sealed


def oldest_pending(session: Session) -> datetime | None:
    """When the first record of the queue was accepted (None: the queue is empty).

    The first by id: ids are drawn a moment after the acceptance time is
    taken, so between concurrent groups this may be later than the true
    oldest by that moment (milliseconds), never by a batch. One index lookup,
    where a min() over the queue joined with records scanned every record.
    """
    first = select(func.min(PendingRecord.record_id)).scalar_subquery()
    return session.scalar(select(Record.accepted_at).where(Record.id == first))


def next_in_queue(limit: int) -> Select[tuple[int, bytes]]:
    """The ids and hashes (as stored: 32 bytes) of the first ``limit`` pending
    records, in order.

    Plain Core rows of two columns: the ORM rows with a converted accepted_at
    for each of 1,000 records were a twentieth of a bulk ingest's CPU, and
    the age matters only for a batch not yet full.
    """
    records = cast(Table, Record.__table__)
    pending = cast(Table, PendingRecord.__table__)
    # The queue's head first, then each record's hash by a correlated
    # subquery, which PostgreSQL runs as one primary-key lookup per row
    # whatever its statistics say. Joined instead, it planned from statistics
    # that lag under load: with the queue's counting rows sealed since the
    # last analyse it merge-joined along every record (37 ms at 121,000
    # records), and with the records' counting a younger ledger it hashed a
    # sequential scan of all of them (20-40 ms per seal at 30,000 records,
    # found with auto_explain during a bulk run).
    head = select(pending.c.record_id).order_by(pending.c.record_id).limit(limit).subquery()
    hash_of = select(records.c.hash).where(records.c.id == head.c.record_id).scalar_subquery()
    # The stored bytes, not the text form (app.models.Hash32): the tree is
    # built of the bytes, and 10,000 conversions each way were wasted.
    digest = type_coerce(hash_of, LargeBinary)
    return select(head.c.record_id, digest.label("hash")).order_by(head.c.record_id)


# Sealing inserts a narrow row per record (batch, position, proof) and takes
# it off the pending queue; the record itself is never written again.
# PostgreSQL: the entries go in by binary COPY; the ORM's executemany was an
# eighth of a bulk ingest's CPU, and array parameters (unnest) cost psycopg a
# Python loop per element. (Constant texts: no input.)
_PG_COPY_ENTRIES = (
    "COPY batch_entries (record_id, batch_id, position, proof) FROM STDIN (FORMAT BINARY)"
)
# SQLite: multi-row VALUES (1,000 rows x 4 values) and one DELETE.
_SQLITE_ENTRY_ROWS = 1000
_UNQUEUE = text(
    "DELETE FROM pending_records WHERE record_id IN "
    "(SELECT record_id FROM batch_entries WHERE batch_id = :batch_id)"
)


def _seal(session: Session, record_ids: list[int], root: str, proofs: list[bytes]) -> Batch:
    batch_id = (session.scalar(select(func.max(Batch.id))) or 0) + 1
    batch = Batch(id=batch_id, status=SEALED, size=len(record_ids), root=root)
    session.add(batch)
    session.flush()
    connection = session.connection()
    if len(proofs) != len(record_ids):
        raise ValueError(f"{len(record_ids)} records but {len(proofs)} proofs")
    entries = list(zip(record_ids, repeat(batch_id), count(), proofs))
    if connection.dialect.name == "postgresql":
        with postgresql_cursor(connection) as cursor:
            copy_rows(cursor, _PG_COPY_ENTRIES, ["int8", "int8", "int4", "bytea"], entries)
    else:
        # Plain tuples to the DB-API: through SQLAlchemy's per-row parameter
        # processing it took longer than SQLite's own work.
        for sql, params in sqlite_multirow_inserts(
            "INSERT INTO batch_entries (record_id, batch_id, position, proof)",
            entries,
            rows_per_statement=_SQLITE_ENTRY_ROWS,
        ):
            connection.exec_driver_sql(sql, params)
    unqueued = connection.execute(_UNQUEUE, {"batch_id": batch_id}).rowcount
    if unqueued != len(record_ids):
        # Another sealer took some of them (two leaders): this batch must not exist.
        session.rollback()
        raise RuntimeError(
            f"batch {batch_id}: {len(record_ids) - unqueued} of its records "
            "were no longer pending; not sealed"
        )
    session.commit()
    BATCHES_SEALED.inc()
    return batch


def batch_tree(*, session: Session, batch: Batch) -> MerkleTree:
    """Rebuild a batch's tree from its records, in the order it was built."""
    hashes = list(
        session.scalars(
            select(Record.hash)
            .join(BatchEntry, BatchEntry.record_id == Record.id)
            .where(BatchEntry.batch_id == batch.id)
            .order_by(BatchEntry.position)
        )
    )
    return MerkleTree.of(hashes)
