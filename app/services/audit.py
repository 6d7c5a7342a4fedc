"""Bulk re-verification (`ancla verify`): the whole ledger against itself and the chain.

Nothing here trusts the service's own status columns. For every record: its
stored canonical bytes re-hash to its hash, and its query columns agree with
those bytes. For every batch: the root rebuilt from its records equals the
stored root and the root on chain; its anchoring event exists once, from a
transaction that succeeded, in a block that is still canonical, with enough
confirmations. On chain: batch ids 1..N each anchored exactly once. Pending
records and batches must not be older than the batching window allows.

It streams (server-side cursors, one batch of records in memory at a time) and
asks the chain per batch, never per record.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import InvalidOperation
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson
from psycopg.pq import TransactionStatus
from sha3 import keccak_256
from sqlalchemy import LargeBinary, Select, exists, func, select, type_coerce
from sqlalchemy.orm import Session

from app.db import SessionFactory, postgresql_cursor
from app.models import (
    SEALED,
    SUBMITTED,
    Agency,
    Batch,
    BatchEntry,
    PendingRecord,
    Record,
    utcnow,
)
from app.processes import start_worker_server, worker_context
from app.records.registry import QUERY_COLUMNS, UnknownSchema, schema_named
from app.services.histories import check_histories
from ledger.chain import AnchorEvent, AnchorFacts, ChainClient, Registry
from ledger.errors import MerkleError
from ledger.hashing import from_hex32, to_hex
from ledger.merkle import MerkleTree, leaf_bytes, root_from_proof

# Kinds of discrepancy, as reported (and documented in the README).
TAMPERED_RECORD = "tampered_record"  # canonical bytes do not hash to the record's hash
DERIVED_MISMATCH = "derived_mismatch"  # a query column disagrees with the canonical bytes
MISSING_RECORD = "missing_record"  # a batch lacks the record at some position
EXTRA_RECORD = "extra_record"  # a batch holds more records than it was sealed with
ROOT_MISMATCH = "root_mismatch"  # rebuilt root, stored root and chain root disagree
ANCHOR_MISSING = "anchor_missing"  # the batch should be on chain and is not
ANCHOR_MISMATCH = "anchor_mismatch"  # the chain's anchor differs from the stored one
ANCHOR_REORGED = "anchor_reorged"  # the anchoring block is no longer canonical
ANCHOR_FAILED = "anchor_failed"  # the anchoring transaction reverted
UNCONFIRMED = "insufficient_confirmations"  # marked final with fewer than K confirmations
MISSING_BATCH = "missing_batch"  # a batch id is absent from the database
CHAIN_GAP = "chain_gap"  # a batch id was never anchored while later ones were
DUPLICATE_ANCHOR = "duplicate_anchor"  # one batch id anchored more than once
UNANCHORED_TOO_LONG = "unanchored_too_long"  # pending past the batching window
UNQUEUED_RECORD = "unqueued_record"  # in no batch and not queued for one: never to be anchored
QUEUED_IN_BATCH = "queued_in_batch"  # in a batch and still queued: sealing would stop on it
# A batch entry naming no batch, a queue row naming no record, or a record
# naming no agency: what foreign keys would refuse (there are none, models.py).
DANGLING_REFERENCE = "dangling_reference"

_STREAM_CHUNK = 5_000


@dataclass
class Discrepancy:
    kind: str
    detail: str
    batch_id: int | None = None
    record_hash: str | None = None
    record_id: int | None = None
    tx_hash: str | None = None
    expected: Any = None
    actual: Any = None
    # The chain (an order: "<buyer RUC>/<order number>") a history finding is about.
    order: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class AuditReport:
    records_checked: int = 0
    batches_checked: int = 0
    anchors_checked: int = 0
    histories_checked: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def add(self, kind: str, detail: str, **where: Any) -> None:
        self.discrepancies.append(Discrepancy(kind, detail, **where))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records_checked": self.records_checked,
            "batches_checked": self.batches_checked,
            "anchors_checked": self.anchors_checked,
            "histories_checked": self.histories_checked,
            "discrepancies_by_kind": dict(Counter(d.kind for d in self.discrepancies)),
            "discrepancies": [d.to_dict() for d in self.discrepancies],
        }


@dataclass
class AuditScope:
    batch_id: int | None = None
    since: datetime | None = None
    buyer: str | None = None

    @property
    def whole_ledger(self) -> bool:
        return self.batch_id is None and self.since is None and self.buyer is None


# -- records -------------------------------------------------------------------------

# Streamed per record, with their PostgreSQL types for COPY's binary format:
# the record, its query columns (app.records.registry.QUERY_COLUMNS, in that
# order), and its place in its batch.
_RECORD_COLUMNS_AND_PG_TYPES = (
    (Record.id, "int8"),
    # The stored bytes, not Hash32's hex: hashing compares digests and the tree
    # is built of them, so rendering 1,000,000 hashes as text and parsing them
    # back cost a second of an audit (measured); reports render what they name.
    (type_coerce(Record.hash, LargeBinary).label("hash"), "bytea"),
    (Record.canonical, "bytea"),
    (Record.schema, "varchar"),
    (Record.buyer_ruc, "varchar"),
    (Record.buyer_name, "varchar"),
    (Record.order_number, "varchar"),
    (Record.supplier_ruc, "varchar"),
    (Record.supplier_name, "varchar"),
    (Record.issued_at, "timestamptz"),
    (Record.currency, "varchar"),
    (Record.total, "numeric"),
    (Record.prev_hash, "varchar"),
    (Record.identity, "varchar"),
    (BatchEntry.batch_id, "int8"),
    (BatchEntry.position, "int4"),
)
_RECORD_COLUMNS = tuple(column for column, _ in _RECORD_COLUMNS_AND_PG_TYPES)
_PG_TYPES = [pg_type for _, pg_type in _RECORD_COLUMNS_AND_PG_TYPES]

# Positions in _RECORD_COLUMNS (rows are read as plain tuples: attribute access
# on SQLAlchemy rows cost more than the hashing, measured).
_ID, _HASH, _CANONICAL, _SCHEMA = 0, 1, 2, 3
_QUERY = slice(4, 4 + len(QUERY_COLUMNS))
_BATCH_ID, _POSITION = 4 + len(QUERY_COLUMNS), 5 + len(QUERY_COLUMNS)
if tuple(c.key for c in _RECORD_COLUMNS[_QUERY]) != QUERY_COLUMNS:  # pragma: no cover
    raise RuntimeError("the audit must read app.records.QUERY_COLUMNS in their order")

# Anchors whose chain facts are asked in one go (JSON-RPC batch requests).
_CHAIN_WINDOW = 32


def _derived_problems(row: Any) -> list[tuple[str, Any, Any]]:
    """(column, from bytes, stored) for every column that disagrees with the bytes.

    The record's schema (its registry entry) says what its query columns
    are; a schema nobody registered cannot be checked, and is reported.
    """
    try:
        # orjson: a third of json.loads' time, and the bytes were strictly
        # parsed when accepted (a tampered record fails the hash check first).
        record = orjson.loads(row[_CANONICAL])
        name = record["schema"]
        schema = schema_named(name)
    except UnknownSchema as exc:
        return [("canonical", "a record of a registered schema", str(exc))]
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        return [("canonical", "a record with a schema", f"unreadable: {exc}")]
    try:
        columns = schema.columns(record)
    except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
        return [("canonical", f"a {schema.noun} record", f"unreadable: {exc}")]
    # The usual case without building the tuples below (a NamedTuple equals
    # the plain tuple of the same values).
    if name == row[_SCHEMA] and columns == row[_QUERY]:
        return []
    expected = (name, *columns)
    stored = (row[_SCHEMA], *row[_QUERY])
    return [
        (column, str(value), str(found))
        for column, value, found in zip(("schema", *QUERY_COLUMNS), expected, stored, strict=True)
        if value != found
    ]


def _hash_text(stored: object) -> str:
    """A stored record hash as reports name it (app.models.Hash32's text form)."""
    if isinstance(stored, bytes | bytearray | memoryview):
        return "0x" + bytes(stored).hex()
    # Only a write made outside Ancla leaves anything else (SQLite keeps any type).
    return f"text {str(stored)[:80]!r}"


def _digest(record_hash: str) -> bytes | None:
    """The 32 bytes of a stored hash; None if what is stored is not a hash."""
    try:
        return from_hex32(record_hash)
    except ValueError:
        return None


def _check_record(row: Any, report: AuditReport) -> bool:
    """Hash and derived columns of one record; False if its bytes are not its hash."""
    report.records_checked += 1
    stored = row[_HASH]
    actual = keccak_256(row[_CANONICAL]).digest()
    if actual != stored:
        record_hash = _hash_text(stored)
        report.add(
            TAMPERED_RECORD,
            "the stored bytes do not hash to the record's hash",
            record_id=row[_ID],
            record_hash=record_hash,
            batch_id=row[_BATCH_ID],
            expected=record_hash,
            actual=to_hex(actual),
        )
        return False
    for column, from_bytes, in_column in _derived_problems(row):
        report.add(
            DERIVED_MISMATCH,
            f"column {column} disagrees with the record's bytes",
            record_id=row[_ID],
            record_hash=_hash_text(stored),
            expected=from_bytes,
            actual=in_column,
        )
    return True


def _stream(session: Session, query: Any) -> Iterator[Any]:
    # stream_results: a server-side cursor on PostgreSQL, so memory stays flat.
    # Core on the session's connection: no ORM result processing per row.
    yield from session.connection().execute(
        query.execution_options(stream_results=True, yield_per=_STREAM_CHUNK)
    )


@contextmanager
def _serial_plans(session: Session) -> Iterator[None]:
    """No parallel plans on PostgreSQL meanwhile: with the audit's processes on
    every core, a query's parallel workers only took cores from them (the seq scan
    of the records for their agencies cost three processes 0.26 s each, measured).
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
    yield
    # Not after an error: the transaction is aborted, and its rollback undoes the SET.
    connection.exec_driver_sql("RESET max_parallel_workers_per_gather")


def _stream_records(session: Session, query: Any, *, alone: bool) -> Iterator[tuple[Any, ...]]:
    """The rows of a select of _RECORD_COLUMNS as tuples, streamed.

    PostgreSQL, in binary, parsed by psycopg's C code: ``alone`` (one process
    audits), by COPY ... TO STDOUT, the server streaming while we hash (a
    server-side cursor waits for each FETCH), twice as fast as the cursor
    then; with other audit processes on the same cores, by a server-side
    cursor, which costs a quarter less CPU per row (psycopg's COPY reads each
    row through a Python generator) while the other processes fill its waits
    (bench/verify.py, figures in bench/README.md). The query's
    parameters are integers and dates, rendered as literals (COPY takes none).
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield from (tuple(row) for row in _stream(session, query))
        return
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    with postgresql_cursor(connection) as cursor:
        # For a range of batches the planner chose to read every record,
        # hash-join and sort the range (a second per 125,000 records, measured)
        # where walking the (batch, position) index and fetching each record
        # by id streams from the first row and needs no memory; JIT compiling
        # the query cost more than it saved; and psycopg loads a timestamptz
        # four times faster in a session whose zone is 'UTC' than in one of
        # 'Etc/UTC', a server's usual default (the same instants either way).
        # For this query only: reset after.
        cursor.execute("SET enable_sort = off; SET jit = off; SET TIME ZONE 'UTC'")
        try:
            if alone:
                with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)") as copy:
                    copy.set_types(_PG_TYPES)
                    yield from copy.rows()
            else:
                with cursor.connection.cursor(name="ancla_audit", binary=True) as named:
                    named.execute(sql)
                    while rows := named.fetchmany(_STREAM_CHUNK):
                        yield from rows
        finally:
            # Not after an error: the transaction is aborted, and rolled back
            # (which undoes the SETs) by whoever handles the error.
            if cursor.connection.info.transaction_status == TransactionStatus.INTRANS:
                cursor.execute("RESET enable_sort; RESET jit; RESET TIME ZONE")


