"""Hash chains of records (an order's history), read from the ledger.

A chain starts at a root record and grows by records whose identity is the
hash of the record before them (app.records.registry.ChainRule), so its
records are found one step at a time through the unique index on (schema,
identity), for many chains at once. Reading folds each chain with its
rule's pure ``start`` and ``fold``: the same state ingest judges new
records against and the order view shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from sqlalchemy import ARRAY, ColumnElement, Connection, Table, any_, bindparam, select

from app.models import Record
from app.records.registry import ChainRefusal, ChainRule, RecordSchema

# Values per IN (...) list: keeps every query under SQLite's variable limit.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain as stored: its folded state and head (both None: no root recorded).

    ``broken`` says where and why the stored chain breaks its own rules (a
    record changed outside Ancla, or rules made stricter): nothing may be
    appended to it until an operator looks (`ancla verify` names it).
    """

    state: Any = None
    head: str | None = None
    broken: str | None = None


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def member_of(connection: Connection, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(%s)``, one array parameter.

    psycopg rewrites a query's placeholders in Python, and caches the result
    only for texts under 4 KB: an IN list of 500 parameters was rewritten on
    every call, 1.8 ms each, several per bulk of events (measured).
    """
    if connection.dialect.name == "postgresql":
        return cast(
            ColumnElement[bool],
            column == any_(bindparam(None, list(values), type_=ARRAY(column.type))),
        )
    return cast(ColumnElement[bool], column.in_(values))


def load_chains(
    connection: Connection, roots: Mapping[tuple[str, str], RecordSchema]
) -> dict[tuple[str, str], Chain]:
    """The chains that start at each (root schema, root identity) of ``roots``,
    each extended by records of the schema it maps to, as stored now."""
    records = cast(Table, Record.__table__)
    chains: dict[tuple[str, str], Chain] = {key: Chain() for key in roots}
    by_root_schema: dict[str, list[str]] = {}
    for root_schema, identity in roots:
        by_root_schema.setdefault(root_schema, []).append(identity)
    # Where each chain's head is now (its hash as text) -> the chain's key.
    frontier: dict[str, tuple[str, str]] = {}
    for root_schema, identities in by_root_schema.items():
        for chunk in _chunks(sorted(identities)):
            found = connection.execute(
                select(records.c.hash, records.c.canonical, records.c.identity).where(
                    records.c.schema == root_schema,
                    member_of(connection, records.c.identity, chunk),
                )
            )
            for record_hash, canonical, identity in found:
                key = (root_schema, identity)
                rule = cast(ChainRule, roots[key].chain)
                chains[key] = _started(rule, record_hash, canonical)
                if chains[key].broken is None:
                    frontier[record_hash] = key
    extending = sorted({schema.name for schema in roots.values()})
    while frontier:
        following: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(sorted(frontier)):
            found = connection.execute(
                select(records.c.hash, records.c.canonical, records.c.identity).where(
                    records.c.schema.in_(extending),
                    member_of(connection, records.c.identity, chunk),
                )
            )
            for record_hash, canonical, prev in found:
                key = frontier[prev]
                rule = cast(ChainRule, roots[key].chain)
                chain = _extended(rule, chains[key], record_hash, canonical)
                chains[key] = chain
                if chain.broken is None:
                    following[record_hash] = key
        frontier = following
    return chains


def _started(rule: ChainRule, record_hash: str, canonical: bytes) -> Chain:
    try:
        return Chain(rule.start(record_hash, orjson.loads(canonical)), record_hash)
    except (ValueError, KeyError, TypeError) as exc:
        return Chain(broken=f"its first record {record_hash} is unreadable ({exc})")


def _extended(rule: ChainRule, chain: Chain, record_hash: str, canonical: bytes) -> Chain:
    try:
        state = rule.fold(chain.state, record_hash, orjson.loads(canonical))
    except ChainRefusal as refusal:
        return Chain(chain.state, chain.head, f"at {record_hash}: {refusal.detail}")
    except (ValueError, KeyError, TypeError) as exc:
        return Chain(chain.state, chain.head, f"record {record_hash} is unreadable ({exc})")
    return Chain(state, record_hash)


def stored_hashes(connection: Connection, hashes: Iterable[str]) -> set[str]:
    """Which of ``hashes`` are the hashes of stored records."""
    records = cast(Table, Record.__table__)
    found: set[str] = set()
    for chunk in _chunks(sorted(set(hashes))):
        found.update(
            connection.scalars(
                select(records.c.hash).where(member_of(connection, records.c.hash, chunk))
            )
        )
    return found
