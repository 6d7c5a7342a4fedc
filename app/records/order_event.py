"""The order-history record schema, ``ancla/order-event/1`` (DESIGN §2 "Order history").

Every stage of an order after it was issued is a record of its own, chained to
the order's previous record by hash, so an order's history is a hash chain
that starts at its purchase-order record (position 0) and only grows at its
head::

    {"schema": "ancla/order-event/1",
     "order": {"buyer_ruc": "20600027426", "order_number": "OCAM-2026-1556-7-0"},
     "prev": "0x… the order's head when this one was written",
     "event": {"type": "paid", "occurred_at": "2026-03-02T11:20:00-05:00",
               "payment": {"amount": "5796.99", "currency": "PEN"}}}

Two parts, both pure:

* :func:`parse_event` validates what an agency sends (strict, like orders:
  every bad field named, unknown members refused, money as decimal strings);
* :class:`OrderState` and :func:`apply_event` are the rules of the table in
  DESIGN §2 that need the history so far (nothing after ``cancelled``;
  invoices, and payments, never above the current total; an amendment keeps
  buyer and order number; nothing before the order was issued; money in the
  order's currency). Ingest, the order view, ``ancla verify`` and
  ``ancla verify-order`` all fold a history with the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, NotRequired, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict

# The fast path's building blocks are the orders' (one spelling of the text
# rules as patterns, tested there against bounded_text).
from app.records.purchase_order import (
    _FAST,
    PURCHASE_ORDER_SCHEMA,
    PurchaseOrder,
    _fast_order,
    _fast_url,
    _FastCode,
    _FastDescription,
    _FastDocument,
    _FastMoney,
    _FastName,
    _FastOrderNumber,
    _FastRuc,
    _FastSha256,
    _FastStatusText,
    _FastUrl,
    order_identity,
)
from app.records.registry import (
    ChainRefusal,
    ChainRule,
    RecordColumns,
    RecordSchema,
    register,
)
from app.records.vocabulary import (
    DOCUMENTS_MAX,
    EXACT,
    STATUS_MAX,
    STRICT,
    Code,
    Currency,
    DateTimeWithOffset,
    Description,
    Document,
    Name,
    OrderNumber,
    Ruc,
    Sha256,
    Url,
    bounded_list,
    bounded_text,
    currency_field,
    datetime_field,
    documented,
    json_kind,
    money_field,
    require_str,
    ruc_field,
)
from ledger.hashing import from_hex32

__all__ = [
    "EVENT_TYPES",
    "ORDER_EVENT_SCHEMA",
    "SCHEMA",
    "EventBody",
    "OrderState",
    "ValidEvent",
    "apply_event",
    "event_record",
    "parse_event",
    "start_order",
    "validate_event",
]

ORDER_EVENT_SCHEMA: Final = "ancla/order-event/1"

EVENT_TYPES: Final = (
    "accepted",
    "amended",
    "delivered",
    "invoiced",
    "paid",
    "cancelled",
    "status",
    "document",
)

# --- Fields -------------------------------------------------------------------------------


def _prev(value: object) -> str:
    text = require_str(value, 'the hash of the order\'s latest record, "0x" + 64 hex digits')
    try:
        from_hex32(text, what="prev")
    except ValueError:
        raise ValueError(
            "must be the hash of the order's latest record: 0x followed by 64 lowercase hex digits"
        ) from None
    return text


def _positive(value: object) -> str:
    text = money_field(value)
    if Decimal(text) == 0:
        raise ValueError("must be greater than zero")
    return text


def _size(value: object) -> int:
    # A file's size in bytes: a JSON integer (RFC 8785 writes it exactly up to 2**53).
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number of bytes, not {json_kind(value)}")
    if not 0 <= value <= 2**53 - 1:
        raise ValueError("must be between 0 and 2**53 - 1 bytes")
    return value


_media_text = bounded_text(255)


def _media_type(value: object) -> str:
    text = _media_text(value)
    kind, _, subtype = text.partition("/")
    if not kind or not subtype or " " in text or text != text.lower():
        raise ValueError('must be a media type in lowercase, such as "application/pdf"')
    return text


_code_text = bounded_text(64)


def _document_type(value: object) -> str:
    text = _code_text(value)
    # OCDS's documentType codelist is open: its codes are lowerCamelCase words.
    if not text.isascii() or not text.isalpha() or not text[0].islower():
        raise ValueError('must be an OCDS documentType code, such as "contractSigned"')
    return text


_status_text = bounded_text(STATUS_MAX)

Prev = Annotated[str, BeforeValidator(_prev), documented("0x[0-9a-f]{64}")]
PositiveMoney = Annotated[
    str, BeforeValidator(_positive), documented(description="decimal string above zero")
]
# Verbatim, as the source system wrote it (Perú Compras' states are capitals,
# others need not be): only the text rules apply.
VerbatimStatus = Annotated[
    str, BeforeValidator(_status_text), documented(minLength=1, maxLength=STATUS_MAX)
]
_Documents = Annotated[
    list[Document] | None, BeforeValidator(bounded_list("documents", 1, DOCUMENTS_MAX))
]


class Invoice(BaseModel):
    model_config = STRICT

    number: Code
    issued_at: DateTimeWithOffset
    amount: PositiveMoney
    currency: Currency


class Payment(BaseModel):
    model_config = STRICT

    amount: PositiveMoney
    currency: Currency
    reference: Name | None = None


class BoundDocument(BaseModel):
    """A file bound to the order by the SHA-256 of its bytes (a ``document`` event)."""

    model_config = STRICT

    title: Name
    document_type: Annotated[str, BeforeValidator(_document_type), documented(maxLength=64)]
    media_type: Annotated[str, BeforeValidator(_media_type), documented(maxLength=255)]
    size: Annotated[int, BeforeValidator(_size), Field(ge=0)]
    sha256: Sha256
    url: Url | None = None


# --- Event bodies, one model per type ---------------------------------------------------------

_Base = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Event(BaseModel):
    model_config = _Base

    occurred_at: DateTimeWithOffset


class Accepted(_Event):
    type: Literal["accepted"]
    note: Description | None = None


class Amended(_Event):
    type: Literal["amended"]
    purchase_order: PurchaseOrder
    rationale: Description


class Delivered(_Event):
    type: Literal["delivered"]
    note: Description | None = None
    documents: _Documents = None


class Invoiced(_Event):
    type: Literal["invoiced"]
    invoice: Invoice


class Paid(_Event):
    type: Literal["paid"]
    payment: Payment


class Cancelled(_Event):
    type: Literal["cancelled"]
    rationale: Description


class StatusReported(_Event):
    type: Literal["status"]
    status: VerbatimStatus
    note: Description | None = None
    documents: _Documents = None


class DocumentBound(_Event):
    type: Literal["document"]
    document: BoundDocument


Event = Annotated[
    Accepted | Amended | Delivered | Invoiced | Paid | Cancelled | StatusReported | DocumentBound,
    Field(discriminator="type"),
]


class EventBody(BaseModel):
    """What an agency POSTs to ``/v1/purchase-orders/{buyer_ruc}/{order_number}/events``:
    ``{"prev", "type", "occurred_at", …the type's members}``, with the order
    named by the path (or, in ``POST /v1/events/bulk``, by ``buyer_ruc`` and
    ``order_number`` members)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    buyer_ruc: Ruc
    order_number: OrderNumber
    prev: Prev
    event: Event

    def record(self) -> dict[str, Any]:
        """The ledger record whose RFC 8785 form is hashed (DESIGN §2)."""
        return event_record(
            self.buyer_ruc,
            self.order_number,
            self.prev,
            self.event.model_dump(mode="json", exclude_none=True),
        )


_MODELS: Final[dict[str, type[_Event]]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        Accepted,
        Amended,
        Delivered,
        Invoiced,
        Paid,
        Cancelled,
        StatusReported,
        DocumentBound,
    )
}
_ORDER_KEYS: Final = ("buyer_ruc", "order_number", "prev")


