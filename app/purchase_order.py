"""The purchase order an agency POSTs (DESIGN §4), parsed once and strictly.

An order is untrusted input that ends up hashed into the ledger, so the rules
here are about the *bytes* that will be hashed as much as about procurement:

* Money and quantities stay the decimal strings the agency sent. The record
  hash is taken over them (RFC 8785, DESIGN §2), so no float ever reaches the
  hash and ``"10"`` is never silently rewritten as ``"10.00"``; values are
  compared with :class:`decimal.Decimal` only.
* JSON numbers and booleans are refused wherever a string is expected, with a
  message that says what to send instead.
* Text is never rewritten (no stripping, no case change): a value that would
  need rewriting is rejected, so the record Ancla hashes is the order the
  agency sent, plus defaults.
* Unknown members are refused at every level: a typo must not be hashed into
  the ledger as if it were data.

Error locations are pydantic's (``buyer.ruc``, ``items.2.quantity``); every
message is ours. Checks that tie several fields together (totals, buyer vs.
supplier) run once every field is valid and are reported on the order itself,
with a message naming the fields involved.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache
from typing import Annotated, Any, Final, NotRequired, Self, cast
from urllib.parse import urlsplit

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

# --- RUC (Registro Único de Contribuyentes, SUNAT) ----------------------------

# 10: natural person with business; 15: non-domiciled/other natural persons;
# 17: entities registered before the current scheme; 20: legal entities
# (every public agency). DESIGN §4 names these four.
RUC_PREFIXES: Final = ("10", "15", "17", "20")
# SUNAT's modulo-11 weights over the first ten digits.
_RUC_WEIGHTS: Final = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
# [0-9], not \d: \d also matches Arabic-Indic and other Unicode digits.
_RUC_BODY_RE: Final = re.compile(r"[0-9]{10}")
_RUC_RE: Final = re.compile(r"[0-9]{11}")


def ruc_check_digit(body: str) -> str:
    """The check digit SUNAT appends to the first ten digits of a RUC."""
    if not _RUC_BODY_RE.fullmatch(body):
        raise ValueError("a RUC body must be 10 digits")
    remainder = 11 - sum(int(d) * w for d, w in zip(body, _RUC_WEIGHTS, strict=True)) % 11
    # remainder is 1..11; SUNAT writes 10 as 0 and 11 as 1, i.e. its last digit.
    return str(remainder % 10)


@lru_cache(maxsize=65_536)
def check_ruc(ruc: str) -> str:
    """Return ``ruc`` if it is a well-formed RUC; raise ValueError saying why not.

    Cached: an agency's orders repeat its RUC and their suppliers' (a RUC's
    validity never changes); failures are not cached, so they cost as before.
    """
    if not _RUC_RE.fullmatch(ruc):
        raise ValueError("must be 11 digits")
    if ruc[:2] not in RUC_PREFIXES:
        raise ValueError(f"must start with 10, 15, 17 or 20, not {ruc[:2]}")
    expected = ruc_check_digit(ruc[:10])
    if ruc[10] != expected:
        raise ValueError(f"check digit is {ruc[10]}, expected {expected}")
    return ruc


def ruc_is_valid(ruc: str) -> bool:
    """Whether ``ruc`` passes :func:`check_ruc`."""
    try:
        check_ruc(ruc)
    except ValueError:
        return False
    return True


# --- Currency -----------------------------------------------------------------

# The ISO 4217 codes of OCDS 1.1.5's closed `currency` codelist
# (shared/data/ocds/schema-1.1.5/codelist-currency.csv, rows without "Valid
# Until"), because open data out is OCDS 1.1 and an order in a currency OCDS
# rejects could not be published. XTS (reserved for testing) and XXX (no
# currency) are left out: neither can price a purchase.
CURRENCY_CODES: Final = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV
    BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE
    CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD
    HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD
    KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
    MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD
    RUB RWF SAR SBD SCR SDG SEK SGD SHP SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VES VND VUV WST XAF XAG
    XAU XBA XBB XBC XBD XCD XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWL
    """.split()
)
_CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")

