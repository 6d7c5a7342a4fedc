"""Sealing: group pending records into Merkle batches (DESIGN §4).

A batch is sealed when N records are pending or the oldest pending record is
T seconds old. Batch ids are assigned here, in sequence, by the single
anchoring leader: the contract accepts only the next id, so an id must never
be skipped (a database sequence could skip one on rollback).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from app.db import copy_rows, postgresql_cursor, serialized_writes
from app.metrics import BATCHES_SEALED
from app.models import SEALED, Batch, Record, utcnow
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
    records = cast(Table, Record.__table__)
    pending_ids = select(records.c.id, records.c.hash).where(records.c.batch_id.is_(None))
    while True:
        # Plain Core rows of two columns: the ORM rows with a converted
        # accepted_at for each of 1,000 records were a twentieth of a bulk
        # ingest's CPU, and the age matters only for a batch not yet full.
        pending = session.execute(pending_ids.order_by(records.c.id).limit(max_size)).all()
        if not pending:
            break
        due = len(pending) >= max_size
        if not due:
            oldest = session.scalar(
                select(func.min(records.c.accepted_at)).where(records.c.batch_id.is_(None))
            )
            due = oldest is not None and now - oldest >= timedelta(seconds=max_age_seconds)
        if not (due or force):
            break
        # The tree and its proofs are built before queueing for the write lock
        # (SQLite: one writer at a time across processes).
        tree = MerkleTree.of([row.hash for row in pending])
        proofs = tree.proof_bytes()
        with serialized_writes(session):
            sealed.append(_seal(session, [row.id for row in pending], tree.root, proofs))
    return sealed


# PostgreSQL: the batch's (id, position, proof) rows are streamed into a
# session-local staging table with binary COPY, then every record of the batch
# is updated by one statement. The ORM's executemany by primary key was an
# eighth of a bulk ingest's CPU; array parameters (unnest) cost psycopg a
# Python loop per element, measured at 4.5%. (Constant texts: no input.)
_PG_CREATE_SEAL_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS batch_positions_incoming "
    "(id int8, position int4, proof bytea) ON COMMIT DELETE ROWS"
)
_PG_SEAL_COPY = (
    "COPY pg_temp.batch_positions_incoming (id, position, proof) FROM STDIN (FORMAT BINARY)"
)
# The ids are also given as an array: the staging table is never analysed,
# so the planner guessed thousands of rows and joined them against a
# sequential scan of all records, a cost that grew with the ledger on every
# seal; `id = ANY(...)` makes it fetch the batch's rows by primary key.
_PG_SEAL = (
    "WITH staged AS (DELETE FROM pg_temp.batch_positions_incoming RETURNING id, position, proof) "
    "UPDATE records SET batch_id = %(batch_id)s, batch_position = staged.position, "
    "proof = staged.proof FROM staged "
    "WHERE records.id = staged.id AND records.id = ANY(%(ids)s::int8[])"
)


_SQLITE_SEAL = "UPDATE records SET batch_id = ?, batch_position = ?, proof = ? WHERE id = ?"


def _seal(session: Session, record_ids: list[int], root: str, proofs: list[bytes]) -> Batch:
    batch_id = (session.scalar(select(func.max(Batch.id))) or 0) + 1
    batch = Batch(id=batch_id, status=SEALED, size=len(record_ids), root=root)
    session.add(batch)
    session.flush()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        with postgresql_cursor(connection) as cursor:
            cursor.execute(_PG_CREATE_SEAL_STAGE)
            staged = (
                (record_id, position, proof)
                for position, (record_id, proof) in enumerate(zip(record_ids, proofs, strict=True))
            )
            copy_rows(cursor, _PG_SEAL_COPY, ["int8", "int4", "bytea"], staged)
            cursor.execute(_PG_SEAL, {"batch_id": batch_id, "ids": record_ids})
    else:
        # The DB-API's executemany with plain tuples: through SQLAlchemy's
        # per-row parameter processing it took longer than SQLite's own work.
        connection.exec_driver_sql(
            _SQLITE_SEAL,
            [
                (batch_id, position, proof, record_id)
                for position, (record_id, proof) in enumerate(zip(record_ids, proofs, strict=True))
            ],
        )
    session.commit()
    BATCHES_SEALED.inc()
    return batch


def batch_tree(*, session: Session, batch: Batch) -> MerkleTree:
    """Rebuild a batch's tree from its records, in the order it was built."""
    hashes = list(
        session.scalars(
            select(Record.hash).where(Record.batch_id == batch.id).order_by(Record.batch_position)
        )
    )
    return MerkleTree.of(hashes)