class _Head(BaseModel):
    model_config = _Base

    buyer_ruc: Ruc
    order_number: OrderNumber
    prev: Prev


def event_record(
    buyer_ruc: str, order_number: str, prev: str, event: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "schema": ORDER_EVENT_SCHEMA,
        "order": {"buyer_ruc": buyer_ruc, "order_number": order_number},
        "prev": prev,
        "event": dict(event),
    }


def parse_event(data: object) -> EventBody:
    """Validate one event as sent: ``{"buyer_ruc", "order_number", "prev", "type",
    "occurred_at", …the type's members}``; raises pydantic's ValidationError with
    every problem located as sent (``payment.amount``)."""
    if not isinstance(data, Mapping):
        return EventBody.model_validate(data)  # pydantic words the type error
    problems: list[Any] = []
    head = {key: data[key] for key in _ORDER_KEYS if key in data}
    members = {key: value for key, value in data.items() if key not in _ORDER_KEYS}
    try:
        parsed_head = _Head.model_validate(head)
    except ValidationError as exc:
        problems += exc.errors()
    kind = members.get("type")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    event: _Event | None = None
    if "type" not in members:
        problems.append({"type": "missing", "loc": ("type",), "input": dict(members)})
    elif model is None:
        problems.append(
            {
                "type": "value_error",
                "loc": ("type",),
                "input": kind,
                "ctx": {"error": ValueError(f"must be one of {', '.join(EVENT_TYPES)}")},
            }
        )
    else:
        try:
            event = model.model_validate(members)
        except ValidationError as exc:
            problems += exc.errors()
    if problems:
        raise ValidationError.from_exception_data("EventBody", [_again(p) for p in problems])
    # Every part is validated above: built without validating it all again.
    return EventBody.model_construct(
        buyer_ruc=parsed_head.buyer_ruc,
        order_number=parsed_head.order_number,
        prev=parsed_head.prev,
        event=event,  # type: ignore[arg-type]  # one of the union, by _MODELS
    )


