"""The registry of record schemas: what the generic parts need to know of each.

Ingest, sealing, receipts and the audit handle records of any schema. What
differs between schemas is given here, once per schema, by a
:class:`RecordSchema`:

* how to validate what a client sends (``parse``) and turn it into the
  record that is hashed (``record()`` of what ``parse`` returns);
* which query columns of ``records`` a record fills (``columns``), derived
  from the record alone, so ``ancla verify`` can derive them again from the
  stored bytes and compare;
* what identifies a record within its schema (``RecordColumns.identity``):
  a second record of the same schema and identity with other content is a
  conflict (409), and the database's unique index on (schema, identity)
  refuses it whatever the schema, even from concurrent writers;
* how to name a record in messages (``describe``).

The purchase order registers itself here; a test registers a schema of its
own (:func:`register`, :func:`unregister`) to show that nothing generic
names a schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, NamedTuple, Protocol

__all__ = [
    "QUERY_COLUMNS",
    "ChainRefusal",
    "ChainRule",
    "RecordColumns",
    "RecordSchema",
    "UnknownSchema",
    "ValidRecord",
    "register",
    "registered",
    "schema_named",
    "unregister",
]


class RecordColumns(NamedTuple):
    """The query columns of ``records`` (``app.models.Record``), derived from a record.

    Every column is optional: a schema fills those that mean something for
    it and leaves the rest None. ``issued_at`` is an aware datetime and
    ``total`` an exact Decimal; the stored bytes stay the source of truth.
    """

    buyer_ruc: str | None = None
    buyer_name: str | None = None
    order_number: str | None = None
    supplier_ruc: str | None = None
    supplier_name: str | None = None
    issued_at: datetime | None = None
    currency: str | None = None
    total: Decimal | None = None
    prev_hash: str | None = None
    # What makes a record unique within its schema (None: only its hash).
    identity: str | None = None


# The names of the query columns, in RecordColumns' order (the insert's order).
QUERY_COLUMNS: tuple[str, ...] = RecordColumns._fields


class ValidRecord(Protocol):
    """What a schema's ``parse`` returns: something that passed every rule."""

    def record(self) -> dict[str, Any]:
        """The ledger record whose RFC 8785 form is hashed (DESIGN §2)."""
        ...


class UnknownSchema(LookupError):
    """A record names a schema no module here registered."""


class ChainRefusal(Exception):
    """A chain's rules refuse a record that would extend it.

    ``outcome`` is how ingest answers: "conflict" (409: the chain is not
    where the record says, or is closed) or "invalid" (422: the record
    breaks a rule of the chain, e.g. a payment above the order's total).
    """

    def __init__(self, outcome: Literal["conflict", "invalid"], detail: str) -> None:
        super().__init__(detail)
        self.outcome: Literal["conflict", "invalid"] = outcome
        self.detail = detail


@dataclass(frozen=True)
class ChainRule:
    """Records of a schema that extend a hash chain (an order's history).

    A chain starts at one record of ``root_schema`` (its root, found by its
    identity) and grows one record at a time, each naming the chain's head
    when it was written in its ``prev_hash`` column. A chained record's
    identity IS its prev hash: the unique index on (schema, identity) then
    lets every record have one successor at most, so a chain never forks,
    whoever races to extend it. ``start`` and ``fold`` are pure: the state
    of the chain after its root, and after one more record (raising
    ChainRefusal when the chain's rules refuse it); ingest, the order view
    and the audit all fold the same way.
    """

    root_schema: str
    # The identity of the chain's root, from a chained record's columns.
    root_identity: Callable[[RecordColumns], str]
    start: Callable[[str, Mapping[str, Any]], Any]
    fold: Callable[[Any, str, Mapping[str, Any]], Any]
    # A state's head's position in its chain (the root is 0).
    position: Callable[[Any], int]
    # The query columns every record of one chain shares (its root's too), by
    # which the audit reads chains whole, one at a time.
    chain_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordSchema:
    """One record schema, as the generic parts see it."""

    # The record's `schema` member, e.g. "ancla/purchase-order/1".
    name: str
    # What an agency calls one and several, for messages ("purchase order", "orders").
    noun: str
    plural: str
    # Validate what a client sent; raises pydantic's ValidationError, whose
    # errors the API reports one per field.
    parse: Callable[[object], ValidRecord]
    # The query columns of a record of this schema (as hashed: the dict
    # ``record()`` gave, or the stored bytes parsed). Raises KeyError,
    # TypeError or ValueError for a record that is not of this shape.
    columns: Callable[[Mapping[str, Any]], RecordColumns]
    # How messages name a record with these columns ("order X of buyer Y").
    describe: Callable[[RecordColumns], str]
    # The "field" of a validation error about the record as a whole (a rule
    # across several fields), e.g. "(order)".
    whole: str = "(record)"
    # Set for records that extend a chain (ChainRule); None for records that stand alone.
    chain: ChainRule | None = None
    # The SHA-256 digests of the files a record binds (its documents), for
    # GET /v1/documents/{sha256}.
    documents: Callable[[Mapping[str, Any]], list[str]] = lambda record: []


_SCHEMAS: dict[str, RecordSchema] = {}


def register(schema: RecordSchema) -> RecordSchema:
    """Make ``schema`` known to the generic parts; a second one of the same name is refused."""
    if schema.name in _SCHEMAS and _SCHEMAS[schema.name] is not schema:
        raise ValueError(f"a record schema named {schema.name!r} is already registered")
    _SCHEMAS[schema.name] = schema
    return schema


def unregister(name: str) -> None:
    """Forget a schema (tests that registered one of their own)."""
    _SCHEMAS.pop(name, None)


def schema_named(name: object) -> RecordSchema:
    """The registered schema of this name; UnknownSchema if there is none."""
    try:
        return _SCHEMAS[name]  # type: ignore[index]
    except (KeyError, TypeError):
        raise UnknownSchema(f"no record schema {name!r} is registered") from None


def registered() -> Iterator[RecordSchema]:
    """Every registered schema."""
    yield from list(_SCHEMAS.values())
