"""A monitor's mirror: an Ancla database holding what the monitor verified (DESIGN §9).

The records, batches and batch entries go into the ledger's own tables, written
as the service writes them (the records registry derives each record's query
columns from its bytes), so ``ancla export`` and every read of the service work
on a mirror; the monitor's progress and findings go into monitor_state,
monitor_batches and monitor_findings (app.models). Only the monitor writes a
mirror, one monitor at a time (:class:`MirrorLock`).

Nothing here judges: :mod:`app.services.monitor` decides what is verified and
hands this module rows to write inside the transaction it commits.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, cast

import psycopg
from sqlalchemy import Connection, Engine, LargeBinary, event, select, text, type_coerce
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db import (
    copy_rows,
    is_sqlite,
    make_engine,
    normalise_url,
    postgresql_cursor,
    sqlite_path,
)
from app.db import sqlite_multirow_inserts as multirow
from app.models import (
    ANCHORED,
    CHAIN_TARGET_ID,
    MONITOR_STATE_ID,
    Batch,
    BatchEntry,
    ChainTarget,
    MonitorFinding,
    MonitorState,
    Record,
    decimal_text,
    utcnow,
)
from app.records.registry import RecordColumns, RecordSchema, UnknownSchema, schema_named
from ledger.anchors import AnchorEvent

__all__ = [
    "MirrorLock",
    "MirrorRefused",
    "MirroredRecord",
    "RecordWriter",
    "StoredFinding",
    "batch_hashes",
    "mirror_url",
    "record_row",
    "upsert_findings",
]

# How a mirrored record says where it came from (records.source).
MIRROR_SOURCE: Final = "mirror"


class MirrorRefused(Exception):
    """The mirror cannot be used: another monitor holds it, it follows another chain or
    contract, or it is a service's own database."""


def mirror_url(mirror: str) -> str:
    """A database URL for ``--mirror``: a URL as given, or a SQLite file at that path."""
    if "://" in mirror:
        return normalise_url(mirror)
    return f"sqlite:///{Path(mirror).expanduser().resolve()}"


def mirror_engine(url: str) -> Engine:
    """The engine a monitor writes its mirror with.

    SQLite: ``synchronous=NORMAL`` instead of the service's FULL. In WAL mode a
    commit is then written but not fsynced: a killed monitor loses nothing (the
    operating system holds the write), and a power cut may lose the last batches
    committed, whole, never half of one, so that they are checked again. A service
    answers 2xx only for what survives a power cut; a mirror can always fetch again
    what it lost, and the fsync was a third of its commit's time (measured).
    """
    engine = make_engine(url, pool_size=2)
    if is_sqlite(engine):

        def normal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

        event.listen(engine, "connect", normal)
    return engine


def describe_url(url: str) -> str:
    """The mirror's URL for messages, with no password in it."""
    return make_url(url).render_as_string(hide_password=True)


# -- one monitor per mirror ---------------------------------------------------------------

# Arbitrary but fixed ("MONITOR" in ASCII, cut to 31 bits): with the schema's hash, the
# advisory lock a monitor holds on its PostgreSQL mirror (the anchor leader's key differs).
_ADVISORY_CLASS: Final = 0x4D4F4E49