def _again(error: Any) -> Any:
    """A reported error as pydantic takes it back to raise it again."""
    detail = {"type": error["type"], "loc": error["loc"], "input": error.get("input")}
    if error.get("ctx"):
        detail["ctx"] = error["ctx"]
    return detail


# --- Valid events, and the fast path to them ----------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidEvent:
    """An event that passed every rule of :func:`parse_event`, in the form it is
    recorded: ``data`` is :meth:`EventBody.record` (absent or null optional
    members of the event left out), built once. Made by :func:`validate_event`,
    or :meth:`of` from a validated body; treat ``data`` as read-only."""

    data: dict[str, Any]

    @classmethod
    def of(cls, body: EventBody) -> ValidEvent:
        return cls(body.record())

    @property
    def buyer_ruc(self) -> str:
        return self.data["order"]["buyer_ruc"]  # type: ignore[no-any-return]

    @property
    def order_number(self) -> str:
        return self.data["order"]["order_number"]  # type: ignore[no-any-return]

    @property
    def prev(self) -> str:
        return self.data["prev"]  # type: ignore[no-any-return]

    @property
    def event(self) -> dict[str, Any]:
        return self.data["event"]  # type: ignore[no-any-return]

    def record(self) -> dict[str, Any]:
        """The ledger record whose RFC 8785 form is hashed (DESIGN §2): a new outer
        dict each time, as EventBody.record() makes, the members shared."""
        return dict(self.data)


# parse_event validates the head and the type's model with a Python function
# per field, builds the models, and record() dumps them back to a dict: 21 us
# of CPU per "accepted" event, twice an order's fast path although an event is
# a fifth of an order's size. As for orders (app.records.purchase_order's
# _fast_order, whose comment says more), the event as sent is first checked as
# a plain dict by pydantic-core's own constraints (a TypedDict per type: the
# head's and the type's members in one flat dict), then by the same validator
# functions the models call for what no pattern says. Anything it does not
# accept (an invalid event, an explicit null, a surrogate, an unknown type) goes
# to parse_event, which decides and words every error. The models alone define
# what is valid: the fast path may refuse more, never accept more, and must
# record the same data (tests/app/test_fast_event_validation.py).

# from_hex32's rule (what _prev checks) as a pattern.
_FastPrev = Annotated[str, StringConstraints(pattern="^0x[0-9a-f]{64}$")]
_FastDocuments = Annotated[list[_FastDocument], Field(min_length=1, max_length=DOCUMENTS_MAX)]


@with_config(_FAST)
class _FastInvoice(TypedDict):
    number: _FastCode
    issued_at: str
    amount: _FastMoney
    currency: str