# --- Decimal strings ------------------------------------------------------------

# Amounts: up to 15 integer digits (a trillion soles leaves room) and céntimos.
_MONEY_RE: Final = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,2})?")
# Catalogue unit prices are quoted with up to 6 decimals (fractions of a céntimo
# per sheet, per gram); only the order's amounts are rounded to céntimos.
_UNIT_PRICE_RE: Final = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,6})?")
_QUANTITY_RE: Final = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?")
# Enough precision that quantity × unit price summed over 1000 items is exact
# (12+6 and 15+6 digits per factor, 3 more for the sum); only the final
# quantize rounds.
_EXACT: Final = Context(prec=80)
_CENTS: Final = Decimal("0.01")

# --- Text -----------------------------------------------------------------------

# C0 controls, DEL and C1 controls (C1 usually means Latin-1 text decoded with
# the wrong codec), and unpaired surrogates, which cannot be encoded as UTF-8
# and so could not be hashed.
_CONTROL_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_FORBIDDEN_CHARACTER_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NAME_MAX: Final = 500
_DESCRIPTION_MAX: Final = 2000
_CODE_MAX: Final = 100  # units, classification schemes and ids
_STATUS_MAX: Final = 64
_URL_MAX: Final = 2048

_ORDER_NUMBER_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_ORDER_NUMBER_MAX: Final = 64
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")

# Bounds on list sizes, checked before the elements are validated so an
# oversized order is refused without validating a million items first.
_ITEMS_MAX: Final = 1000
_DOCUMENTS_MAX: Final = 50