class _BatchedRows:
    """The rows of a stream ordered by batch id, one batch at a time, in id order.

    Holds one batch's rows in memory (the tree needs them all anyway); a
    batch with no records left (all deleted) gets none.
    """

    def __init__(self, stream: Iterator[tuple[Any, ...]]) -> None:
        self._stream = stream
        self._groups = groupby(stream, key=itemgetter(_BATCH_ID))
        self._current = next(self._groups, None)

    def get(self, batch_id: int) -> list[tuple[Any, ...]]:
        while self._current is not None and self._current[0] < batch_id:
            self._current = next(self._groups, None)
        if self._current is None or self._current[0] != batch_id:
            return []
        rows = list(self._current[1])
        self._current = next(self._groups, None)
        return rows

    def finish(self) -> None:
        """Read the stream to its end, so its query (a COPY) is over."""
        while self._current is not None:
            self._current = next(self._groups, None)

    def close(self) -> None:
        """End the stream's query now. A COPY left open holds the connection: the
        session's rollback after an error (the chain gone mid-audit) then hung."""
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


# -- the audit -----------------------------------------------------------------------


class Auditor:
    def __init__(
        self,
        *,
        session_factory: SessionFactory,
        client: ChainClient,
        registry: Registry,
        confirmations: int,
        pending_window: timedelta,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.registry = registry
        self.confirmations = confirmations
        self.pending_window = pending_window
        self.progress = progress or (lambda n: None)

    def count_records(self, scope: AuditScope) -> int:
        with self.session_factory() as session:
            query = select(func.count()).select_from(Record)
            query = self._scope_records(query, scope)
            return session.scalar(query) or 0

    @staticmethod
    def _scope_records(query: Any, scope: AuditScope) -> Any:
        if scope.batch_id is not None:
            query = query.where(
                Record.id.in_(
                    select(BatchEntry.record_id).where(BatchEntry.batch_id == scope.batch_id)
                )
            )
        if scope.since is not None:
            query = query.where(Record.accepted_at >= scope.since)
        if scope.buyer is not None:
            query = query.where(Record.buyer_ruc == scope.buyer)
        return query

    def run(
        self, scope: AuditScope | None = None, *, jobs: int = 1, worker: WorkerSetup | None = None
    ) -> AuditReport:
        """Audit ``scope`` (default: the whole ledger).

        With ``jobs`` > 1 (and ``worker``, how a process of its own reaches the
        same database and chain), the batches are checked by that many
        processes, over contiguous ranges of batches, each with its own
        database stream and chain requests; their findings are merged in batch
        order, so the report is the one a single process makes.
        """
        scope = scope or AuditScope()
        report = AuditReport()
        # A session of its own, closed before the chain is read: no transaction
        # is held open across the eth_getLogs requests.
        with self.session_factory() as session:
            start = self._scan_start(session)
        # One read of the chain's anchors (eth_getLogs), grouped by batch id.
        found = self.registry.find_anchor_events(from_block=start)
        if start and not any(e.batch_id == 1 for e in self._our_events(found)):
            # Batch 1's event is not where the database says: read from the chain's
            # first block, so that the stored anchor is judged against the real one.
            found = self.registry.find_anchor_events()
        events: dict[int, list[AnchorEvent]] = {}
        for event in found:
            events.setdefault(event.batch_id, []).append(event)
        head = self.client.head()
        now = utcnow()
        with self.session_factory() as session:
            batches = self._batches_in_scope(session, scope)
            self._check_batch_ids(session, scope, events, report)
            if jobs > 1 and worker is not None and len(batches) > 1:
                self._check_batches_in_processes(
                    session,
                    batches,
                    events,
                    head,
                    now,
                    report,
                    jobs,
                    worker,
                    rest=lambda part: self._check_all_but_batches(session, scope, now, part),
                )
            else:
                self.check_batches(session, scope, batches, events, head, now, report)
                self._check_all_but_batches(session, scope, now, report)
        return report

    def _check_all_but_batches(
        self, session: Session, scope: AuditScope, now: datetime, report: AuditReport
    ) -> None:
        """Records in no batch, the rows that name nothing, and order histories."""
        self._check_pending(session, scope, now, report)
        self._check_queued_in_batch(session, scope, report)
        self._check_references(session, scope, report)
        if scope.batch_id is None and scope.since is None:
            # A history spans batches and times: checked whole, or by buyer.
            report.histories_checked = check_histories(
                session=session, buyer=scope.buyer, add=report.add
            )

    def check_batches(
        self,
        session: Session,
        scope: AuditScope,
        batches: list[Batch],
        events: dict[int, list[AnchorEvent]],
        head: int,
        now: datetime,
        report: AuditReport,
        *,
        alone: bool = True,
    ) -> None:
        """Every record of ``batches`` re-hashed, their roots rebuilt, their anchors checked.

        ``alone``: no other process audits meanwhile (see _stream_records)."""
        rows = self._batched_rows(session, scope, batches, alone=alone)
        # The cyclic GC paused: the rows, parsed records and trees make no
        # cycles (reference counts free them, so memory stays flat), and its
        # passes over a batch's young objects cost 6% of the audit, measured.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for start in range(0, len(batches), _CHAIN_WINDOW):
                window = batches[start : start + _CHAIN_WINDOW]
                facts = self._anchor_facts(window, events)
                for batch in window:
                    self._check_batch(
                        session,
                        batch,
                        rows.get(batch.id),
                        events.get(batch.id, []),
                        facts.get(batch.id),
                        head,
                        now,
                        report,
                    )
            rows.finish()
        finally:
            if collecting:
                gc.enable()
            rows.close()

    def _check_batches_in_processes(
        self,
        session: Session,
        batches: list[Batch],
        events: dict[int, list[AnchorEvent]],
        head: int,
        now: datetime,
        report: AuditReport,
        jobs: int,
        worker: WorkerSetup,
        rest: Callable[[AuditReport], None],
    ) -> None:
        """The batches' checks over ``jobs`` processes, and ``rest`` (the checks
        that are not per batch) in this one while the others start."""
        # Ranges of about equal records, several per process, so a slow range
        # does not leave the other processes idle at the end (8 per process:
        # 4 left them idle for a second at the end of 1,000,000 records).
        ranges = _ranges(batches, jobs * 8)
        tasks = [
            _RangeTask(
                worker=worker,
                first=chunk[0].id,
                last=chunk[-1].id,
                batch_ids=[b.id for b in chunk],
                events={b.id: events.get(b.id, []) for b in chunk},
                head=head,
                now=now,
                confirmations=self.confirmations,
                pending_window=self.pending_window,
            )
            for chunk in ranges
        ]
        parts: list[AuditReport | None] = [None] * len(tasks)
        # Forked from a server process that imported this module once, not
        # from this process (app.processes); started by `ancla verify` already.
        start_worker_server(__name__)
        context = worker_context()
        # This process is one of the ``jobs``: it would only wait, and a process
        # started costs at least a fork and a connection of its own. The others
        # take ranges from the front, one at a time (a pool's own queue holds
        # a second range per process, which this one then could not take: it
        # sat idle for the last two ranges, measured); this one from the back,
        # until they meet. The first jobs - 1 ranges are always the workers'.
        after = AuditReport()
        untaken = _Ranges(len(tasks))
        with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=context) as pool:
            running: dict[Future[AuditReport], int] = {}
            for _ in range(jobs - 1):
                first = untaken.front()
                if first is not None:
                    running[pool.submit(_audit_range, tasks[first])] = first
            finished: dict[int, Future[AuditReport]] = {}
            feeder = threading.Thread(
                target=_feed,
                args=(pool, tasks, untaken, running, finished, self.progress),
                name="audit-feeder",
                daemon=True,
            )
            feeder.start()
            try:
                # Reported after the batches, as in one process; done first, while
                # the worker processes start.
                with _serial_plans(session):
                    rest(after)
                while (index := untaken.back()) is not None:
                    part = AuditReport()
                    self.check_batches(
                        session, AuditScope(), ranges[index], events, head, now, part, alone=False
                    )
                    parts[index] = part
            finally:
                untaken.close()  # on an error here, the workers get no more
                feeder.join()
            for index, future in sorted(finished.items()):
                parts[index] = future.result()  # a worker's error is raised here
        # In batch order: the report a single process makes.
        for checked in [*parts, after]:
            assert checked is not None  # noqa: S101 - every range was checked above
            report.records_checked += checked.records_checked
            report.batches_checked += checked.batches_checked
            report.anchors_checked += checked.anchors_checked
            report.histories_checked += checked.histories_checked
            report.discrepancies.extend(checked.discrepancies)

    def _scan_start(self, session: Session) -> int:
        """The first block to read the registry's events from: the block this
        database says batch 1 was anchored in, else 0 (the chain's first block).

        The contract anchors batch ids in order from 1, so none of its events is
        older than batch 1's; on a long chain whose endpoint caps eth_getLogs
        ranges, reading from the genesis block cost a request per capped range of
        every block before the contract. Trusting the database here hides nothing:
        when batch 1's event is not in the range read (the database names a later
        block than the chain's), :meth:`run` reads the chain again from its first
        block, and the stored anchor is reported as not the chain's.
        """
        first = session.execute(
            select(Batch.contract, Batch.block_number).where(Batch.id == 1)
        ).first()
        if first is None or first.contract != self.registry.address or first.block_number is None:
            return 0
        return int(first.block_number)

    def _our_events(self, events: list[AnchorEvent]) -> list[AnchorEvent]:
        return [e for e in events if e.contract == self.registry.address]

    def _anchor_facts(
        self, window: list[Batch], events: dict[int, list[AnchorEvent]]
    ) -> dict[int, AnchorFacts]:
        """The chain's word on the anchors of a window of batches, in batch requests."""
        asks: list[tuple[int, int | None, str | None]] = []
        for batch in window:
            if batch.status in (SEALED, SUBMITTED):
                continue
            ours = self._our_events(events.get(batch.id, []))
            if ours:
                asks.append((batch.id, ours[0].block_number, ours[0].tx_hash))
            else:
                # No event: is the block the database names still there?
                asks.append((batch.id, batch.block_number, None))
        return {facts.batch_id: facts for facts in self.registry.anchor_facts(asks)}

    def _batched_rows(
        self, session: Session, scope: AuditScope, batches: list[Batch], *, alone: bool
    ) -> _BatchedRows:
        """Every record of the batches in scope, in one streamed query, batch by batch.

        One server-side cursor for the whole ledger: a query per batch cost a
        cursor round trip per 1,000 records.
        """
        query = select(*_RECORD_COLUMNS).join(BatchEntry, BatchEntry.record_id == Record.id)
        if scope.batch_id is not None:
            query = query.where(BatchEntry.batch_id == scope.batch_id)
        elif not scope.whole_ledger:
            query = query.where(BatchEntry.batch_id.in_([b.id for b in batches]))
        elif batches:
            # The whole ledger, or one process's contiguous range of it.
            query = query.where(BatchEntry.batch_id.between(batches[0].id, batches[-1].id))
        # (batch, position) is unique: no third key, which PostgreSQL sorted on.
        query = query.order_by(BatchEntry.batch_id, BatchEntry.position)
        return _BatchedRows(_stream_records(session, query, alone=alone))

    def _batches_in_scope(self, session: Session, scope: AuditScope) -> list[Batch]:
        query = select(Batch).order_by(Batch.id)
        if scope.batch_id is not None:
            query = query.where(Batch.id == scope.batch_id)
        if scope.since is not None:
            query = query.where(Batch.sealed_at >= scope.since)
        if scope.buyer is not None:
            query = query.where(
                Batch.id.in_(
                    select(BatchEntry.batch_id)
                    .join(Record, Record.id == BatchEntry.record_id)
                    .where(Record.buyer_ruc == scope.buyer)
                )
            )
        return list(session.scalars(query))

    def _check_batch_ids(
        self,
        session: Session,
        scope: AuditScope,
        events: dict[int, list[AnchorEvent]],
        report: AuditReport,
    ) -> None:
        if not scope.whole_ledger:
            return
        stored = set(session.scalars(select(Batch.id)))
        highest = max(stored | set(events), default=0)
        for batch_id in range(1, highest + 1):
            if batch_id not in stored:
                report.add(
                    MISSING_BATCH,
                    f"batch {batch_id} is not in the database"
                    + (" but is anchored on chain" if batch_id in events else ""),
                    batch_id=batch_id,
                )
        on_chain = sorted(events)
        for batch_id in range(1, (on_chain[-1] if on_chain else 0) + 1):
            if batch_id not in events:
                report.add(
                    CHAIN_GAP,
                    f"batch {batch_id} was never anchored, later ones were",
                    batch_id=batch_id,
                )
        for batch_id, found in sorted(events.items()):
            if len(found) > 1:
                report.add(
                    DUPLICATE_ANCHOR,
                    f"batch {batch_id} is anchored {len(found)} times",
                    batch_id=batch_id,
                    tx_hash=found[1].tx_hash,
                )

    def _check_batch(
        self,
        session: Session,
        batch: Batch,
        rows: list[tuple[Any, ...]],
        events: list[AnchorEvent],
        facts: AnchorFacts | None,
        head: int,
        now: datetime,
        report: AuditReport,
    ) -> None:
        report.batches_checked += 1
        for row in rows:
            _check_record(row, report)
        hashes: list[bytes] = [row[_HASH] for row in rows]
        self.progress(len(hashes))
        # Rows come in position order: a whole batch's are exactly 0..size-1
        # (a Counter of them, the slow path, cost a Python call per record).
        found = [row[_POSITION] for row in rows]
        membership_ok = found == list(range(batch.size)) or self._check_membership(
            batch, Counter(found), report
        )
        try:
            rebuilt = (
                MerkleTree.of_digests(hashes).root
                if hashes and len(set(hashes)) == len(hashes)
                else None
            )
        except MerkleError:
            # A stored hash that is not one (written outside Ancla), already
            # reported with its record: the batch's root cannot be rebuilt.
            rebuilt = None
        if membership_ok and rebuilt != batch.root:
            report.add(
                ROOT_MISMATCH,
                "the root rebuilt from the batch's records is not the stored root",
                batch_id=batch.id,
                expected=batch.root,
                actual=rebuilt,
            )
            self._pinpoint(session, batch, report)
        self._check_anchor(batch, events, facts, head, now, report)

    def _check_membership(
        self, batch: Batch, positions: Counter[int | None], report: AuditReport
    ) -> bool:
        ok = True
        for expected_position in range(batch.size):
            if positions[expected_position] == 0:
                ok = False
                report.add(
                    MISSING_RECORD,
                    f"batch {batch.id} has no record at position {expected_position} of "
                    f"{batch.size}",
                    batch_id=batch.id,
                    expected=expected_position,
                    actual=None,
                )
        for position, count in sorted(
            positions.items(), key=lambda item: (item[0] is None, item[0] or 0)
        ):
            extra = count - 1 if position is not None and 0 <= position < batch.size else count
            if extra > 0:
                ok = False
                report.add(
                    EXTRA_RECORD,
                    f"batch {batch.id} holds {extra} record(s) more at "
                    f"position {position} than it was sealed with",
                    batch_id=batch.id,
                    expected=batch.size,
                    actual=sum(positions.values()),
                )
        return ok

    def _pinpoint(self, session: Session, batch: Batch, report: AuditReport) -> None:
        """Name the records whose stored proof no longer leads to the stored root.

        Proofs are read only here: a clean audit never needs them.
        """
        root = bytes.fromhex(batch.root[2:])
        # Another session: this one's connection may be streaming a COPY.
        with self.session_factory() as other:
            proofs = other.execute(
                select(Record.hash, BatchEntry.proof)
                .join(BatchEntry, BatchEntry.record_id == Record.id)
                .where(BatchEntry.batch_id == batch.id)
                .order_by(BatchEntry.position, Record.id)
            ).all()
        for record_hash, proof in proofs:
            data = proof or b""
            siblings = [data[i : i + 32] for i in range(0, len(data), 32)]
            digest = _digest(record_hash)
            if digest is None or root_from_proof(leaf_bytes(digest), siblings) != root:
                report.add(
                    ROOT_MISMATCH,
                    "this record's proof does not lead to its batch's "
                    "stored root (its hash was changed?)",
                    batch_id=batch.id,
                    record_hash=record_hash,
                )

    def _check_anchor(
        self,
        batch: Batch,
        events: list[AnchorEvent],
        facts: AnchorFacts | None,
        head: int,
        now: datetime,
        report: AuditReport,
    ) -> None:
        if batch.status in (SEALED, SUBMITTED):
            if now - batch.sealed_at > self.pending_window:
                report.add(
                    UNANCHORED_TOO_LONG,
                    f"batch {batch.id} sealed at "
                    f"{batch.sealed_at.isoformat()} is still {batch.status}",
                    batch_id=batch.id,
                )
            return
        report.anchors_checked += 1
        if facts is None:  # every anchored batch of the window was asked about
            raise AssertionError(f"no chain facts for batch {batch.id}")
        ours = self._our_events(events)
        if not ours:
            stored_block = batch.block_number
            canonical = facts.block_hash
            if stored_block is not None and canonical != batch.block_hash:
                report.add(
                    ANCHOR_REORGED,
                    f"batch {batch.id} is marked {batch.status}, but its "
                    f"block {stored_block} is no longer on the chain",
                    batch_id=batch.id,
                    tx_hash=batch.tx_hash,
                    expected=batch.block_hash,
                    actual=canonical,
                )
            else:
                report.add(
                    ANCHOR_MISSING,
                    f"batch {batch.id} is marked {batch.status} but the contract never anchored it",
                    batch_id=batch.id,
                    tx_hash=batch.tx_hash,
                )
            return
        event = ours[0]
        if event.root != batch.root:
            report.add(
                ROOT_MISMATCH,
                "the root anchored on chain is not the stored root",
                batch_id=batch.id,
                tx_hash=event.tx_hash,
                expected=event.root,
                actual=batch.root,
            )
        # The block number too: receipts carry it, and a verifier looks the
        # anchoring block up by it.
        if (
            event.tx_hash,
            event.block_number,
            event.block_hash,
            event.log_index,
            event.leaf_count,
        ) != (batch.tx_hash, batch.block_number, batch.block_hash, batch.log_index, batch.size):
            report.add(
                ANCHOR_MISMATCH,
                "the stored anchor is not the chain's anchoring event",
                batch_id=batch.id,
                tx_hash=batch.tx_hash,
                expected=f"{event.tx_hash} block {event.block_number} {event.block_hash} log "
                f"{event.log_index} leaves {event.leaf_count}",
                actual=f"{batch.tx_hash} block {batch.block_number} {batch.block_hash} log "
                f"{batch.log_index} leaves {batch.size}",
            )
        canonical = facts.block_hash
        if canonical != event.block_hash:
            report.add(
                ANCHOR_REORGED,
                f"block {event.block_number} of the anchor is no longer canonical",
                batch_id=batch.id,
                tx_hash=event.tx_hash,
                expected=event.block_hash,
                actual=canonical,
            )
            return
        if facts.tx_status != 1:
            report.add(
                ANCHOR_FAILED,
                "the anchoring transaction did not succeed",
                batch_id=batch.id,
                tx_hash=event.tx_hash,
            )
        on_chain_root = facts.root
        if on_chain_root != event.root:
            report.add(
                ROOT_MISMATCH,
                "rootOf(batch) on chain is not the anchored root",
                batch_id=batch.id,
                expected=event.root,
                actual=on_chain_root,
            )
        depth = head - event.block_number + 1
        if batch.status == "final" and depth < self.confirmations:
            report.add(
                UNCONFIRMED,
                f"batch {batch.id} is marked final with {depth} "
                f"confirmations, fewer than {self.confirmations}",
                batch_id=batch.id,
                expected=self.confirmations,
                actual=depth,
            )

    def _report_batched(
        self,
        session: Session,
        scope: AuditScope,
        report: AuditReport,
        kind: str,
        narrow: Callable[[Select[int, str, int]], Select[int, str, int]],
        detail: Callable[[int], str],
    ) -> None:
        """Report each record in scope whose batch entry the ``narrow``ed query keeps."""
        query = self._scope_records(
            narrow(
                select(Record.id, Record.hash, BatchEntry.batch_id).join(
                    BatchEntry, BatchEntry.record_id == Record.id
                )
            ),
            scope,
        ).order_by(Record.id)
        for row in session.execute(query):
            report.add(
                kind,
                detail(row.batch_id),
                batch_id=row.batch_id,
                record_id=row.id,
                record_hash=row.hash,
            )

    def _check_queued_in_batch(
        self, session: Session, scope: AuditScope, report: AuditReport
    ) -> None:
        """Records still queued although in a batch: only a change made outside
        Ancla leaves one, and the seal that takes it from the queue fails."""
        self._report_batched(
            session,
            scope,
            report,
            QUEUED_IN_BATCH,
            lambda query: query.join(PendingRecord, PendingRecord.record_id == Record.id),
            lambda batch_id: f"in batch {batch_id} and still queued for one: sealing stops on it",
        )

    def _check_references(self, session: Session, scope: AuditScope, report: AuditReport) -> None:
        """Rows naming a batch, record or agency that is not in the database.

        A record missing from its batch is reported by the batch's check
        (missing_record); these are the references no other check follows.
        """
        self._report_batched(
            session,
            scope,
            report,
            DANGLING_REFERENCE,
            lambda query: query.outerjoin(Batch, Batch.id == BatchEntry.batch_id).where(
                Batch.id.is_(None)
            ),
            lambda batch_id: f"entered in batch {batch_id}, which is not in the database",
        )
        of_no_agency = self._scope_records(
            select(Record.id, Record.hash, Record.agency_id)
            .outerjoin(Agency, Agency.id == Record.agency_id)
            .where(Record.agency_id.is_not(None), Agency.id.is_(None)),
            scope,
        ).order_by(Record.id)
        for row in session.execute(of_no_agency):
            report.add(
                DANGLING_REFERENCE,
                f"recorded by agency id {row.agency_id}, which is not in the database",
                record_id=row.id,
                record_hash=row.hash,
            )
        if not scope.whole_ledger:
            return  # a queue row with no record has no batch, buyer or time to scope by
        queued_gone = (
            select(PendingRecord.record_id)
            .outerjoin(Record, Record.id == PendingRecord.record_id)
            .where(Record.id.is_(None))
            .order_by(PendingRecord.record_id)
        )
        for record_id in session.scalars(queued_gone):
            report.add(
                DANGLING_REFERENCE,
                f"record id {record_id} is queued for a batch but is not in the database:"
                " sealing stops on it",
                record_id=record_id,
            )

    def _check_pending(
        self, session: Session, scope: AuditScope, now: datetime, report: AuditReport
    ) -> None:
        if scope.batch_id is not None:
            return
        # Records in no batch: each must be queued for one, and not for too long.
        # Their ids first, from the two primary keys alone (a merge of two
        # index-only scans on PostgreSQL), then their rows: joined in one query,
        # PostgreSQL read every record's row to keep the few in no batch, 0.9 s
        # of a 1,000,000-record audit against 0.17 s (measured, vacuumed). MATERIALIZED
        # keeps the planner from folding the two steps back into one.
        lone = (
            self._scope_records(
                select(Record.id).where(~exists().where(BatchEntry.record_id == Record.id)),
                scope,
            )
            .cte("in_no_batch")
            .prefix_with("MATERIALIZED")
        )
        query = (
            select(*_RECORD_COLUMNS, Record.accepted_at, PendingRecord.record_id.label("queued"))
            .join(lone, lone.c.id == Record.id)
            .outerjoin(BatchEntry, BatchEntry.record_id == Record.id)
            .outerjoin(PendingRecord, PendingRecord.record_id == Record.id)
            .order_by(Record.id)
        )
        for row in _stream(session, query):
            _check_record(row, report)
            self.progress(1)
            if row.queued is None:
                report.add(
                    UNQUEUED_RECORD,
                    "in no batch and not queued for one: it would never be anchored",
                    record_id=row.id,
                    record_hash=_hash_text(row.hash),
                )
            elif now - row.accepted_at > self.pending_window:
                report.add(
                    UNANCHORED_TOO_LONG,
                    f"accepted at {row.accepted_at.isoformat()} and still in no batch",
                    record_id=row.id,
                    record_hash=_hash_text(row.hash),
                )