class MirrorLock:
    """One monitor at a time per mirror: an flock on a file beside a SQLite mirror, a
    session-level advisory lock (per schema) on PostgreSQL. A killed monitor's lock goes
    with its process, so the next one resumes at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        url = self.engine.url.render_as_string(hide_password=False)
        if is_sqlite(self.engine):
            path = sqlite_path(url)
            if path is None:
                return  # an in-memory mirror has no other user
            handle = Path(f"{path}-monitor.lock").open("ab")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise MirrorRefused(f"another monitor is running on the mirror {path}") from None
            self._file = handle
            return
        connection = self.engine.connect()
        try:
            got = bool(
                connection.execute(
                    text("SELECT pg_try_advisory_lock(:class, hashtext(current_schema()))"),
                    {"class": _ADVISORY_CLASS},
                ).scalar()
            )
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not got:
            connection.close()
            raise MirrorRefused(f"another monitor is running on the mirror {describe_url(url)}")
        self._connection = connection

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._file is not None:
            self._file.close()
            self._file = None


# -- what the mirror follows ----------------------------------------------------------


def open_state(
    session: Session,
    *,
    chain_id: int,
    genesis_hash: str,
    contract: str,
    api_url: str,
    from_block: int,
) -> MonitorState:
    """The mirror's state row, made on first use; MirrorRefused if the mirror follows
    another chain or contract, or is a service's database (records, no monitor state)."""
    state = session.get(MonitorState, MONITOR_STATE_ID)
    if state is None:
        if session.scalar(select(Record.id).limit(1)) is not None:
            raise MirrorRefused(
                "this database holds records but no monitor state: it is a service's "
                "database, not a mirror; give the monitor a database of its own"
            )
        state = MonitorState(
            id=MONITOR_STATE_ID,
            chain_id=chain_id,
            genesis_hash=genesis_hash,
            contract=contract,
            api_url=api_url,
            from_block=from_block,
        )
        session.add(state)
        # Receipts and exports read from a mirror say "anchored" only for batches
        # on this chain and contract (app.services.receipts.public_status).
        if session.get(ChainTarget, CHAIN_TARGET_ID) is None:
            session.add(
                ChainTarget(
                    id=CHAIN_TARGET_ID,
                    chain_id=chain_id,
                    genesis_hash=genesis_hash,
                    contract=contract,
                )
            )
        return state
    followed = (state.chain_id, state.genesis_hash, state.contract.lower())
    if followed != (chain_id, genesis_hash, contract.lower()):
        raise MirrorRefused(
            f"this mirror follows contract {state.contract} on chain {state.chain_id} "
            f"(genesis {state.genesis_hash}), not {contract} on chain {chain_id} "
            f"(genesis {genesis_hash}); give another --mirror"
        )
    if state.api_url != api_url:
        state.api_url = api_url
    return state


# -- findings ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """A finding as the mirror keeps it: once per fingerprint."""

    fingerprint: str
    kind: str
    batch_id: int | None
    record_hash: str | None
    order_ref: str | None
    message: str


def upsert_findings(session: Session, findings: Sequence[StoredFinding]) -> list[bool]:
    """Record ``findings`` in monitor_findings; for each, whether it is new (never seen
    before by this mirror)."""
    if not findings:
        return []
    now = utcnow()
    fingerprints = sorted({f.fingerprint for f in findings})
    known: dict[str, MonitorFinding] = {}
    for start in range(0, len(fingerprints), 500):
        chunk = fingerprints[start : start + 500]
        for stored in session.scalars(
            select(MonitorFinding).where(MonitorFinding.fingerprint.in_(chunk))
        ):
            known[stored.fingerprint] = stored
    new: list[bool] = []
    for finding in findings:
        row = known.get(finding.fingerprint)
        if row is None:
            row = MonitorFinding(
                fingerprint=finding.fingerprint,
                kind=finding.kind,
                batch_id=finding.batch_id,
                record_hash=finding.record_hash,
                order_ref=finding.order_ref,
                message=finding.message,
                first_seen_at=now,
                last_seen_at=now,
                times_seen=1,
            )
            session.add(row)
            known[finding.fingerprint] = row
            new.append(True)
        else:
            row.last_seen_at = now
            row.message = finding.message
            row.times_seen += 1
            new.append(False)
    session.flush()
    return new


# -- batches ------------------------------------------------------------------------------


def add_batch_row(
    session: Session, event: AnchorEvent, *, chain_id: int, size: int, timestamp: int
) -> None:
    """The batch as the chain anchored it, in the ledger's batches table (once)."""
    if session.get(Batch, event.batch_id) is not None:
        return
    anchored = datetime.fromtimestamp(timestamp, UTC)
    session.add(
        Batch(
            id=event.batch_id,
            status=ANCHORED,
            size=size,
            root=event.root,
            # A mirror knows when the chain anchored the batch, not when it was sealed.
            sealed_at=anchored,
            chain_id=chain_id,
            contract=event.contract,
            tx_hash=event.tx_hash,
            block_number=event.block_number,
            block_hash=event.block_hash,
            log_index=event.log_index,
            block_timestamp=timestamp,
            anchored_at=anchored,
        )
    )


