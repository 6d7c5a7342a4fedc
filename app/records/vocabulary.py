"""The field vocabulary every record schema shares (DESIGN §2, §4).

A record is untrusted input that ends up hashed into the ledger, so the rules
here are about the *bytes* that will be hashed as much as about procurement:

* Money and quantities stay the decimal strings the agency sent. The record
  hash is taken over them (RFC 8785, DESIGN §2), so no float ever reaches the
  hash and ``"10"`` is never silently rewritten as ``"10.00"``; values are
  compared with :class:`decimal.Decimal` only.
* JSON numbers and booleans are refused wherever a string is expected, with a
  message that says what to send instead.
* Text is never rewritten (no stripping, no case change): a value that would
  need rewriting is rejected, so the record Ancla hashes is what the agency
  sent, plus defaults.
* Unknown members are refused at every level (``STRICT``): a typo must not be
  hashed into the ledger as if it were data.

Each ``*_field`` function is a pydantic ``BeforeValidator`` with a message of
our own; the ``Annotated`` types bind them to the JSON Schema they document.
Schemas (``app.records.purchase_order``, ...) build their models from these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Context, Decimal
from functools import lru_cache
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# --- RUC (Registro Único de Contribuyentes, SUNAT) ----------------------------

# 10: natural person with business; 15: non-domiciled/other natural persons;
# 17: entities registered before the current scheme; 20: legal entities
# (every public agency). DESIGN §4 names these four.
RUC_PREFIXES: Final = ("10", "15", "17", "20")
# SUNAT's modulo-11 weights over the first ten digits.
_RUC_WEIGHTS: Final = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
# [0-9], not \d: \d also matches Arabic-Indic and other Unicode digits.
_RUC_BODY_RE: Final = re.compile(r"[0-9]{10}")
RUC_RE: Final = re.compile(r"[0-9]{11}")


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
    if not RUC_RE.fullmatch(ruc):
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
# (tests/vectors/ocds/codelist-currency.csv, a copy of 1.1.5's; rows without "Valid
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
CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")

# --- Decimal strings ------------------------------------------------------------

# Amounts: up to 15 integer digits (a trillion soles leaves room) and céntimos.
MONEY_RE: Final = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,2})?")
# Catalogue unit prices are quoted with up to 6 decimals (fractions of a céntimo
# per sheet, per gram); only the order's amounts are rounded to céntimos.
UNIT_PRICE_RE: Final = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,6})?")
QUANTITY_RE: Final = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?")
# Enough precision that quantity × unit price summed over 1000 items is exact
# (12+6 and 15+6 digits per factor, 3 more for the sum); only the final
# quantize rounds.
EXACT: Final = Context(prec=80)
CENTS: Final = Decimal("0.01")

# --- Text -----------------------------------------------------------------------

# C0 controls, DEL and C1 controls (C1 usually means Latin-1 text decoded with
# the wrong codec), and unpaired surrogates, which cannot be encoded as UTF-8
# and so could not be hashed.
_CONTROL_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_FORBIDDEN_CHARACTER_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
NAME_MAX: Final = 500
DESCRIPTION_MAX: Final = 2000
CODE_MAX: Final = 100  # units, classification schemes and ids
STATUS_MAX: Final = 64
URL_MAX: Final = 2048

ORDER_NUMBER_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
ORDER_NUMBER_MAX: Final = 64
SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")

# Bounds on list sizes, checked before the elements are validated so an
# oversized order is refused without validating a million items first.
DOCUMENTS_MAX: Final = 50


def json_kind(value: object) -> str:
    """How ``value`` looks in JSON, for messages such as "..., not a number".

    The one wording of JSON kinds for every message Ancla writes (orders,
    events, imports of JSON lines and OCDS).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def require_str(value: object, expected: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {expected}, not {json_kind(value)}")
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


def bounded_text(max_length: int) -> Callable[[object], str]:
    def validate(value: object) -> str:
        text = require_str(value, "a string")
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


def decimal_string(
    pattern: re.Pattern[str], *, shape: str, example: str, positive: bool = False
) -> Callable[[object], str]:
    def validate(value: object) -> str:
        text = require_str(value, f'a decimal string such as "{example}"')
        if not pattern.fullmatch(text):
            raise ValueError(f'must be {shape}, such as "{example}"')
        if positive and Decimal(text) == 0:
            raise ValueError("must be greater than zero")
        return text

    return validate


def ruc_field(value: object) -> str:
    return check_ruc(require_str(value, 'a string of 11 digits such as "20600027426"'))


def order_number_field(value: object) -> str:
    number = require_str(value, 'a string such as "OCAM-2026-1556-7-0"')
    if not 1 <= len(number) <= ORDER_NUMBER_MAX:
        raise ValueError(f"must be 1 to {ORDER_NUMBER_MAX} characters, not {len(number)}")
    if not ORDER_NUMBER_RE.fullmatch(number):
        raise ValueError(
            "must start with a letter or digit and hold only letters, digits and . _ / -"
        )
    return number


def datetime_field(value: object) -> str:
    # Kept as the string sent (it is what gets hashed); parsed only to check it.
    text = require_str(value, 'an ISO 8601 string such as "2026-01-31T09:57:50-05:00"')
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


def currency_field(value: object) -> str:
    code = require_str(value, 'an ISO 4217 code such as "PEN"')
    if not CURRENCY_RE.fullmatch(code):
        raise ValueError('must be an ISO 4217 code of three capital letters, such as "PEN"')
    return known_currency(code)


def known_currency(code: str) -> str:
    if code not in CURRENCY_CODES:
        raise ValueError(f"unknown currency code {code} (ISO 4217, as in OCDS 1.1)")
    return code


_status_text = bounded_text(STATUS_MAX)


def status_field(value: object) -> str:
    return capitals(_status_text(value))


def capitals(status: str) -> str:
    # Perú Compras writes states in capitals ("ACEPTADA", "ENTREGADA", ...).
    # The set of states grows, so any capitalised value is accepted; only the
    # case is enforced, so one state cannot be recorded under two spellings.
    if status != status.upper():
        raise ValueError('must be in capitals, such as "ACEPTADA"')
    return status


_url_text = bounded_text(URL_MAX)


def url_field(value: object) -> str:
    return url_parts(_url_text(value))


def url_parts(url: str) -> str:
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


def sha256_field(value: object) -> str:
    digest = require_str(value, "a string of 64 lowercase hex digits")
    if not SHA256_RE.fullmatch(digest):
        raise ValueError("must be a SHA-256 digest as 64 lowercase hex digits")
    return digest


def bounded_list(name: str, low: int, high: int) -> Callable[[object], object]:
    def validate(value: object) -> object:
        # Anything but a list is left to pydantic's own type error.
        if isinstance(value, list) and not low <= len(value) <= high:
            hint = "; leave it out when there are none" if low and not value else ""
            raise ValueError(f"must hold {low} to {high} {name}, not {len(value)}{hint}")
        return value

    return validate


def documented(pattern: str | None = None, **extra: Any) -> Any:
    # Validation is done by our functions above (for our messages); this only
    # documents the same rules in the JSON Schema / OpenAPI.
    if pattern is not None:
        extra["pattern"] = f"^{pattern}$"
    return Field(json_schema_extra=extra)


Ruc = Annotated[
    str,
    BeforeValidator(ruc_field),
    documented(r"(10|15|17|20)[0-9]{9}", description="RUC: 11 digits, SUNAT check digit"),
]
OrderNumber = Annotated[
    str,
    BeforeValidator(order_number_field),
    documented(ORDER_NUMBER_RE.pattern, maxLength=ORDER_NUMBER_MAX),
]
money_field = decimal_string(
    MONEY_RE,
    shape="a non-negative amount with at most 15 digits and 2 decimals",
    example="1250.00",
)
unit_price_field = decimal_string(
    UNIT_PRICE_RE,
    shape="a non-negative amount with at most 15 digits and 6 decimals",
    example="25.50",
)
quantity_field = decimal_string(
    QUANTITY_RE,
    shape="a positive quantity with at most 12 digits and 6 decimals",
    example="10",
    positive=True,
)
Money = Annotated[
    str,
    BeforeValidator(money_field),
    documented(MONEY_RE.pattern, description="decimal string, never a JSON number"),
]
UnitPrice = Annotated[
    str,
    BeforeValidator(unit_price_field),
    documented(UNIT_PRICE_RE.pattern, description="decimal string, never a JSON number"),
]
Quantity = Annotated[
    str,
    BeforeValidator(quantity_field),
    documented(QUANTITY_RE.pattern, description="decimal string greater than zero"),
]
Name = Annotated[
    str, BeforeValidator(bounded_text(NAME_MAX)), documented(minLength=1, maxLength=NAME_MAX)
]
Description = Annotated[
    str,
    BeforeValidator(bounded_text(DESCRIPTION_MAX)),
    documented(minLength=1, maxLength=DESCRIPTION_MAX),
]
Code = Annotated[
    str, BeforeValidator(bounded_text(CODE_MAX)), documented(minLength=1, maxLength=CODE_MAX)
]
DateTimeWithOffset = Annotated[
    str,
    BeforeValidator(datetime_field),
    documented(format="date-time", description="ISO 8601 with a UTC offset"),
]
Currency = Annotated[str, BeforeValidator(currency_field), documented("[A-Z]{3}")]
Status = Annotated[
    str, BeforeValidator(status_field), documented(minLength=1, maxLength=STATUS_MAX)
]
# No "format": "uri": real links hold unescaped spaces, which that format forbids.
Url = Annotated[
    str,
    BeforeValidator(url_field),
    documented(description="http or https URL, stored as sent", maxLength=URL_MAX),
]
Sha256 = Annotated[str, BeforeValidator(sha256_field), documented(SHA256_RE.pattern)]

STRICT: Final = ConfigDict(extra="forbid", strict=True, frozen=True)


class Party(BaseModel):
    """A buyer (the agency) or a supplier, by RUC."""

    model_config = STRICT

    ruc: Ruc
    name: Name


class Document(BaseModel):
    """A document of the order; ``sha256`` pins its content when the agency has it."""

    model_config = STRICT

    title: Name
    url: Url
    sha256: Sha256 | None = None