# -- the audit in several processes ----------------------------------------------------


@dataclass(frozen=True)
class WorkerSetup:
    """How an audit process of its own reaches the ledger and the chain."""

    database_url: str
    rpc_url: str
    contract: str
    rpc_timeout: float = 10.0


@dataclass(frozen=True)
class _RangeTask:
    worker: WorkerSetup
    first: int
    last: int
    batch_ids: list[int]
    events: dict[int, list[AnchorEvent]]
    head: int
    now: datetime
    confirmations: int
    pending_window: timedelta


def _ranges(batches: list[Batch], parts: int) -> list[list[Batch]]:
    """``batches`` (in id order) cut into up to ``parts`` runs of about equal records."""
    total = sum(batch.size for batch in batches)
    share = max(1, -(-total // parts))
    ranges: list[list[Batch]] = [[]]
    held = 0
    for batch in batches:
        if held >= share and ranges[-1]:
            ranges.append([])
            held = 0
        ranges[-1].append(batch)
        held += batch.size
    return ranges


class _Ranges:
    """Which ranges of an audit are not taken yet: workers take from the front,
    the calling process from the back (threads of the calling process)."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._end = count

    def front(self) -> int | None:
        with self._lock:
            if self._next >= self._end:
                return None
            self._next += 1
            return self._next - 1

    def back(self) -> int | None:
        with self._lock:
            if self._next >= self._end:
                return None
            self._end -= 1
            return self._end

    def close(self) -> None:
        with self._lock:
            self._end = self._next


def _feed(
    pool: ProcessPoolExecutor,
    tasks: list[_RangeTask],
    untaken: _Ranges,
    running: dict[Future[AuditReport], int],
    finished: dict[int, Future[AuditReport]],
    progress: Callable[[int], None],
) -> None:
    """Give each worker process its next range as soon as it is done with one,
    and count its records as checked (``progress``: Rich's is thread-safe)."""
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            finished[running.pop(future)] = future
            if future.exception() is not None:
                untaken.close()  # raised by the caller; no point going on
                continue
            progress(future.result().records_checked)
            if (index := untaken.front()) is not None:
                running[pool.submit(_audit_range, tasks[index])] = index


def _audit_range(task: _RangeTask) -> AuditReport:
    """One process's part of an audit: the batches of one range, as in-process."""
    from app.db import dispose_engine, make_engine, make_session_factory

    engine = make_engine(task.worker.database_url, pool_size=2)
    try:
        client = ChainClient(task.worker.rpc_url, timeout=task.worker.rpc_timeout)
        auditor = Auditor(
            session_factory=make_session_factory(engine),
            client=client,
            registry=client.registry(task.worker.contract),
            confirmations=task.confirmations,
            pending_window=task.pending_window,
        )
        report = AuditReport()
        with auditor.session_factory() as session:
            wanted = set(task.batch_ids)
            batches = [
                batch
                for batch in session.scalars(
                    select(Batch).where(Batch.id.between(task.first, task.last)).order_by(Batch.id)
                )
                if batch.id in wanted
            ]
            auditor.check_batches(
                session,
                AuditScope(),
                batches,
                task.events,
                task.head,
                task.now,
                report,
                alone=False,
            )
        return report
    finally:
        dispose_engine(engine)