@with_config(_FAST)
class _FastPayment(TypedDict):
    amount: _FastMoney
    currency: str
    reference: NotRequired[_FastName]


@with_config(_FAST)
class _FastBoundDocument(TypedDict):
    title: _FastName
    document_type: str
    media_type: str
    size: int
    sha256: _FastSha256
    url: NotRequired[_FastUrl]


# TypedDicts do not inherit their bases' pydantic config: each is decorated.
class _FastHead(TypedDict):
    buyer_ruc: _FastRuc
    order_number: _FastOrderNumber
    prev: _FastPrev
    occurred_at: str


@with_config(_FAST)
class _FastAccepted(_FastHead):
    type: Literal["accepted"]
    note: NotRequired[_FastDescription]


@with_config(_FAST)
class _FastAmended(_FastHead):
    type: Literal["amended"]
    purchase_order: Any  # _fast_order's to judge
    rationale: _FastDescription


@with_config(_FAST)
class _FastDelivered(_FastHead):
    type: Literal["delivered"]
    note: NotRequired[_FastDescription]
    documents: NotRequired[_FastDocuments]


@with_config(_FAST)
class _FastInvoiced(_FastHead):
    type: Literal["invoiced"]
    invoice: _FastInvoice


@with_config(_FAST)
class _FastPaid(_FastHead):
    type: Literal["paid"]
    payment: _FastPayment


@with_config(_FAST)
class _FastCancelled(_FastHead):
    type: Literal["cancelled"]
    rationale: _FastDescription


@with_config(_FAST)
class _FastStatus(_FastHead):
    type: Literal["status"]
    status: _FastStatusText
    note: NotRequired[_FastDescription]
    documents: NotRequired[_FastDocuments]


@with_config(_FAST)
class _FastDocumentBound(_FastHead):
    type: Literal["document"]
    document: _FastBoundDocument


def _documents(event: dict[str, Any]) -> None:
    for document in event.get("documents", ()):
        _fast_url(document["url"])


def _money(money: dict[str, Any]) -> None:
    _positive(money["amount"])
    currency_field(money["currency"])


def _invoice(event: dict[str, Any]) -> None:
    invoice = event["invoice"]
    datetime_field(invoice["issued_at"])
    _money(invoice)


def _amended(event: dict[str, Any]) -> None:
    order = _fast_order(event["purchase_order"])
    if order is None:
        raise ValueError("the amended order is PurchaseOrder's to judge")
    event["purchase_order"] = order


def _bound(event: dict[str, Any]) -> None:
    document = event["document"]
    _document_type(document["document_type"])
    _media_type(document["media_type"])
    _size(document["size"])
    if "url" in document:
        _fast_url(document["url"])


def _nothing(event: dict[str, Any]) -> None:
    return None


# Per type: the members' shapes, then what no pattern says (raises ValueError).
_FAST_EVENTS: Final[dict[str, tuple[TypeAdapter[Any], Callable[[dict[str, Any]], None]]]] = {
    "accepted": (TypeAdapter(_FastAccepted), _nothing),
    "amended": (TypeAdapter(_FastAmended), _amended),
    "delivered": (TypeAdapter(_FastDelivered), _documents),
    "invoiced": (TypeAdapter(_FastInvoiced), _invoice),
    "paid": (TypeAdapter(_FastPaid), lambda event: _money(event["payment"])),
    "cancelled": (TypeAdapter(_FastCancelled), _nothing),
    "status": (TypeAdapter(_FastStatus), _documents),
    "document": (TypeAdapter(_FastDocumentBound), _bound),
}


def _fast_event(data: object) -> ValidEvent | None:
    """``data`` as recorded if the fast path accepts it; None to let parse_event decide."""
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    fast = _FAST_EVENTS.get(kind) if isinstance(kind, str) else None
    if fast is None:
        return None
    adapter, check = fast
    try:
        # A new dict (the caller's is not changed): the head's members come out of it.
        event = cast(dict[str, Any], adapter.validate_python(data))
        order = {
            "buyer_ruc": ruc_field(event.pop("buyer_ruc")),
            "order_number": event.pop("order_number"),
        }
        prev = event.pop("prev")
        datetime_field(event["occurred_at"])
        check(event)
    except (ValidationError, ValueError):
        return None
    return ValidEvent({"schema": ORDER_EVENT_SCHEMA, "order": order, "prev": prev, "event": event})


