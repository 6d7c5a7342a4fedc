"""The audit of hash chains (order histories): every chain read whole, folded by its rules.

For each registered schema whose records extend a chain (ChainRule), its
records are streamed in chain order (grouped by the chain's shared columns),
one chain in memory at a time, and each chain is checked without trusting the
identity column or any status: its root exists; each record's prev (read from
its bytes) is a record of the same chain; no record has two successors; the
chain's rules hold when folded from the root. Findings go to ``report``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import orjson
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from app.models import Record
from app.records.registry import ChainRefusal, ChainRule, RecordSchema, registered, schema_named

BROKEN_LINK = "broken_link"  # a record's prev is no record of its chain
FORK = "fork"  # two records name the same prev
ORPHAN_EVENT = "orphan_event"  # a chained record whose chain's root is not recorded
RULE_VIOLATION = "rule_violation"  # the chain, folded from its root, breaks its rules

# Chains whose roots are looked up together (one IN list each).
_ROOTS_PER_QUERY = 200
_STREAM_CHUNK = 5_000

Report = Callable[..., None]


@dataclass(frozen=True, slots=True)
class _Link:
    record_id: int
    hash: str
    record: Any  # parsed bytes; None if unreadable

    @property
    def prev(self) -> object:
        return self.record.get("prev") if isinstance(self.record, dict) else None


def check_histories(*, session: Session, buyer: str | None, add: Report) -> int:
    """Check every chain (of ``buyer`` only, if given); returns how many were checked."""
    checked = 0
    for schema in registered():
        if schema.chain is not None:
            checked += _check_schema(session, schema, schema.chain, buyer, add)
    return checked


def _check_schema(
    session: Session, schema: RecordSchema, rule: ChainRule, buyer: str | None, add: Report
) -> int:
    shared = [getattr(Record, name) for name in rule.chain_columns]
    query = (
        select(Record.id, Record.hash, Record.canonical, *shared)
        .where(Record.schema == schema.name)
        .order_by(*shared, Record.id)
        .execution_options(stream_results=True, yield_per=_STREAM_CHUNK)
    )
    if buyer is not None:
        query = query.where(Record.buyer_ruc == buyer)
    rows = session.connection().execute(query)
    chains = groupby(rows, key=lambda row: tuple(row[3:]))
    checked = 0
    pending: list[tuple[str, list[_Link]]] = []
    # Roots are read on a session of their own: this one's connection is streaming.
    with Session(bind=session.get_bind()) as roots_session:
        for _, group in chains:
            links = [_Link(row[0], row[1], _parsed(row[2])) for row in group]
            pending.append((_root_identity(schema, rule, links), links))
            if len(pending) >= _ROOTS_PER_QUERY:
                checked += _check_chains(roots_session, rule, pending, add)
                pending = []
        checked += _check_chains(roots_session, rule, pending, add)
    return checked


def check_chains_of(
    *,
    session: Session,
    schema: RecordSchema,
    keys: Iterable[tuple[Any, ...]],
    add: Report,
) -> int:
    """Check the chains of ``schema`` whose shared columns (``chain_columns``) take one
    of ``keys``, as :func:`check_histories` checks every chain; returns how many were
    checked. A monitor checks the histories a batch touched this way, in its mirror.
    """
    rule = schema.chain
    if rule is None:
        return 0
    shared = [getattr(Record, name) for name in rule.chain_columns]
    wanted = sorted(set(keys))
    checked = 0
    for start in range(0, len(wanted), _ROOTS_PER_QUERY):
        chunk = wanted[start : start + _ROOTS_PER_QUERY]
        rows = session.execute(
            select(Record.id, Record.hash, Record.canonical, *shared)
            .where(Record.schema == schema.name, tuple_(*shared).in_(chunk))
            .order_by(*shared, Record.id)
        ).all()
        chains = [
            (_root_identity(schema, rule, links), links)
            for links in (
                [_Link(row[0], row[1], _parsed(row[2])) for row in group]
                for _, group in groupby(rows, key=lambda row: tuple(row[3:]))
            )
        ]
        checked += _check_chains(session, rule, chains, add)
    return checked


def _parsed(canonical: bytes) -> Any:
    try:
        return orjson.loads(canonical)
    except orjson.JSONDecodeError:
        return None


def _root_identity(schema: RecordSchema, rule: ChainRule, links: Sequence[_Link]) -> str:
    for link in links:
        try:
            return rule.root_identity(schema.columns(link.record))
        except (KeyError, TypeError, ValueError, AttributeError, AssertionError):
            continue
    return ""


def _check_chains(
    session: Session, rule: ChainRule, chains: list[tuple[str, list[_Link]]], add: Report
) -> int:
    if not chains:
        return 0
    identities = sorted({identity for identity, _ in chains if identity})
    roots: dict[str, tuple[str, bytes]] = {}
    if identities:
        found = session.execute(
            select(Record.identity, Record.hash, Record.canonical).where(
                Record.schema == rule.root_schema, Record.identity.in_(identities)
            )
        )
        roots = {
            str(identity): (record_hash, canonical) for identity, record_hash, canonical in found
        }
    for identity, links in chains:
        _check_chain(rule, identity, roots.get(identity), links, add)
    return len(chains)


def _successors(links: Sequence[_Link]) -> dict[object, list[_Link]]:
    following: dict[object, list[_Link]] = {}
    for link in links:
        following.setdefault(link.prev, []).append(link)
    return following


def _check_chain(
    rule: ChainRule,
    identity: str,
    root: tuple[str, bytes] | None,
    links: list[_Link],
    add: Report,
) -> None:
    where = identity or "(unreadable)"
    if root is None:
        root_schema = schema_named(rule.root_schema)
        for link in links:
            add(
                ORPHAN_EVENT,
                f"extends {root_schema.noun} {where}, which is not recorded",
                record_id=link.record_id,
                record_hash=link.hash,
                order=where,
            )
        return
    following = _successors(links)
    for prev, named in following.items():
        for extra in named[1:]:
            add(
                FORK,
                f"{len(named)} records of {where} name {prev} as their prev: the history forks",
                record_id=extra.record_id,
                record_hash=extra.hash,
                order=where,
                expected=named[0].hash,
                actual=extra.hash,
            )
    reached = _walk(rule, where, root, following, add)
    for link in links:
        if link.hash not in reached and following.get(link.prev, [None])[0] is link:
            add(
                BROKEN_LINK,
                f"its prev {link.prev} is no record of the history of {where}",
                record_id=link.record_id,
                record_hash=link.hash,
                order=where,
                actual=link.prev,
            )


def _walk(
    rule: ChainRule,
    where: str,
    root: tuple[str, bytes],
    following: dict[object, list[_Link]],
    add: Report,
) -> set[str]:
    """Follow the chain from its root, folding each record; the hashes reached."""
    root_hash, canonical = root
    state: Any = None
    try:
        state = rule.start(root_hash, orjson.loads(canonical))
    except (ValueError, KeyError, TypeError) as exc:
        add(
            RULE_VIOLATION,
            f"its first record is unreadable: {exc}",
            record_hash=root_hash,
            order=where,
        )
    reached: set[str] = set()
    current = root_hash
    for link in _chain_from(current, following):
        reached.add(link.hash)
        if state is None:
            continue
        try:
            state = rule.fold(state, link.hash, link.record)
        except ChainRefusal as refusal:
            add(
                RULE_VIOLATION,
                f"the history of {where} breaks its rules here: {refusal.detail}",
                record_id=link.record_id,
                record_hash=link.hash,
                order=where,
            )
            state = None  # later records cannot be judged on a broken state
        except (ValueError, KeyError, TypeError) as exc:
            add(
                RULE_VIOLATION,
                f"the history of {where} has an unreadable record here: {exc}",
                record_id=link.record_id,
                record_hash=link.hash,
                order=where,
            )
            state = None
    return reached


def _chain_from(start: str, following: dict[object, list[_Link]]) -> Iterator[_Link]:
    seen = {start}
    current: object = start
    while current in following:
        link = following[current][0]
        if link.hash in seen:  # a cycle needs a forged prev: stop, the link check names it
            return
        seen.add(link.hash)
        yield link
        current = link.hash
