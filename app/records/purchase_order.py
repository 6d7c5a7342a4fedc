"""The purchase-order record schema, ``ancla/purchase-order/1`` (DESIGN §2, §4).

The order an agency POSTs, parsed once and strictly with the shared field
vocabulary (:mod:`app.records.vocabulary`: money as decimal strings, text
never rewritten, unknown members refused). Error locations are pydantic's
(``buyer.ruc``, ``items.2.quantity``); every message is ours. Checks that tie
several fields together (totals, buyer vs. supplier) run once every field is
valid and are reported on the order itself, with a message naming the fields
involved.

The schema's entry in the registry (:data:`SCHEMA`) tells the generic parts
(ingest, audit) which query columns an order fills and that buyer + order
number identify it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Final, NotRequired, Self, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from app.records.registry import RecordColumns, RecordSchema, register
from app.records.vocabulary import (
    CENTS,
    CODE_MAX,
    CURRENCY_CODES,
    CURRENCY_RE,
    DESCRIPTION_MAX,
    DOCUMENTS_MAX,
    EXACT,
    MONEY_RE,
    NAME_MAX,
    ORDER_NUMBER_MAX,
    ORDER_NUMBER_RE,
    QUANTITY_RE,
    RUC_PREFIXES,
    RUC_RE,
    SHA256_RE,
    STATUS_MAX,
    STRICT,
    UNIT_PRICE_RE,
    URL_MAX,
    Code,
    Currency,
    DateTimeWithOffset,
    Description,
    Document,
    Money,
    Name,
    OrderNumber,
    Party,
    Quantity,
    Ruc,
    Status,
    UnitPrice,
    bounded_list,
    capitals,
    check_ruc,
    datetime_field,
    json_kind,
    known_currency,
    quantity_field,
    ruc_check_digit,
    ruc_field,
    ruc_is_valid,
    url_parts,
)

__all__ = [
    "CURRENCY_CODES",
    "PURCHASE_ORDER_EXAMPLE",
    "PURCHASE_ORDER_SCHEMA",
    "RUC_PREFIXES",
    "Classification",
    "Document",
    "Item",
    "OrderNumber",
    "Party",
    "PurchaseOrder",
    "Ruc",
    "ValidOrder",
    "check_ruc",
    "ruc_check_digit",
    "ruc_is_valid",
    "validate_order",
]

# The `schema` member of every purchase-order record (DESIGN §2). Changing what
# a record holds (a field, a default) means a new schema, never a new meaning
# for this one: old hashes must stay reproducible.
PURCHASE_ORDER_SCHEMA: Final = "ancla/purchase-order/1"

# Bounds on list sizes, checked before the elements are validated so an
# oversized order is refused without validating a million items first.
_ITEMS_MAX: Final = 1000


class Classification(BaseModel):
    """What an item is in a classification scheme, e.g. UNSPSC ``44121701``."""

    model_config = STRICT

    scheme: Code
    id: Code


class Item(BaseModel):
    """One line of the order; ``quantity × unit_price`` is its amount."""

    model_config = STRICT

    description: Description
    quantity: Quantity
    unit: Code
    unit_price: UnitPrice
    classification: Classification | None = None


# Consistent with every rule above (3735.00 + 850.00 + 327.70 = 4912.70; IGV
# 18% = 884.29), so the example in the OpenAPI page is one that validates. The
# parties, order number, date and totals are those of a real order (DESIGN §4);
# the item breakdown is illustrative.
PURCHASE_ORDER_EXAMPLE: Final[dict[str, Any]] = {
    "order_number": "OCAM-2026-1556-7-0",
    "buyer": {
        "ruc": "20600027426",
        "name": "MINISTERIO PÚBLICO-GERENCIA ADMINISTRATIVA DE SAN MARTÍN",
    },
    "supplier": {"ruc": "10412742694", "name": "FACUNDO SALAS TELLY CESAR"},
    "issued_at": "2026-01-31T09:57:50-05:00",
    "currency": "PEN",
    "subtotal": "4912.70",
    "tax": "884.29",
    "total": "5796.99",
    "framework_agreement": "ÚTILES DE ESCRITORIO, PAPELES Y CARTONES",
    "procurement_method": "Compra ordinaria",
    "status": "ACEPTADA",
    "items": [
        {
            "description": "PAPEL BOND 75 G/M2 TAMAÑO A4 X 500 HOJAS",
            "quantity": "150",
            "unit": "PAQUETE",
            "unit_price": "24.90",
            "classification": {"scheme": "UNSPSC", "id": "14111507"},
        },
        {
            "description": "LAPICERO DE TINTA SECA PUNTA FINA COLOR AZUL X 50",
            "quantity": "100",
            "unit": "CAJA",
            "unit_price": "8.50",
            "classification": {"scheme": "UNSPSC", "id": "44121701"},
        },
        {
            "description": "ARCHIVADOR DE CARTÓN LOMO ANCHO TAMAÑO OFICIO",
            "quantity": "58",
            "unit": "UNIDAD",
            "unit_price": "5.65",
        },
    ],
    "documents": [
        {
            "title": "Orden electrónica",
            "url": "https://apps1.perucompras.gob.pe//OrdenCompra/obtenerPdfOrdenPublico"
            "?ID_OrdenCompra=3447646&ImprimirCompleto=1",
        }
    ],
}


def _items_subtotal(lines: Iterable[tuple[str, str]]) -> Decimal:
    """Σ quantity × unit_price over (quantity, unit_price) pairs, exact, then
    rounded half-up to céntimos."""
    exact = Decimal(0)
    for quantity, unit_price in lines:
        line = EXACT.multiply(Decimal(quantity), Decimal(unit_price))
        exact = EXACT.add(exact, line)
    return exact.quantize(CENTS, rounding=ROUND_HALF_UP, context=EXACT)


def _consistency_problems(
    buyer_ruc: str,
    supplier_ruc: str,
    subtotal: str,
    tax: str,
    total: str,
    lines: Iterable[tuple[str, str]] | None,
) -> list[str]:
    """What is wrong between an order's fields, each valid alone: all of it at
    once, so an agency fixes an order in one round trip."""
    problems: list[str] = []
    if buyer_ruc == supplier_ruc:
        problems.append(f"buyer.ruc and supplier.ruc must differ (both are {buyer_ruc})")
    computed_total = EXACT.add(Decimal(subtotal), Decimal(tax))
    if computed_total != Decimal(total):
        problems.append(
            f"subtotal + tax must equal total: {subtotal} + {tax}"
            f" = {computed_total}, but total is {total}"
        )
    if lines is not None:
        items_subtotal = _items_subtotal(lines)
        if items_subtotal != Decimal(subtotal):
            problems.append(
                "the items' quantity × unit_price, summed and rounded to 0.01,"
                f" must equal subtotal: items sum to {items_subtotal},"
                f" but subtotal is {subtotal}"
            )
    return problems


class PurchaseOrder(BaseModel):
    """A purchase order as an agency records it (DESIGN §4).

    Field names are the public interface. Absent optional fields stay absent
    in :meth:`to_record`; ``currency`` defaults to ``"PEN"`` and is always
    recorded.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={"examples": [PURCHASE_ORDER_EXAMPLE]},
    )

    order_number: OrderNumber
    buyer: Party
    supplier: Party
    issued_at: DateTimeWithOffset
    currency: Currency = "PEN"
    subtotal: Money
    tax: Money
    total: Money
    framework_agreement: Name | None = None
    procurement_method: Name | None = None
    status: Status | None = None
    items: Annotated[list[Item] | None, BeforeValidator(bounded_list("items", 1, _ITEMS_MAX))] = (
        None
    )
    documents: Annotated[
        list[Document] | None, BeforeValidator(bounded_list("documents", 0, DOCUMENTS_MAX))
    ] = None

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        problems = _consistency_problems(
            self.buyer.ruc,
            self.supplier.ruc,
            self.subtotal,
            self.tax,
            self.total,
            None if self.items is None else ((i.quantity, i.unit_price) for i in self.items),
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def issued_at_datetime(self) -> datetime:
        """``issued_at`` as an aware datetime (validation guarantees the offset)."""
        return datetime.fromisoformat(self.issued_at)

    def to_record(self) -> dict[str, Any]:
        """The ledger record whose RFC 8785 form is hashed (DESIGN §2).

        Optional fields that were absent (or null) are omitted, not written as
        null; defaults (``currency``) are written out.
        """
        return {
            "schema": PURCHASE_ORDER_SCHEMA,
            "purchase_order": self.model_dump(mode="json", exclude_none=True),
        }

    def record(self) -> dict[str, Any]:
        """The ledger record (:meth:`to_record`): a PurchaseOrder is a valid record."""
        return self.to_record()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Parse a record made by :meth:`to_record`, e.g. one fetched by hash.

        Raises ValueError (pydantic's ValidationError is one) unless ``record``
        is exactly ``{"schema": "ancla/purchase-order/1", "purchase_order":
        {...}}`` with a valid order in the form :meth:`to_record` writes: a
        record in any other form would not hash to what Ancla recorded.
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"a record must be a JSON object, not {json_kind(record)}")
        schema = record.get("schema")
        if schema != PURCHASE_ORDER_SCHEMA:
            raise ValueError(f"record schema is {schema!r}, expected {PURCHASE_ORDER_SCHEMA!r}")
        unknown = sorted(set(record) - {"schema", "purchase_order"})
        if unknown:
            raise ValueError(f"record has unknown members: {', '.join(unknown)}")
        if "purchase_order" not in record:
            raise ValueError("record has no purchase_order member")
        order = cls.model_validate(record["purchase_order"])
        if order.to_record() != dict(record):
            raise ValueError(
                "record is not in the form Ancla records (explicit nulls or a missing"
                " currency); its hash would differ from the recorded one"
            )
        return order


# --- Valid orders, and the fast path to them ------------------------------------


@dataclass(frozen=True, slots=True)
class ValidOrder:
    """A purchase order that passed every rule, in the form it is recorded: the
    ``purchase_order`` member of :meth:`PurchaseOrder.to_record` (absent or null
    optional fields left out, ``currency`` written out). Made by
    :func:`validate_order`, or :meth:`of` from a validated model; treat ``data``
    as read-only."""

    data: dict[str, Any]

    @classmethod
    def of(cls, order: PurchaseOrder) -> ValidOrder:
        return cls(order.model_dump(mode="json", exclude_none=True))

    @property
    def buyer_ruc(self) -> str:
        return self.data["buyer"]["ruc"]  # type: ignore[no-any-return]

    @property
    def order_number(self) -> str:
        return self.data["order_number"]  # type: ignore[no-any-return]

    def record(self) -> dict[str, Any]:
        """The ledger record whose RFC 8785 form is hashed (DESIGN §2)."""
        return {"schema": PURCHASE_ORDER_SCHEMA, "purchase_order": self.data}


# PurchaseOrder calls a Python function per field (for messages of our own),
# builds a model per object and is then dumped back to a dict: 20 us of CPU
# per order, the largest share of a bulk record's. Nearly every order an
# agency sends is valid, so it is first checked by pydantic-core's own
# constraints (compiled; patterns on the Rust regex engine, where `$` is the
# end of the text) on plain dicts, then by one Python function for what no
# pattern says (check digits, dates, URLs, sums), reusing the validators
# above. Anything that path does not accept (an invalid order, an explicit
# null, a surrogate) goes to PurchaseOrder, which decides and words every
# error. PurchaseOrder alone defines what is valid: the fast path may refuse
# more, never accept more, and must record the same data (both checked in
# tests/app/test_fast_validation.py, on generated orders too).

# str.isspace() characters (what str.strip() removes); none is above U+3000
# (a test checks every code point).
_WHITESPACE: Final = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


_CONTROLS: Final = "\\x00-\\x1F\\x7F-\\x9F"
# What may open and close a text: neither whitespace nor a control character.
_EDGE: Final = "".join(f"\\x{{{ord(c):X}}}" for c in _WHITESPACE) + _CONTROLS
# Not empty, no control characters, no whitespace first or last: bounded_text's rules.
_TEXT_PATTERN: Final = f"^[^{_EDGE}](?:[^{_CONTROLS}]*[^{_EDGE}])?$"
_FAST: Final = ConfigDict(extra="forbid", strict=True)


def _whole(pattern: re.Pattern[str]) -> str:
    return f"^(?:{pattern.pattern})$"


_FastName = Annotated[str, StringConstraints(max_length=NAME_MAX, pattern=_TEXT_PATTERN)]
_FastDescription = Annotated[
    str, StringConstraints(max_length=DESCRIPTION_MAX, pattern=_TEXT_PATTERN)
]
_FastCode = Annotated[str, StringConstraints(max_length=CODE_MAX, pattern=_TEXT_PATTERN)]
_FastRuc = Annotated[str, StringConstraints(pattern=_whole(RUC_RE))]
_FastMoney = Annotated[str, StringConstraints(pattern=_whole(MONEY_RE))]
_FastOrderNumber = Annotated[
    str, StringConstraints(max_length=ORDER_NUMBER_MAX, pattern=_whole(ORDER_NUMBER_RE))
]
_FastStatusText = Annotated[str, StringConstraints(max_length=STATUS_MAX, pattern=_TEXT_PATTERN)]
_FastUrl = Annotated[str, StringConstraints(max_length=URL_MAX, pattern=_TEXT_PATTERN)]
_FastSha256 = Annotated[str, StringConstraints(pattern=_whole(SHA256_RE))]


@with_config(_FAST)
class _FastParty(TypedDict):
    ruc: _FastRuc
    name: _FastName


@with_config(_FAST)
class _FastClassification(TypedDict):
    scheme: _FastCode
    id: _FastCode


@with_config(_FAST)
class _FastItem(TypedDict):
    description: _FastDescription
    quantity: Annotated[str, StringConstraints(pattern=_whole(QUANTITY_RE))]
    unit: _FastCode
    unit_price: Annotated[str, StringConstraints(pattern=_whole(UNIT_PRICE_RE))]
    classification: NotRequired[_FastClassification]


@with_config(_FAST)
class _FastDocument(TypedDict):
    title: _FastName
    url: _FastUrl
    sha256: NotRequired[_FastSha256]


@with_config(_FAST)
class _FastOrder(TypedDict):
    order_number: _FastOrderNumber
    buyer: _FastParty
    supplier: _FastParty
    issued_at: str
    currency: NotRequired[Annotated[str, StringConstraints(pattern=_whole(CURRENCY_RE))]]
    subtotal: _FastMoney
    tax: _FastMoney
    total: _FastMoney
    framework_agreement: NotRequired[_FastName]
    procurement_method: NotRequired[_FastName]
    status: NotRequired[_FastStatusText]
    items: NotRequired[Annotated[list[_FastItem], Field(min_length=1, max_length=_ITEMS_MAX)]]
    documents: NotRequired[
        Annotated[list[_FastDocument], Field(min_length=0, max_length=DOCUMENTS_MAX)]
    ]


_FAST_ORDER: Final = TypeAdapter(_FastOrder)
# A URL that url_parts accepts without parsing it: lowercase http or https, a
# host of letters, digits, dots and hyphens (no user, port or IPv6 literal),
# then a path, query or fragment, which url_parts does not look into.
# urlsplit with its host and port properties cost 3.5 us per document.
_PLAIN_URL: Final = re.compile(r"https?://[A-Za-z0-9.-]+(?:[/?#].*)?", re.DOTALL)


def _fast_url(url: str) -> None:
    """url_parts' verdict on a URL whose length and text the patterns checked;
    raises ValueError. A plain URL needs no urlsplit."""
    if not _PLAIN_URL.fullmatch(url):
        url_parts(url)


def _fast_order(data: object) -> dict[str, Any] | None:
    """``data`` as recorded if the fast path accepts it; None to let PurchaseOrder decide."""
    try:
        order = cast(dict[str, Any], _FAST_ORDER.validate_python(data))
        # The TypedDicts' patterns and lengths hold bounded_text's rules and the
        # codes' shapes: only what no pattern says is checked below.
        ruc_field(order["buyer"]["ruc"])
        ruc_field(order["supplier"]["ruc"])
        datetime_field(order["issued_at"])
        known_currency(order.setdefault("currency", "PEN"))
        if "status" in order:
            capitals(order["status"])
        for document in order.get("documents", ()):
            _fast_url(document["url"])
        items = order.get("items")
        if items is not None:
            for item in items:
                quantity_field(item["quantity"])
    except (ValidationError, ValueError):
        return None
    problems = _consistency_problems(
        order["buyer"]["ruc"],
        order["supplier"]["ruc"],
        order["subtotal"],
        order["tax"],
        order["total"],
        None if items is None else ((i["quantity"], i["unit_price"]) for i in items),
    )
    return None if problems else order


def validate_order(data: object) -> ValidOrder:
    """Validate one order as PurchaseOrder does; raise its ValidationError if invalid."""
    fast = _fast_order(data)
    if fast is not None:
        return ValidOrder(fast)
    return ValidOrder.of(PurchaseOrder.model_validate(data))


# --- The schema's entry in the registry --------------------------------------------------


def order_identity(buyer_ruc: str, order_number: str) -> str:
    """What identifies an order in the ledger: its buyer and its number.

    A RUC is 11 digits, so the first "/" ends it (order numbers may hold "/").
    """
    return f"{buyer_ruc}/{order_number}"


def order_columns(record: Mapping[str, Any]) -> RecordColumns:
    """The query columns of a purchase-order record (the record as hashed)."""
    order = record["purchase_order"]
    buyer, supplier = order["buyer"], order["supplier"]
    return RecordColumns(
        buyer_ruc=buyer["ruc"],
        buyer_name=buyer["name"],
        order_number=order["order_number"],
        supplier_ruc=supplier["ruc"],
        supplier_name=supplier["name"],
        # Validation guarantees an ISO 8601 time with a UTC offset.
        issued_at=datetime.fromisoformat(order["issued_at"]).astimezone(UTC),
        currency=order["currency"],
        total=Decimal(order["total"]),
        identity=order_identity(buyer["ruc"], order["order_number"]),
    )


def _describe(columns: RecordColumns) -> str:
    return f"order {columns.order_number} of buyer {columns.buyer_ruc}"


def order_documents(record: Mapping[str, Any]) -> list[str]:
    """The digests of the files the order binds (its documents' sha256)."""
    documents = record["purchase_order"].get("documents", ())
    return [document["sha256"] for document in documents if "sha256" in document]


SCHEMA: Final = register(
    RecordSchema(
        name=PURCHASE_ORDER_SCHEMA,
        noun="purchase order",
        plural="orders",
        parse=validate_order,
        columns=order_columns,
        describe=_describe,
        whole="(order)",
        documents=order_documents,
    )
)
