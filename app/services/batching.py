"""Sealing: group pending records into Merkle batches (DESIGN §4).

A batch is sealed when N records are pending or the oldest pending record is
T seconds old. Batch ids are assigned here, in sequence, by the single
anchoring leader: the contract accepts only the next id, so an id must never
be skipped (a database sequence could skip one on rollback).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from app.db import serialized_writes
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
    while True:
        pending = session.execute(
            select(Record.id, Record.hash, Record.accepted_at)
            .where(Record.batch_id.is_(None))
            .order_by(Record.id)
            .limit(max_size)
        ).all()
        if not pending:
            break
        oldest = min(row.accepted_at for row in pending)
        due = len(pending) >= max_size or now - oldest >= timedelta(seconds=max_age_seconds)
        if not (due or force):
            break
        with serialized_writes(session):
            sealed.append(
                _seal(session, [row.id for row in pending], [row.hash for row in pending])
            )
    return sealed


# PostgreSQL: every record of a batch updated by one statement over arrays;
# the ORM's executemany by primary key was an eighth of a bulk ingest's CPU.
_PG_SEAL = (
    "UPDATE records SET batch_id = %(batch_id)s, batch_position = v.position, proof = v.proof "
    "FROM unnest(%(ids)s::int8[], %(positions)s::int4[], %(proofs)s::bytea[]) "
    "AS v(id, position, proof) WHERE records.id = v.id"
)


def _seal(session: Session, record_ids: list[int], hashes: list[str]) -> Batch:
    tree = MerkleTree.of(hashes)
    proofs = tree.proof_bytes()
    batch_id = (session.scalar(select(func.max(Batch.id))) or 0) + 1
    batch = Batch(id=batch_id, status=SEALED, size=len(hashes), root=tree.root)
    session.add(batch)
    session.flush()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            _PG_SEAL,
            {
                "batch_id": batch_id,
                "ids": record_ids,
                "positions": list(range(len(record_ids))),
                "proofs": proofs,
            },
        )
    else:
        records = cast(Table, Record.__table__)
        connection.execute(
            update(records)
            .where(records.c.id == bindparam("record_id"))
            .values(batch_id=batch_id, batch_position=bindparam("position"), proof=bindparam("p")),
            [
                {"record_id": record_id, "position": position, "p": proof}
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