def validate_event(data: object) -> ValidEvent:
    """Validate one event as :func:`parse_event` does; raise its ValidationError if invalid."""
    fast = _fast_event(data)
    if fast is not None:
        return fast
    return ValidEvent.of(parse_event(data))


# --- The order's state, folded over its history ------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order as it stands after its history so far (DESIGN §4's "as it stands now")."""

    buyer_ruc: str
    order_number: str
    issued_at: datetime
    # The order as issued, and as it stands now (the last amendment's order).
    issued: Mapping[str, Any]
    current: Mapping[str, Any]
    invoiced: Decimal
    paid: Decimal
    cancelled: bool
    accepted: bool
    delivered: bool
    last_status: str | None
    # When the last status took effect: the latest ``status`` event's
    # occurred_at, or the issue time for the order's own status (None: no
    # status yet). An importer uses it to tell an older report from a newer one.
    last_status_at: datetime | None
    # The hash of the history's latest record and its position (0: the order).
    head: str
    seq: int

    @property
    def currency(self) -> str:
        return str(self.current["currency"])

    @property
    def total(self) -> Decimal:
        return Decimal(self.current["total"])

    def to_dict(self) -> dict[str, Any]:
        """The order as it stands now, for the order view."""
        return {
            "purchase_order": dict(self.current),
            "currency": self.currency,
            "total": self.current["total"],
            "invoiced": _text(self.invoiced),
            "paid": _text(self.paid),
            "outstanding": _text(self.total - self.paid),
            "accepted": self.accepted,
            "delivered": self.delivered,
            "cancelled": self.cancelled,
            "last_status": self.last_status,
        }


def _text(amount: Decimal) -> str:
    return format(amount.quantize(Decimal("0.01")), "f")


def start_order(record_hash: str, record: Mapping[str, Any]) -> OrderState:
    """The state of an order's history that holds only the order (position 0)."""
    order = record["purchase_order"]
    issued_at = datetime.fromisoformat(order["issued_at"])
    return OrderState(
        buyer_ruc=order["buyer"]["ruc"],
        order_number=order["order_number"],
        issued_at=issued_at,
        issued=order,
        current=order,
        invoiced=Decimal(0),
        paid=Decimal(0),
        cancelled=False,
        accepted=order.get("status") == "ACEPTADA",
        delivered=False,
        last_status=order.get("status"),
        last_status_at=issued_at if order.get("status") is not None else None,
        head=record_hash,
        seq=0,
    )


def _money_check(state: OrderState, amount: str, currency: str, what: str) -> Decimal:
    if currency != state.currency:
        raise ChainRefusal(
            "invalid", f"the {what} is in {currency}, but the order is in {state.currency}"
        )
    return Decimal(amount)


def _within_total(
    state: OrderState, so_far: Decimal, money: Mapping[str, Any], done: Literal["invoiced", "paid"]
) -> Decimal:
    """``so_far`` plus an invoice's or payment's amount, which must be in the order's
    currency and keep the sum within the order's current total."""
    what, plural = ("invoice", "invoices") if done == "invoiced" else ("payment", "payments")
    added = EXACT.add(so_far, _money_check(state, money["amount"], money["currency"], what))
    if added > state.total:
        raise ChainRefusal(
            "invalid",
            f"{plural} would total {_text(added)}, above the order's total "
            f"{state.current['total']} {state.currency} (already {done}: {_text(so_far)})",
        )
    return added


