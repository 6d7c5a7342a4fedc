"""Recording records of any schema: validate, hash, store durably, report per item.

A single POST is a bulk of one, so both paths share the same rules:
identical content -> "exists" (200, same hash); the same identity within its
schema (a purchase order's buyer + order number; app.records.registry) with
other content -> conflict (409); a record of another buyer -> forbidden (403).
The record row is committed before the caller answers 2xx.

Nothing here knows a schema: what differs between them (validation, query
columns, identity) is the schema's registry entry.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

import psycopg
from pydantic import ValidationError
from sqlalchemy import Connection, Table, bindparam, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db import (
    SessionFactory,
    copy_rows,
    postgresql_cursor,
    serialized_writes,
    sqlite_multirow_inserts,
)
from app.metrics import RECORDS_ACCEPTED, RECORDS_REJECTED
from app.models import Hash32, Record, decimal_text, utcnow
from app.records.registry import (
    QUERY_COLUMNS,
    ChainRefusal,
    ChainRule,
    RecordColumns,
    RecordSchema,
    ValidRecord,
    schema_named,
)
from app.services.chains import Chain, load_chains, member_of, stored_hashes
from ledger.canonical import canonical_bytes, hash_canonical
from ledger.hashing import to_hex

# Bulk requests are bounded (DESIGN §4): 10,000 records per request.
MAX_BULK_ITEMS = 10_000
# Rows per IN (...) lookup; keeps every query under SQLite's variable limit.
_LOOKUP_CHUNK = 500

Outcome = Literal["created", "exists", "conflict", "invalid", "forbidden", "not_found"]
HTTP_STATUS: dict[Outcome, int] = {
    "created": 202,
    "exists": 200,
    "conflict": 409,
    "invalid": 422,
    "forbidden": 403,
    "not_found": 404,
}


class RecordingAgency(Protocol):
    """The agency a request records for: an Agency row or a cached KeyHolder."""

    @property
    def id(self) -> int: ...

    @property
    def ruc(self) -> str: ...


@dataclass
class ItemResult:
    index: int
    outcome: Outcome
    hash: str | None = None
    order_number: str | None = None
    detail: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    existing_hash: str | None = None
    # A chained record refused because its prev is not the chain's head: the head.
    head: str | None = None
    # A chained record's position in its chain (the root is 0), once admitted.
    seq: int | None = None

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"index": self.index, "status": self.status, "outcome": self.outcome}
        if self.hash is not None:
            data["hash"] = self.hash
        if self.order_number is not None:
            data["order_number"] = self.order_number
        if self.detail is not None:
            data["detail"] = self.detail
        if self.errors:
            data["errors"] = self.errors
        if self.existing_hash is not None:
            data["existing_hash"] = self.existing_hash
        if self.head is not None:
            data["head"] = self.head
        if self.seq is not None:
            data["seq"] = self.seq
        return data


def validation_errors(exc: ValidationError, *, whole: str = "(record)") -> list[dict[str, Any]]:
    """Pydantic errors as ``{"field": "buyer.ruc", "message": ...}``, one per problem.

    An empty location is a rule over the whole record (e.g. an order's
    totals): its field is ``whole``, the schema's name for that.
    """
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or whole,
            "message": error["msg"].removeprefix("Value error, "),
        }
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


@dataclass
class Prepared:
    """A valid record of one request, hashed, ready to store; its outcome goes to
    ``results[index]`` (the request's list) when it is stored."""

    index: int
    schema: RecordSchema
    record: dict[str, Any]
    columns: RecordColumns
    canonical: bytes
    hash: str
    agency_id: int | None
    source: str
    results: list[ItemResult | None]
    # The digests of the files it binds (RecordSchema.documents).
    documents: list[str] = field(default_factory=list)
    # A chained record's position in its chain, once admitted (admit_chained).
    seq: int | None = None


def _row(prepared: Prepared, now: Any) -> tuple[Any, ...]:
    """The values of ``_INSERT_COLUMNS`` for a prepared record, in that order."""
    return (
        # Stored as its 32 bytes (app.models.Hash32).
        bytes.fromhex(prepared.hash[2:]),
        prepared.canonical,
        prepared.schema.name,
        *prepared.columns,
        prepared.agency_id,
        prepared.source,
        now,
    )


def _chunks(items: Sequence[Any], size: int = _LOOKUP_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def prepare_items(
    agency: RecordingAgency | None,
    schema: RecordSchema,
    items: Sequence[ValidRecord | ValidationError],
    source: str = "api",
) -> tuple[list[ItemResult | None], list[Prepared]]:
    """Judge what needs no database (invalid, another buyer's) and hash the rest.

    ``items`` are what ``schema.parse`` made of a request's items (a
    ValidationError stands for an invalid one). Returns the request's results
    (None where storing decides) and the records to store. ``agency`` is the
    key holder for API requests (its buyer RUC only); None for the operator's
    imports, which may record any buyer's records.
    """
    results: list[ItemResult | None] = [None] * len(items)
    prepared: list[Prepared] = []
    agency_id = agency.id if agency is not None else None
    for index, item in enumerate(items):
        if isinstance(item, ValidationError):
            results[index] = ItemResult(
                index,
                "invalid",
                detail=f"the {schema.noun} is invalid",
                errors=validation_errors(item, whole=schema.whole),
            )
            continue
        record = item.record()
        columns = schema.columns(record)
        if agency is not None and columns.buyer_ruc != agency.ruc:
            results[index] = ItemResult(
                index,
                "forbidden",
                order_number=columns.order_number,
                detail=f"this API key records {schema.plural} of buyer {agency.ruc} only, "
                f"not {columns.buyer_ruc}",
            )
            continue
        canonical = canonical_bytes(record)
        prepared.append(
            Prepared(
                index,
                schema,
                record,
                columns,
                canonical,
                hash_canonical(canonical),
                agency_id,
                source,
                results,
                documents=schema.documents(record),
            )
        )
    return results, prepared


# Times a group with chained records is stored again after losing a race for a
# chain's head to another process (each try re-reads the chains it extends).
_CHAIN_RACE_TRIES = 5


def store_prepared(session: Session, prepared: Sequence[Prepared]) -> None:
    """Store prepared records (of one request or of several) in one transaction,
    committed on return; each outcome is written to its request's results."""
    # Everything that needs no database is done before queueing for the write
    # lock (SQLite: one writer at a time across processes), so that the
    # critical section is the statements and the commit alone.
    candidates = _first_of_each(prepared)
    now = utcnow()
    dialect = session.get_bind().dialect
    if not any(item.schema.chain is not None for item in prepared):
        rows = [_row(item, now) for item in candidates]
        sqlite_inserts = _sqlite_inserts(dialect, rows) if dialect.name == "sqlite" else []
        with serialized_writes(session):
            # SQLAlchemy Core on the session's connection: the ORM layer adds nothing
            # here but per-statement overhead (measured under load: a third of the CPU).
            connection = session.connection()
            created, existing, taken = _insert(
                connection, rows, candidates, prepared, sqlite_inserts
            )
            session.commit()
        _judge(prepared, candidates, created, existing, taken)
        return
    for attempt in range(1, _CHAIN_RACE_TRIES + 1):
        # SQLite: the chains are read before queueing for the write lock, on
        # the first try (its readers do not wait for the writer, and reading
        # them was a third of a group of events' hold of the lock, measured).
        # What was read may be old by the time the lock is ours, and the
        # unique index on each record's identity (its prev) says so: a chain
        # extended meanwhile makes our insert lose, and the group is judged
        # again, inside the lock. A refusal was true when the chain was read.
        early = dialect.name == "sqlite" and attempt == 1
        if early:
            plan = _admit(session.connection(), prepared, candidates, now, dialect)
        with serialized_writes(session):
            connection = session.connection()
            if not early:
                # Records that extend a chain are judged against the chain as it
                # is now, inside the write lock; the refused ones are not stored.
                plan = _admit(connection, prepared, candidates, now, dialect)
            admitted, storing, rows, inserts = plan
            created, existing, taken = _insert(connection, rows, storing, admitted, inserts)
            lost = [
                item
                for item in admitted
                if item.schema.chain is not None
                and item.hash not in created
                and item.hash not in existing
            ]
            if lost and attempt < _CHAIN_RACE_TRIES:
                # Another process extended one of these chains between our read
                # and our insert (its unique index refused ours). Whatever was
                # judged on top of our lost record must not be stored either
                # (its prev would name a record that does not exist): undo the
                # whole group and judge it again against the chains as they are.
                session.rollback()
                for item in prepared:
                    item.results[item.index] = None
                    item.seq = None
                continue
            session.commit()
        _judge(admitted, storing, created, existing, taken)
        return


_Plan = tuple[
    list[Prepared], list[Prepared], list[tuple[Any, ...]], list[tuple[str, tuple[Any, ...]]]
]


def _admit(
    connection: Connection,
    prepared: Sequence[Prepared],
    candidates: Sequence[Prepared],
    now: Any,
    dialect: Dialect,
) -> _Plan:
    """The chained records judged (admit_chained), and what is then to be
    inserted: (admitted, candidates stored, their rows, SQLite's statements)."""
    refused = admit_chained(connection, prepared)
    admitted = [item for item in prepared if id(item) not in refused]
    storing = [item for item in candidates if id(item) not in refused]
    rows = [_row(item, now) for item in storing]
    inserts = _sqlite_inserts(dialect, rows) if dialect.name == "sqlite" else []
    return admitted, storing, rows, inserts


def _insert(
    connection: Connection,
    rows: list[tuple[Any, ...]],
    candidates: Sequence[Prepared],
    prepared: Sequence[Prepared],
    sqlite_inserts: list[tuple[str, tuple[Any, ...]]],
) -> tuple[set[str], set[str], dict[tuple[str, str], str]]:
    """Insert the new candidates, bind their documents and look up what the rest
    found: (hashes created, hashes already stored, identity -> stored hash)."""
    if connection.dialect.name == "postgresql":
        created = _insert_new_postgresql(connection, rows, candidates)
    else:
        created = _insert_new_sqlite(connection, rows, candidates, sqlite_inserts)
    _bind_documents(connection, [item for item in candidates if item.hash in created])
    rest = [item for item in prepared if item.hash not in created]
    existing, taken = _lookup(connection, rest)
    return created, existing, taken


_BIND_DOCUMENT = text(
    "INSERT INTO record_documents (sha256, record_id) SELECT :sha256, id FROM records"
    " WHERE hash = :hash"
).bindparams(bindparam("hash", type_=Hash32()))


def _bind_documents(connection: Connection, created: Sequence[Prepared]) -> None:
    """The digests each new record binds, for GET /v1/documents/{sha256} (few
    records bind a digest: most orders' documents are links without one)."""
    rows = [
        {"sha256": digest, "hash": item.hash}
        for item in created
        for digest in sorted(set(item.documents))
    ]
    if rows:
        connection.execute(_BIND_DOCUMENT, rows)


def _chain_roots(items: Sequence[Prepared]) -> dict[tuple[str, str], RecordSchema]:
    """(root schema, root identity) of each chain the chained ``items`` extend."""
    roots: dict[tuple[str, str], RecordSchema] = {}
    for item in items:
        rule = cast(ChainRule, item.schema.chain)
        roots[(rule.root_schema, rule.root_identity(item.columns))] = item.schema
    return roots


def admit_chained(connection: Connection, prepared: Sequence[Prepared]) -> set[int]:
    """Judge the records that extend a chain (app.records.registry.ChainRule), in
    order, against their chains as stored and as extended by the items before
    them; write the outcome of each refused one and return their ``id()``.

    A record already stored (an identical one sent again) is left to the
    ordinary path, which answers "exists". An accepted record becomes its
    chain's head for the items after it, so a bulk may chain its own items.
    """
    items = [item for item in prepared if item.schema.chain is not None]
    stored = stored_hashes(connection, [item.hash for item in items])
    chains = load_chains(connection, _chain_roots(items))
    refused: set[int] = set()
    seen = set(stored)
    for item in items:
        if item.hash in seen:
            continue
        rule = cast(ChainRule, item.schema.chain)
        key = (rule.root_schema, rule.root_identity(item.columns))
        chain = chains[key]
        outcome: ItemResult | None = None
        if chain.broken is not None:
            outcome = ItemResult(
                item.index,
                "conflict",
                item.hash,
                item.columns.order_number,
                detail=f"the recorded history breaks its rules {chain.broken}; nothing is "
                "appended to it until an operator has looked (`ancla verify`)",
            )
        elif chain.state is None:
            root = schema_named(rule.root_schema)
            outcome = ItemResult(
                item.index,
                "not_found",
                order_number=item.columns.order_number,
                detail=f"{root.describe(item.columns)} is not recorded: there is no "
                f"{root.noun} to append to",
            )
        else:
            try:
                state = rule.fold(chain.state, item.hash, item.record)
            except ChainRefusal as refusal:
                outcome = ItemResult(
                    item.index,
                    refusal.outcome,
                    item.hash,
                    item.columns.order_number,
                    detail=refusal.detail,
                    head=chain.head if refusal.outcome == "conflict" else None,
                )
            else:
                chains[key] = Chain(state=state, head=item.hash)
                seen.add(item.hash)
                item.seq = rule.position(state)
        if outcome is not None:
            item.results[item.index] = outcome
            refused.add(id(item))
    return refused


def count_outcomes(results: Iterable[ItemResult | None]) -> list[ItemResult]:
    """The finished results of a request, counted in the metrics."""
    final = [r for r in results if r is not None]
    # Counted per outcome, then added: a counter's lock once, not once per item.
    counts = Counter(result.outcome for result in final)
    for outcome, count in counts.items():
        if outcome == "created":
            RECORDS_ACCEPTED.inc(count)
        elif outcome != "exists":
            RECORDS_REJECTED.labels(reason=outcome).inc(count)
    return final


def record_items(
    *,
    session: Session,
    agency: RecordingAgency | None,
    schema: RecordSchema,
    items: Sequence[ValidRecord | ValidationError],
    source: str = "api",
) -> list[ItemResult]:
    """Record already-parsed records of ``schema`` (a ValidationError stands for an
    invalid item) in one transaction of ``session``: imports and tests; the API
    goes through :class:`GroupCommitter`, which shares a transaction among
    concurrent requests."""
    results, prepared = prepare_items(agency, schema, items, source)
    store_prepared(session, prepared)
    return count_outcomes(results)


# PostgreSQL types of the inserted columns, for COPY's binary format.
_PG_QUERY_COLUMN_TYPES = {
    "buyer_ruc": "varchar",
    "buyer_name": "varchar",
    "order_number": "varchar",
    "supplier_ruc": "varchar",
    "supplier_name": "varchar",
    "issued_at": "timestamptz",
    "currency": "varchar",
    "total": "numeric",
    "prev_hash": "varchar",
    "identity": "varchar",
}
if tuple(_PG_QUERY_COLUMN_TYPES) != QUERY_COLUMNS:  # pragma: no cover - a programming error
    raise RuntimeError("_PG_QUERY_COLUMN_TYPES must list app.records.QUERY_COLUMNS in order")
_PG_INSERT_TYPES = {
    "hash": "bytea",
    "canonical": "bytea",
    "schema": "varchar",
    **_PG_QUERY_COLUMN_TYPES,
    "agency_id": "int4",
    "source": "varchar",
    "accepted_at": "timestamptz",
}
_INSERT_COLUMNS = tuple(_PG_INSERT_TYPES)
# PostgreSQL: the rows are streamed with binary COPY (psycopg formats each row
# in C). Passing them as array parameters instead (one unnest INSERT) made
# psycopg build every array in Python: 21 ms of CPU per 1,000 orders against
# 3 ms for COPY, measured. Their ids are drawn from the sequence first, so
# that the pending queue can be filled by a COPY too. (Built from the
# constant column names above: no input reaches these texts.)
_COLUMN_LIST = ", ".join(_INSERT_COLUMNS)
_PG_NEXT_IDS = "SELECT nextval('records_id_seq') FROM generate_series(1, %(count)s)"
_PG_CREATE_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS records_incoming (id int8, "
    + ", ".join(f"{name} {pg_type}" for name, pg_type in _PG_INSERT_TYPES.items())
    + ") ON COMMIT DELETE ROWS"
)
_PG_COPY = f"COPY pg_temp.records_incoming (id, {_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_PG_COPY_RECORDS = f"COPY records (id, {_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_PG_COPY_PENDING = "COPY pending_records (record_id) FROM STDIN (FORMAT BINARY)"
_PG_TYPES = ["int8", *_PG_INSERT_TYPES.values()]
# The fallback: the unique indexes decide row by row, and only the rows
# actually inserted are queued. The DELETE ... RETURNING empties the stage as
# it feeds the insert, so a second insert in the same transaction starts
# empty; ON COMMIT DELETE ROWS empties it after a failed one.
_PG_INSERT = (
    f"WITH staged AS (DELETE FROM pg_temp.records_incoming RETURNING id, {_COLUMN_LIST}), "  # noqa: S608
    f"inserted AS (INSERT INTO records (id, {_COLUMN_LIST}) SELECT id, {_COLUMN_LIST} "
    "FROM staged ON CONFLICT DO NOTHING RETURNING id, hash), "
    "queued AS (INSERT INTO pending_records (record_id) SELECT id FROM inserted) "
    "SELECT hash FROM inserted"
)


def _insert_new_postgresql(
    connection: Connection, rows: list[tuple[Any, ...]], candidates: Sequence[Prepared]
) -> set[str]:
    """Insert the rows that are new, and queue them for sealing; returns the
    hashes actually inserted.

    ``rows`` hold the values of ``_INSERT_COLUMNS`` in order, one per candidate. The unique
    indexes (hash; schema + identity) decide, so a concurrent writer's row
    is never doubled, and the common case (all new) needs no lookup first:
    looking up every hash and identity of a bulk before inserting was a
    sixth of its CPU.
    """
    if not rows:
        return set()
    with postgresql_cursor(connection) as cursor:
        cursor.execute(_PG_NEXT_IDS, {"count": len(rows)})
        ids = [record_id for (record_id,) in cursor.fetchall()]
        with_ids = [(record_id, *row) for record_id, row in zip(ids, rows, strict=True)]
        # The common case, every row new: COPY straight into records, which
        # costs the server a third less than staging (measured: 13.5 against
        # 21 ms per 1,000 orders). A row already there (a client sending again)
        # or being inserted concurrently fails the whole COPY; it is undone to
        # the savepoint and the rows go through the staging table, where the
        # unique indexes decide row by row.
        cursor.execute("SAVEPOINT ancla_records_copy")
        try:
            copy_rows(cursor, _PG_COPY_RECORDS, _PG_TYPES, with_ids)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT ancla_records_copy")
        else:
            cursor.execute("RELEASE SAVEPOINT ancla_records_copy")
            copy_rows(cursor, _PG_COPY_PENDING, ["int8"], ((record_id,) for record_id in ids))
            return {item.hash for item in candidates}
        cursor.execute(_PG_CREATE_STAGE)
        copy_rows(cursor, _PG_COPY, _PG_TYPES, with_ids)
        cursor.execute(_PG_INSERT)
        return {to_hex(found) for (found,) in cursor.fetchall()}


def _insert_new_sqlite(
    connection: Connection,
    rows: list[tuple[Any, ...]],
    candidates: Sequence[Prepared],
    inserts: list[tuple[str, tuple[Any, ...]]],
) -> set[str]:
    """Insert the rows that are new (``inserts``: ``_sqlite_inserts(rows)``)
    and queue them for sealing; returns the hashes actually inserted.

    Every statement here is one step of SQLite's: the rows' ids are not
    returned one by one, because each row fetched (like each row of an
    executemany) gives up Python's GIL and must win it back from the request
    threads while SQLite's single write lock is held. This write transaction
    excludes every other writer, so the rows it inserted took consecutive ids
    (SQLite gives a new row the highest id + 1), ending at the last one
    inserted.
    """
    inserted = sum(connection.exec_driver_sql(sql, values).rowcount for sql, values in inserts)
    if not inserted:
        return set()
    first = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one() - inserted + 1
    connection.exec_driver_sql(
        "INSERT INTO pending_records (record_id) SELECT id FROM records WHERE id >= ?", (first,)
    )
    if inserted == len(rows):
        return {item.hash for item in candidates}
    return {
        to_hex(found)
        for found in connection.exec_driver_sql(
            "SELECT hash FROM records WHERE id >= ?", (first,)
        ).scalars()
    }


# SQLite: multi-row VALUES, with each value already in the form SQLAlchemy's
# bind processors give it for SQLite. Through SQLAlchemy's statement machinery
# (parameters per row, then the multi-row rendering) this insert was 30% of a
# bulk request's CPU, and the columns' processors applied row by row still
# 8 µs per record, in the group commit thread (measured): the forms are
# written here instead, and tests/app/test_group_commit.py checks that the
# stored bytes are the ones SQLAlchemy stores.
_SQLITE_INSERT_ROWS = 500  # x 14 columns: far under SQLite's 32,766 variables
_ISSUED_AT = _INSERT_COLUMNS.index("issued_at")
_TOTAL = _INSERT_COLUMNS.index("total")
_ACCEPTED_AT = _INSERT_COLUMNS.index("accepted_at")


def _sqlite_inserts(
    dialect: Dialect, rows: list[tuple[Any, ...]]
) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that insert ``rows`` on SQLite, as PostgreSQL's insert
    does (ON CONFLICT DO NOTHING), with their parameters."""
    if not rows:
        return []
    # The rows of a group share one acceptance time: converted once, by
    # SQLAlchemy's own processor for the column. A schema may leave the
    # time and the total out (None stays NULL).
    table = cast(Table, Record.__table__)
    process_accepted = table.c.accepted_at.type.dialect_impl(dialect).bind_processor(dialect)
    accepted: Any = None
    accepted_form: Any = None
    sqlite_rows = []
    for row in rows:
        values = list(row)
        # UTCDateTime: naive UTC, as DATETIME text; DecimalText: two decimals.
        issued_at, total = row[_ISSUED_AT], row[_TOTAL]
        if issued_at is not None:
            values[_ISSUED_AT] = issued_at.replace(tzinfo=None).isoformat(" ", "microseconds")
        if total is not None:
            values[_TOTAL] = decimal_text(total)
        if row[_ACCEPTED_AT] is not accepted:
            accepted = row[_ACCEPTED_AT]
            accepted_form = process_accepted(accepted) if process_accepted else accepted
        values[_ACCEPTED_AT] = accepted_form
        sqlite_rows.append(values)
    return sqlite_multirow_inserts(
        f"INSERT INTO records ({_COLUMN_LIST})",
        sqlite_rows,
        rows_per_statement=_SQLITE_INSERT_ROWS,
        tail=" ON CONFLICT DO NOTHING",
    )


def _identity(item: Prepared) -> tuple[str, str] | None:
    identity = item.columns.identity
    return None if identity is None else (item.schema.name, identity)


def _first_of_each(prepared: Sequence[Prepared]) -> list[Prepared]:
    """The items to insert: the first of each hash and of each schema + identity;
    later ones are judged against whatever the database then holds."""
    seen_hashes: set[str] = set()
    seen_keys: set[tuple[str, str]] = set()
    candidates: list[Prepared] = []
    for item in prepared:
        key = _identity(item)
        if item.hash not in seen_hashes and (key is None or key not in seen_keys):
            candidates.append(item)
        seen_hashes.add(item.hash)
        if key is not None:
            seen_keys.add(key)
    return candidates


def _judge(
    prepared: Sequence[Prepared],
    candidates: Sequence[Prepared],
    created: set[str],
    existing: set[str],
    taken: dict[tuple[str, str], str],
) -> None:
    """Write each item's outcome into its request's results."""
    inserted = {id(item) for item in candidates if item.hash in created}
    for item in prepared:
        number = item.columns.order_number
        key = _identity(item)
        if id(item) in inserted:
            item.results[item.index] = ItemResult(
                item.index, "created", item.hash, number, seq=item.seq
            )
        elif item.hash in created or item.hash in existing:
            item.results[item.index] = ItemResult(item.index, "exists", item.hash, number)
        elif key is not None and key in taken:
            found = taken[key]
            chained = item.schema.chain is not None
            item.results[item.index] = ItemResult(
                item.index,
                "conflict",
                item.hash,
                number,
                # A chained record's identity is its prev: another writer
                # extended the chain from the same record first.
                detail=f"prev {item.columns.prev_hash} is no longer the head: record {found} "
                "follows it (fetch the order, then append to its head)"
                if chained
                else f"{item.schema.describe(item.columns)} is already recorded with other "
                f"content (hash {found}); what is recorded never changes",
                existing_hash=None if chained else found,
                head=found if chained else None,
            )
        else:  # pragma: no cover - only a concurrent delete could get here
            raise RuntimeError(f"record {item.hash} was neither inserted nor found")


def _lookup(
    connection: Connection, items: Sequence[Prepared]
) -> tuple[set[str], dict[tuple[str, str], str]]:
    """Which of the items' hashes are stored, and the stored hash of each of
    their schema + identity."""
    records = cast(Table, Record.__table__)
    existing = stored_hashes(connection, [item.hash for item in items])
    taken: dict[tuple[str, str], str] = {}
    by_schema: dict[str, set[str]] = {}
    for item in items:
        key = _identity(item)
        if key is not None:
            by_schema.setdefault(key[0], set()).add(key[1])
    for schema_name, identities in by_schema.items():
        for chunk in _chunks(sorted(identities)):
            rows = connection.execute(
                select(records.c.identity, records.c.hash).where(
                    records.c.schema == schema_name,
                    member_of(connection, records.c.identity, chunk),
                )
            )
            taken.update({(schema_name, identity): found for identity, found in rows})
    return existing, taken


def parse_items(schema: RecordSchema, items: Sequence[Any]) -> list[ValidRecord | ValidationError]:
    """Each item validated by ``schema.parse``, or the ValidationError it raised."""
    parsed: list[ValidRecord | ValidationError] = []
    for item in items:
        try:
            parsed.append(schema.parse(item))
        except ValidationError as exc:
            parsed.append(exc)
    return parsed


@dataclass
class _Request:
    prepared: list[Prepared]
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]


class GroupCommitter:
    """Stores the records of concurrent requests together: one transaction per group.

    Every commit waits for the disk (SQLite ``synchronous=FULL``, PostgreSQL's
    WAL flush), and a transaction per request also paid its own lookups, insert
    and thread hand-offs: that capped single POSTs at a few hundred a second.
    Requests queue their prepared records; one thread takes everything waiting,
    stores it in one transaction, and answers each request only after the commit,
    so a 2xx still means durable. Under light load a group is one request and
    nothing waits; under heavy load the groups grow while the disk flushes.
    """

    def __init__(self, session_factory: SessionFactory, *, max_group: int = MAX_BULK_ITEMS) -> None:
        self._session_factory = session_factory
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def record(
        self,
        agency: RecordingAgency,
        schema: RecordSchema,
        items: Sequence[ValidRecord | ValidationError],
    ) -> list[ItemResult]:
        """Record one request's records; returns once they are committed."""
        results, prepared = prepare_items(agency, schema, items)
        await self.store(prepared)
        return count_outcomes(results)

    async def store(self, prepared: list[Prepared]) -> None:
        """Store prepared records with those of other requests; raises what storing raised."""
        if not prepared:
            return
        self._ensure_started()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Request(prepared, loop, done))
        await done

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Store what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, size, stop = [first], len(first.prepared), False
            while size < self._max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
                size += len(more.prepared)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Request]) -> None:
        try:
            self._store([item for request in group for item in request.prepared])
        except Exception as exc:
            if len(group) == 1 or isinstance(exc, OperationalError):
                # The database itself failed (down, full, read-only): for everyone.
                for request in group:
                    _answer(request, exc)
                return
            # One request must not fail the others: each is stored alone.
            for request in group:
                self._commit([request])
            return
        for request in group:
            _answer(request, None)

    def _store(self, prepared: list[Prepared]) -> None:
        with self._session_factory() as session:
            store_prepared(session, prepared)


def _answer(request: _Request, error: BaseException | None) -> None:
    def settle() -> None:
        if request.done.done():  # the client went away; its records stay stored
            return
        if error is None:
            request.done.set_result(None)
        else:
            request.done.set_exception(error)

    try:
        request.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # its event loop is closed: nobody is waiting
        pass