def _json_kind(value: object) -> str:
    """How ``value`` looks in JSON, for messages such as "..., not a number"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _require_str(value: object, expected: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {expected}, not {_json_kind(value)}")
    return value


def _check_characters(value: str) -> None:
    # One search for the common case (nothing wrong), then which rule it broke.
    if _FORBIDDEN_CHARACTER_RE.search(value) is None:
        return
    for pattern, what in ((_CONTROL_RE, "control characters"), (_SURROGATE_RE, "lone surrogates")):
        found = pattern.search(value)
        if found is not None:
            char = found.group()
            raise ValueError(
                f"must not contain {what} (found U+{ord(char):04X} at position {found.start()})"
            )


def _text(max_length: int) -> Callable[[object], str]:
    def validate(value: object) -> str:
        text = _require_str(value, "a string")
        if not text.strip():
            raise ValueError("must not be empty")
        _check_characters(text)
        if text != text.strip():
            # Rejected rather than stripped: stripping would hash something
            # other than what the agency sent.
            raise ValueError("must not start or end with whitespace")
        if len(text) > max_length:
            raise ValueError(f"must be at most {max_length} characters, not {len(text)}")
        return text

    return validate


def _decimal_string(
    pattern: re.Pattern[str], *, shape: str, example: str, positive: bool = False
) -> Callable[[object], str]:
    def validate(value: object) -> str:
        text = _require_str(value, f'a decimal string such as "{example}"')
        if not pattern.fullmatch(text):
            raise ValueError(f'must be {shape}, such as "{example}"')
        if positive and Decimal(text) == 0:
            raise ValueError("must be greater than zero")
        return text

    return validate


def _ruc(value: object) -> str:
    return check_ruc(_require_str(value, 'a string of 11 digits such as "20600027426"'))


def _order_number(value: object) -> str:
    number = _require_str(value, 'a string such as "OCAM-2026-1556-7-0"')
    if not 1 <= len(number) <= _ORDER_NUMBER_MAX:
        raise ValueError(f"must be 1 to {_ORDER_NUMBER_MAX} characters, not {len(number)}")
    if not _ORDER_NUMBER_RE.fullmatch(number):
        raise ValueError(
            "must start with a letter or digit and hold only letters, digits and . _ / -"
        )
    return number


def _issued_at(value: object) -> str:
    # Kept as the string sent (it is what gets hashed); parsed only to check it.
    text = _require_str(value, 'an ISO 8601 string such as "2026-01-31T09:57:50-05:00"')
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            'must be an ISO 8601 date and time such as "2026-01-31T09:57:50-05:00"'
        ) from None
    if moment.utcoffset() is None:
        # A naive time is ambiguous by hours; Peru is UTC-05:00 all year.
        raise ValueError("must include a UTC offset, e.g. -05:00 for Peru")
    return text


def _currency(value: object) -> str:
    code = _require_str(value, 'an ISO 4217 code such as "PEN"')
    if not _CURRENCY_RE.fullmatch(code):
        raise ValueError('must be an ISO 4217 code of three capital letters, such as "PEN"')
    return _known_currency(code)


def _known_currency(code: str) -> str:
    if code not in CURRENCY_CODES:
        raise ValueError(f"unknown currency code {code} (ISO 4217, as in OCDS 1.1)")
    return code


_status_text = _text(_STATUS_MAX)


def _status(value: object) -> str:
    return _capitals(_status_text(value))


def _capitals(status: str) -> str:
    # Perú Compras writes states in capitals ("ACEPTADA", "ENTREGADA", ...).
    # The set of states grows, so any capitalised value is accepted; only the
    # case is enforced, so one state cannot be recorded under two spellings.
    if status != status.upper():
        raise ValueError('must be in capitals, such as "ACEPTADA"')
    return status


_url_text = _text(_URL_MAX)


def _url(value: object) -> str:
    return _url_parts(_url_text(value))


def _url_parts(url: str) -> str:
    # Stored as sent, not normalised. Spaces inside are allowed: Perú Compras
    # publishes links to files whose names hold spaces, unescaped.
    message = 'must be an http or https URL such as "https://example.gob.pe/oc.pdf"'
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(message) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValueError(message)
    return url


def _sha256(value: object) -> str:
    digest = _require_str(value, "a string of 64 lowercase hex digits")
    if not _SHA256_RE.fullmatch(digest):
        raise ValueError("must be a SHA-256 digest as 64 lowercase hex digits")
    return digest


def _bounded_list(name: str, low: int, high: int) -> Callable[[object], object]:
    def validate(value: object) -> object:
        # Anything but a list is left to pydantic's own type error.
        if isinstance(value, list) and not low <= len(value) <= high:
            hint = "; leave it out when there are none" if low and not value else ""
            raise ValueError(f"must hold {low} to {high} {name}, not {len(value)}{hint}")
        return value

    return validate


def _schema(pattern: str | None = None, **extra: Any) -> Any:
    # Validation is done by our functions above (for our messages); this only
    # documents the same rules in the JSON Schema / OpenAPI.
    if pattern is not None:
        extra["pattern"] = f"^{pattern}$"
    return Field(json_schema_extra=extra)


Ruc = Annotated[
    str,
    BeforeValidator(_ruc),
    _schema(r"(10|15|17|20)[0-9]{9}", description="RUC: 11 digits, SUNAT check digit"),
]
OrderNumber = Annotated[
    str,
    BeforeValidator(_order_number),
    _schema(_ORDER_NUMBER_RE.pattern, maxLength=_ORDER_NUMBER_MAX),
]
_money = _decimal_string(
    _MONEY_RE,
    shape="a non-negative amount with at most 15 digits and 2 decimals",
    example="1250.00",
)
_unit_price = _decimal_string(
    _UNIT_PRICE_RE,
    shape="a non-negative amount with at most 15 digits and 6 decimals",
    example="25.50",
)
_quantity = _decimal_string(
    _QUANTITY_RE,
    shape="a positive quantity with at most 12 digits and 6 decimals",
    example="10",
    positive=True,
)
_Money = Annotated[
    str,
    BeforeValidator(_money),
    _schema(_MONEY_RE.pattern, description="decimal string, never a JSON number"),
]
_UnitPrice = Annotated[
    str,
    BeforeValidator(_unit_price),
    _schema(_UNIT_PRICE_RE.pattern, description="decimal string, never a JSON number"),
]
_Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    _schema(_QUANTITY_RE.pattern, description="decimal string greater than zero"),
]
_Name = Annotated[str, BeforeValidator(_text(_NAME_MAX)), _schema(minLength=1, maxLength=_NAME_MAX)]
_Description = Annotated[
    str,
    BeforeValidator(_text(_DESCRIPTION_MAX)),
    _schema(minLength=1, maxLength=_DESCRIPTION_MAX),
]
_Code = Annotated[str, BeforeValidator(_text(_CODE_MAX)), _schema(minLength=1, maxLength=_CODE_MAX)]
_IssuedAt = Annotated[
    str,
    BeforeValidator(_issued_at),
    _schema(format="date-time", description="ISO 8601 with a UTC offset"),
]
_Currency = Annotated[str, BeforeValidator(_currency), _schema("[A-Z]{3}")]
_Status = Annotated[str, BeforeValidator(_status), _schema(minLength=1, maxLength=_STATUS_MAX)]
# No "format": "uri": real links hold unescaped spaces, which that format forbids.
_Url = Annotated[
    str,
    BeforeValidator(_url),
    _schema(description="http or https URL, stored as sent", maxLength=_URL_MAX),
]
_Sha256 = Annotated[str, BeforeValidator(_sha256), _schema(_SHA256_RE.pattern)]

_STRICT: Final = ConfigDict(extra="forbid", strict=True, frozen=True)


class Party(BaseModel):
    """A buyer (the agency) or a supplier, by RUC."""

    model_config = _STRICT

    ruc: Ruc
    name: _Name


class Classification(BaseModel):
    """What an item is in a classification scheme, e.g. UNSPSC ``44121701``."""

    model_config = _STRICT

    scheme: _Code
    id: _Code


class Item(BaseModel):
    """One line of the order; ``quantity × unit_price`` is its amount."""

    model_config = _STRICT

    description: _Description
    quantity: _Quantity
    unit: _Code
    unit_price: _UnitPrice
    classification: Classification | None = None


class Document(BaseModel):
    """A document of the order; ``sha256`` pins its content when the agency has it."""

    model_config = _STRICT

    title: _Name
    url: _Url
    sha256: _Sha256 | None = None


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
        line = _EXACT.multiply(Decimal(quantity), Decimal(unit_price))
        exact = _EXACT.add(exact, line)
    return exact.quantize(_CENTS, rounding=ROUND_HALF_UP, context=_EXACT)


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
    computed_total = _EXACT.add(Decimal(subtotal), Decimal(tax))
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
    issued_at: _IssuedAt
    currency: _Currency = "PEN"
    subtotal: _Money
    tax: _Money
    total: _Money
    framework_agreement: _Name | None = None
    procurement_method: _Name | None = None
    status: _Status | None = None
    items: Annotated[list[Item] | None, BeforeValidator(_bounded_list("items", 1, _ITEMS_MAX))] = (
        None
    )
    documents: Annotated[
        list[Document] | None, BeforeValidator(_bounded_list("documents", 0, _DOCUMENTS_MAX))
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

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Parse a record made by :meth:`to_record`, e.g. one fetched by hash.

        Raises ValueError (pydantic's ValidationError is one) unless ``record``
        is exactly ``{"schema": "ancla/purchase-order/1", "purchase_order":
        {...}}`` with a valid order in the form :meth:`to_record` writes: a
        record in any other form would not hash to what Ancla recorded.
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"a record must be a JSON object, not {_json_kind(record)}")
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
# Not empty, no control characters, no whitespace first or last: _text's rules.
_TEXT_PATTERN: Final = f"^[^{_EDGE}](?:[^{_CONTROLS}]*[^{_EDGE}])?$"
_FAST: Final = ConfigDict(extra="forbid", strict=True)


def _whole(pattern: re.Pattern[str]) -> str:
    return f"^(?:{pattern.pattern})$"


_FastName = Annotated[str, StringConstraints(max_length=_NAME_MAX, pattern=_TEXT_PATTERN)]
_FastDescription = Annotated[
    str, StringConstraints(max_length=_DESCRIPTION_MAX, pattern=_TEXT_PATTERN)
]
_FastCode = Annotated[str, StringConstraints(max_length=_CODE_MAX, pattern=_TEXT_PATTERN)]
_FastRuc = Annotated[str, StringConstraints(pattern=_whole(_RUC_RE))]
_FastMoney = Annotated[str, StringConstraints(pattern=_whole(_MONEY_RE))]


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
    quantity: Annotated[str, StringConstraints(pattern=_whole(_QUANTITY_RE))]
    unit: _FastCode
    unit_price: Annotated[str, StringConstraints(pattern=_whole(_UNIT_PRICE_RE))]
    classification: NotRequired[_FastClassification]


@with_config(_FAST)
class _FastDocument(TypedDict):
    title: _FastName
    url: Annotated[str, StringConstraints(max_length=_URL_MAX, pattern=_TEXT_PATTERN)]
    sha256: NotRequired[Annotated[str, StringConstraints(pattern=_whole(_SHA256_RE))]]


@with_config(_FAST)
class _FastOrder(TypedDict):
    order_number: Annotated[
        str, StringConstraints(max_length=_ORDER_NUMBER_MAX, pattern=_whole(_ORDER_NUMBER_RE))
    ]
    buyer: _FastParty
    supplier: _FastParty
    issued_at: str
    currency: NotRequired[Annotated[str, StringConstraints(pattern=_whole(_CURRENCY_RE))]]
    subtotal: _FastMoney
    tax: _FastMoney
    total: _FastMoney
    framework_agreement: NotRequired[_FastName]
    procurement_method: NotRequired[_FastName]
    status: NotRequired[
        Annotated[str, StringConstraints(max_length=_STATUS_MAX, pattern=_TEXT_PATTERN)]
    ]
    items: NotRequired[Annotated[list[_FastItem], Field(min_length=1, max_length=_ITEMS_MAX)]]
    documents: NotRequired[
        Annotated[list[_FastDocument], Field(min_length=0, max_length=_DOCUMENTS_MAX)]
    ]


_FAST_ORDER: Final = TypeAdapter(_FastOrder)
# A URL that _url_parts accepts without parsing it: lowercase http or https, a
# host of letters, digits, dots and hyphens (no user, port or IPv6 literal),
# then a path, query or fragment, which _url_parts does not look into.
# urlsplit with its host and port properties cost 3.5 us per document.
_PLAIN_URL: Final = re.compile(r"https?://[A-Za-z0-9.-]+(?:[/?#].*)?", re.DOTALL)


def _fast_order(data: object) -> dict[str, Any] | None:
    """``data`` as recorded if the fast path accepts it; None to let PurchaseOrder decide."""
    try:
        order = cast(dict[str, Any], _FAST_ORDER.validate_python(data))
        # The TypedDicts' patterns and lengths hold _text's rules and the
        # codes' shapes: only what no pattern says is checked below.
        _ruc(order["buyer"]["ruc"])
        _ruc(order["supplier"]["ruc"])
        _issued_at(order["issued_at"])
        _known_currency(order.setdefault("currency", "PEN"))
        if "status" in order:
            _capitals(order["status"])
        for document in order.get("documents", ()):
            if not _PLAIN_URL.fullmatch(document["url"]):
                _url_parts(document["url"])
        items = order.get("items")
        if items is not None:
            for item in items:
                _quantity(item["quantity"])
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