def apply_event(state: OrderState, record_hash: str, record: Mapping[str, Any]) -> OrderState:
    """The state after one more event of the order's history, or ChainRefusal.

    ``record`` is an event record as hashed (``event_record``). The head is
    checked first: an event names the history's latest record as its prev.
    """
    order = record["order"]
    if (order["buyer_ruc"], order["order_number"]) != (state.buyer_ruc, state.order_number):
        raise ChainRefusal(
            "invalid",
            f"the event is of order {order['order_number']} of buyer {order['buyer_ruc']}, "
            f"not {state.order_number} of {state.buyer_ruc}",
        )
    if record["prev"] != state.head:
        raise ChainRefusal(
            "conflict",
            f"prev {record['prev']} is not the head of order {state.order_number} of buyer "
            f"{state.buyer_ruc}: its head is {state.head} (fetch the order, then append "
            "to its head)",
        )
    if state.cancelled:
        raise ChainRefusal(
            "conflict",
            f"order {state.order_number} of buyer {state.buyer_ruc} is cancelled: "
            "nothing may follow its cancellation",
        )
    event = record["event"]
    kind = event["type"]
    occurred = datetime.fromisoformat(event["occurred_at"])
    if occurred < state.issued_at:
        raise ChainRefusal(
            "invalid",
            f"occurred_at {event['occurred_at']} is before the order was issued "
            f"({state.issued['issued_at']})",
        )

    def following(**changes: Any) -> OrderState:
        # One copy of the state per event (dataclasses.replace is not cheap).
        return replace(state, head=record_hash, seq=state.seq + 1, **changes)

    if kind == "accepted":
        return following(accepted=True)
    if kind == "amended":
        amended = event["purchase_order"]
        if (amended["buyer"]["ruc"], amended["order_number"]) != (
            state.buyer_ruc,
            state.order_number,
        ):
            raise ChainRefusal(
                "invalid",
                "an amendment keeps the order's buyer and number: "
                f"{amended['order_number']} of buyer {amended['buyer']['ruc']} is another order",
            )
        new_total = Decimal(amended["total"])
        committed = max(state.invoiced, state.paid)
        if new_total < committed:
            raise ChainRefusal(
                "invalid",
                f"the amended total {amended['total']} is below what is already invoiced or "
                f"paid ({_text(committed)})",
            )
        if amended["currency"] != state.currency and committed:
            raise ChainRefusal(
                "invalid", "an amendment cannot change the currency once invoiced or paid"
            )
        return following(current=amended)
    if kind == "delivered":
        return following(delivered=True)
    if kind == "invoiced":
        return following(
            invoiced=_within_total(state, state.invoiced, event["invoice"], "invoiced")
        )
    if kind == "paid":
        return following(paid=_within_total(state, state.paid, event["payment"], "paid"))
    if kind == "cancelled":
        return following(cancelled=True)
    if kind == "status":
        return following(last_status=event["status"], last_status_at=occurred)
    if kind == "document":
        return following()
    raise ChainRefusal("invalid", f"unknown event type {kind!r}")


# --- The schema's entry in the registry ---------------------------------------------------


def event_columns(record: Mapping[str, Any]) -> RecordColumns:
    order = record["order"]
    prev = record["prev"]
    if not isinstance(prev, str) or not isinstance(record["event"]["type"], str):
        raise TypeError("prev and event.type must be strings")
    return RecordColumns(
        buyer_ruc=order["buyer_ruc"],
        order_number=order["order_number"],
        prev_hash=prev,
        # A chained record's identity is its prev (app.records.registry.ChainRule).
        identity=prev,
    )


def event_documents(record: Mapping[str, Any]) -> list[str]:
    event = record["event"]
    if event["type"] == "document":
        return [event["document"]["sha256"]]
    return [d["sha256"] for d in event.get("documents", ()) if "sha256" in d]


def _describe(columns: RecordColumns) -> str:
    return (
        f"the event after {columns.prev_hash} of order {columns.order_number} "
        f"of buyer {columns.buyer_ruc}"
    )


def _root_identity(columns: RecordColumns) -> str:
    assert columns.buyer_ruc is not None and columns.order_number is not None  # noqa: S101
    return order_identity(columns.buyer_ruc, columns.order_number)


SCHEMA: Final = register(
    RecordSchema(
        name=ORDER_EVENT_SCHEMA,
        noun="order event",
        plural="events",
        parse=validate_event,
        columns=event_columns,
        describe=_describe,
        whole="(event)",
        chain=ChainRule(
            root_schema=PURCHASE_ORDER_SCHEMA,
            root_identity=_root_identity,
            start=start_order,
            fold=apply_event,
            position=lambda state: state.seq,
            chain_columns=("buyer_ruc", "order_number"),
        ),
        documents=event_documents,
    )
)