def batch_hashes(session: Session, batch_id: int) -> dict[int, bytes]:
    """The mirrored records of a batch: position -> record hash (32 bytes)."""
    digest = type_coerce(Record.hash, LargeBinary)
    rows = session.execute(
        select(BatchEntry.position, digest)
        .join(Record, Record.id == BatchEntry.record_id)
        .where(BatchEntry.batch_id == batch_id)
    )
    return {int(position): bytes(record_hash) for position, record_hash in rows}


def orders_of(session: Session, hashes: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
    """Buyer RUC and order number of mirrored records, by hash."""
    wanted = sorted(set(hashes))
    found: dict[str, tuple[str | None, str | None]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for record_hash, buyer_ruc, order_number in session.execute(
            select(Record.hash, Record.buyer_ruc, Record.order_number).where(Record.hash.in_(chunk))
        ):
            found[record_hash] = (buyer_ruc, order_number)
    return found


def batches_of(session: Session, hashes: Iterable[str]) -> dict[str, int]:
    """The batch of each mirrored record, by hash."""
    wanted = sorted(set(hashes))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for record_hash, batch_id in session.execute(
            select(Record.hash, BatchEntry.batch_id)
            .join(BatchEntry, BatchEntry.record_id == Record.id)
            .where(Record.hash.in_(chunk))
        ):
            found[record_hash] = int(batch_id)
    return found


# -- records ----------------------------------------------------------------------------

# The widths of the string query columns (app.models.Record): a record whose columns do
# not fit is mirrored with none (its bytes are what is verified; PostgreSQL would refuse
# the row, and a hostile service must not stop the monitor with one).
_WIDTHS: Final = {
    name: cast(Any, getattr(Record, name).type).length
    for name in (
        "buyer_ruc",
        "buyer_name",
        "order_number",
        "supplier_ruc",
        "supplier_name",
        "currency",
        "prev_hash",
        "identity",
    )
}
_WIDE: Final = tuple((RecordColumns._fields.index(name), width) for name, width in _WIDTHS.items())
_SCHEMA_WIDTH: Final = cast(Any, Record.schema.type).length
_NO_COLUMNS: Final = RecordColumns()


@dataclass(slots=True)
class MirroredRecord:
    """A record about to be mirrored: its bytes, what they hash to, and its columns."""

    position: int
    digest: bytes
    canonical: bytes
    schema_name: str
    schema: RecordSchema | None
    columns: RecordColumns
    documents: list[str] = field(default_factory=list)


def record_row(position: int, digest: bytes, canonical: bytes, record: Any) -> MirroredRecord:
    """The row of a verified record (bytes that hash to their leaf), with the query
    columns its schema derives from it; a record of a schema this monitor does not
    know, or whose columns cannot be derived, is mirrored with none."""
    raw_schema = record.get("schema") if isinstance(record, dict) else None
    name = raw_schema[:_SCHEMA_WIDTH] if isinstance(raw_schema, str) else "(unreadable)"
    try:
        schema = schema_named(raw_schema)
        columns = schema.columns(record)
        documents = schema.documents(record)
    except (UnknownSchema, KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
        return MirroredRecord(position, digest, canonical, name, None, _NO_COLUMNS)
    for index, width in _WIDE:
        value = columns[index]
        if value is not None and (not isinstance(value, str) or len(value) > width):
            return MirroredRecord(position, digest, canonical, name, schema, _NO_COLUMNS)
    return MirroredRecord(position, digest, canonical, name, schema, columns, documents)


_RECORD_COLUMNS: Final = (
    "id",
    "hash",
    "canonical",
    "schema",
    *RecordColumns._fields,
    "source",
    "accepted_at",
)
_PG_RECORD_TYPES: Final = [
    "int8",
    "bytea",
    "bytea",
    "varchar",
    "varchar",  # buyer_ruc
    "varchar",  # buyer_name
    "varchar",  # order_number
    "varchar",  # supplier_ruc
    "varchar",  # supplier_name
    "timestamptz",  # issued_at
    "varchar",  # currency
    "numeric",  # total
    "varchar",  # prev_hash
    "varchar",  # identity
    "varchar",  # source
    "timestamptz",  # accepted_at
]
_ISSUED_AT: Final = _RECORD_COLUMNS.index("issued_at")
_TOTAL: Final = _RECORD_COLUMNS.index("total")
_COLUMN_LIST: Final = ", ".join(_RECORD_COLUMNS)
# SQLite: multi-row VALUES, 16 values a row, far under its 32,766 variables.
_SQLITE_ROWS: Final = 1000
_PG_COPY_RECORDS: Final = f"COPY records ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_PG_COPY_ENTRIES: Final = (
    "COPY batch_entries (record_id, batch_id, position, proof) FROM STDIN (FORMAT BINARY)"
)
_PG_COPY_DOCUMENTS: Final = "COPY record_documents (sha256, record_id) FROM STDIN (FORMAT BINARY)"


def _sqlite_time(value: datetime) -> str:
    """A UTCDateTime as SQLAlchemy stores it on SQLite (naive UTC, microseconds)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


class RecordWriter:
    """Writes verified records, their batch entries and their documents into the open
    transaction of ``session``, in chunks (multi-row INSERTs on SQLite, binary COPY on
    PostgreSQL), with ids of its own: only the monitor writes its mirror.

    A record whose hash, or whose schema and identity, the mirror already holds is
    not written twice: :meth:`flush` hands it back, :meth:`taken` says why, and the
    caller decides what that means.
    """

    def __init__(self, session: Session, *, batch_id: int, proofs: Sequence[bytes]) -> None:
        self.session = session
        self.connection = session.connection()
        self.sqlite = self.connection.dialect.name == "sqlite"
        self.batch_id = batch_id
        self.proofs = proofs
        self.accepted_at = utcnow()
        self.written = 0
        self._next_id: int | None = None

    def taken(self, rows: Sequence[MirroredRecord]) -> tuple[set[bytes], set[tuple[str, str]]]:
        """Of ``rows``, the hashes and the (schema, identity) pairs the mirror holds."""
        digests = [row.digest for row in rows]
        identities = sorted(
            {(row.schema_name, row.columns.identity) for row in rows if row.columns.identity}
        )
        hashes: set[bytes] = set()
        stored_hash = type_coerce(Record.hash, LargeBinary)
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            hashes.update(
                bytes(found)
                for found in self.session.scalars(
                    select(stored_hash).where(type_coerce(Record.hash, LargeBinary).in_(chunk))
                )
            )
        pairs: set[tuple[str, str]] = set()
        by_schema: dict[str, list[str]] = {}
        for schema_name, identity in identities:
            by_schema.setdefault(schema_name, []).append(identity)
        for schema_name, names in by_schema.items():
            for start in range(0, len(names), 500):
                names_chunk = names[start : start + 500]
                pairs.update(
                    (schema_name, str(identity))
                    for identity in self.session.scalars(
                        select(Record.identity).where(
                            Record.schema == schema_name, Record.identity.in_(names_chunk)
                        )
                    )
                )
        return hashes, pairs

    def flush(self, rows: Sequence[MirroredRecord]) -> list[MirroredRecord]:
        """Write ``rows``, with their batch entries and documents; the rows the
        mirror's unique indexes refused (a hash, or a schema and identity, it holds
        already), written not at all. The common case, all new, costs no lookup."""
        if not rows:
            return []
        ids = self._ids(len(rows))
        records: list[list[Any]] = []
        accepted: Any = _sqlite_time(self.accepted_at) if self.sqlite else self.accepted_at
        for record_id, row in zip(ids, rows, strict=True):
            values: list[Any] = [
                record_id,
                row.digest,
                row.canonical,
                row.schema_name,
                *row.columns,
                MIRROR_SOURCE,
                accepted,
            ]
            if self.sqlite:
                issued_at, total = values[_ISSUED_AT], values[_TOTAL]
                if issued_at is not None:
                    values[_ISSUED_AT] = _sqlite_time(issued_at)
                if total is not None:
                    values[_TOTAL] = decimal_text(total)
            records.append(values)
        # The ids written, or None: all of them.
        written: set[int] | None = None
        if self.sqlite:
            written = self._insert_sqlite(records, ids)
        elif not self._copy_postgresql(records):
            return list(rows)
        entries: list[tuple[int, int, int, bytes]] = []
        documents: list[tuple[str, int]] = []
        refused: list[MirroredRecord] = []
        for record_id, row in zip(ids, rows, strict=True):
            if written is not None and record_id not in written:
                refused.append(row)
                continue
            entries.append((record_id, self.batch_id, row.position, self.proofs[row.position]))
            if row.documents:
                documents += [(sha256, record_id) for sha256 in sorted(set(row.documents))]
        if self.sqlite:
            statements = multirow(
                "INSERT INTO batch_entries (record_id, batch_id, position, proof)",
                entries,
                rows_per_statement=_SQLITE_ROWS,
            )
            if documents:
                statements += multirow(
                    "INSERT INTO record_documents (sha256, record_id)",
                    documents,
                    rows_per_statement=_SQLITE_ROWS,
                )
            for statement, params in statements:
                self.connection.exec_driver_sql(statement, params)
        else:
            with postgresql_cursor(self.connection) as cursor:
                copy_rows(cursor, _PG_COPY_ENTRIES, ["int8", "int8", "int4", "bytea"], entries)
                if documents:
                    copy_rows(cursor, _PG_COPY_DOCUMENTS, ["varchar", "int8"], documents)
        self.written += len(entries)
        return refused

    def _insert_sqlite(self, records: list[list[Any]], ids: list[int]) -> set[int] | None:
        """Multi-row INSERTs that skip a row the unique indexes refuse; None if every row
        went in, else the ids of those that did."""
        statements = multirow(
            f"INSERT INTO records ({_COLUMN_LIST})",
            records,
            rows_per_statement=_SQLITE_ROWS,
            tail=" ON CONFLICT DO NOTHING",
        )
        inserted = sum(
            self.connection.exec_driver_sql(sql, params).rowcount for sql, params in statements
        )
        if inserted == len(records):
            return None
        found = self.connection.exec_driver_sql(
            "SELECT id FROM records WHERE id BETWEEN ? AND ?", (ids[0], ids[-1])
        )
        return {int(record_id) for (record_id,) in found}

    def _copy_postgresql(self, records: list[list[Any]]) -> bool:
        """One binary COPY; False (and nothing written) if the unique indexes refused a row."""
        with postgresql_cursor(self.connection) as cursor:
            cursor.execute("SAVEPOINT ancla_mirror_copy")
            try:
                copy_rows(cursor, _PG_COPY_RECORDS, _PG_RECORD_TYPES, map(tuple, records))
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT ancla_mirror_copy")
                return False
            cursor.execute("RELEASE SAVEPOINT ancla_mirror_copy")
        return True

    def _ids(self, count: int) -> list[int]:
        if self.sqlite:
            if self._next_id is None:
                top = self.connection.exec_driver_sql("SELECT max(id) FROM records").scalar()
                self._next_id = int(top or 0) + 1
            first = self._next_id
            self._next_id += count
            return list(range(first, first + count))
        drawn = self.connection.exec_driver_sql(
            "SELECT nextval('records_id_seq') FROM generate_series(1, %(count)s)",
            {"count": count},
        )
        return [int(record_id) for (record_id,) in drawn]


def without_identity(row: MirroredRecord) -> MirroredRecord:
    """``row`` with no identity: a second record of one identity (a history that forks,
    an order recorded twice) is mirrored too, and the unique index keeps the first."""
    row.columns = row.columns._replace(identity=None)
    return row
