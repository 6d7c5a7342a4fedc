"""Auditors' checks of a service they do not trust (``ancla verify-order``,
``ancla verify-document``, ``ancla verify-receipt --hash``; DESIGN §5).

An auditor's code path: the service is asked over HTTP (httpx) what it holds,
and nothing it says is believed. Every record's bytes are hashed again, every
link and rule of an order's history is checked again with the same pure rules
the service applies (:mod:`app.records`), and every receipt is verified
against the chain alone (:func:`ledger.verify_receipt`). No database, no
settings, no service code.

Three outcomes, the verification commands' exit codes:

* a report whose ``valid`` is true (0);
* a report that is not (1): each record that fails names its step, with what
  was expected and what was found; or :class:`InvalidAnswer`, when the service
  has no such order, record or receipt, or answers about another one (1);
* :class:`CannotCheck` (2): bad arguments, or the service could not be asked
  or answered with something that is not an answer; and
  :class:`ledger.errors.ChainError` when the chain could not be asked (2).

What the chain cannot prove: that the service listed *every* record. Each
record listed is proven recorded, unchanged and anchored, and linked to the
one before it; a later record the service leaves out is not seen.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from app.records.order_event import (
    ORDER_EVENT_SCHEMA,
    OrderState,
    apply_event,
    parse_event,
    start_order,
)
from app.records.purchase_order import PURCHASE_ORDER_SCHEMA, validate_order
from app.records.registry import ChainRefusal, schema_named
from app.records.vocabulary import order_number_field, ruc_field
from ledger.canonical import canonical_bytes, hash_canonical, parse_record
from ledger.errors import CanonicalError, ReceiptFormatError, VerificationError
from ledger.hashing import from_hex32
from ledger.receipt import Receipt
from ledger.verify import StepResult, verify_receipt

__all__ = [
    "CHUNK_SIZE",
    "CONTENT_STEPS",
    "CannotCheck",
    "DocumentListing",
    "DocumentReport",
    "InvalidAnswer",
    "ListedRecord",
    "OrderListing",
    "OrderReport",
    "RecordCheck",
    "Service",
    "check_buyer_ruc",
    "check_order_number",
    "check_url",
    "file_sha256",
    "verify_document",
    "verify_order",
]


class CannotCheck(Exception):
    """Could not check (exit 2): bad arguments, the service unreachable or answering garbage."""


class InvalidAnswer(Exception):
    """The service has no such order, record or receipt, or answered about another one:
    what it claims cannot be backed (invalid, exit 1)."""


# -- arguments ---------------------------------------------------------------------------


def check_url(value: str, *, what: str) -> str:
    """An http(s) URL with a host, or CannotCheck naming the option."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise CannotCheck(f"{what} must be an http:// or https:// URL, not {value!r}")
    return value


def check_buyer_ruc(value: str) -> str:
    try:
        return ruc_field(value)
    except ValueError as exc:
        raise CannotCheck(f"BUYER_RUC {value!r} is not a RUC: {exc}") from None


def check_order_number(value: str) -> str:
    try:
        return order_number_field(value)
    except ValueError as exc:
        raise CannotCheck(f"ORDER_NUMBER {value!r} is not an order number: {exc}") from None


# -- files -------------------------------------------------------------------------------

# Hashing reads at most this much at a time: a 2 GB recording never sits in memory.
CHUNK_SIZE: Final = 1 << 20


def file_sha256(
    path: Path, *, chunk_size: int = CHUNK_SIZE, progress: Callable[[int], None] | None = None
) -> tuple[str, int]:
    """(SHA-256 of the file's bytes as 64 lowercase hex digits, its size), streamed through
    one reused buffer of ``chunk_size`` bytes; ``progress`` gets each chunk's length.
    Raises OSError if the file cannot be read."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    size = 0
    with path.open("rb") as handle:
        while read := handle.readinto(buffer):
            digest.update(view[:read])
            size += read
            if progress is not None:
                progress(read)
    return digest.hexdigest(), size


# -- the service -------------------------------------------------------------------------


def _hash_member(value: object) -> str:
    from_hex32(value, what="a hash")
    return str(value)


_Hash = Annotated[str, BeforeValidator(_hash_member)]


class ListedRecord(BaseModel):
    """One record as a service lists it (an order's history, a file's records)."""

    model_config = ConfigDict(extra="ignore")

    hash: _Hash
    seq: int | None = None
    type: str | None = None


class OrderListing(BaseModel):
    """What the service says an order's history is (GET /v1/purchase-orders/{buyer}/{number})."""

    model_config = ConfigDict(extra="ignore")

    head: _Hash
    history: list[ListedRecord] = Field(min_length=1)


class DocumentListing(BaseModel):
    """What the service says binds a file (GET /v1/documents/{sha256})."""

    model_config = ConfigDict(extra="ignore")

    sha256: str
    records: list[ListedRecord]


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "the answer"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


_M = TypeVar("_M", bound=BaseModel)


class Service:
    """An Ancla service, asked over HTTP; its answers are data to check, never verdicts."""

    def __init__(
        self, api: str, *, timeout: float = 10.0, http: httpx.Client | None = None
    ) -> None:
        self.base = check_url(api, what="--api").rstrip("/")
        # ``http``: another client (a test's transport); closed with this one.
        self._http = http or httpx.Client(timeout=timeout)

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, missing: str | None) -> bytes:
        """The body of a 200 answer; InvalidAnswer(``missing``) for a 404, if given."""
        url = f"{self.base}{path}"
        try:
            response = self._http.get(url)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise CannotCheck(f"cannot fetch {url}: {exc}") from None
        if response.status_code == 404 and missing is not None:
            raise InvalidAnswer(missing)
        if response.status_code != 200:
            raise CannotCheck(f"{url} answered HTTP {response.status_code}")
        return response.content

    def _model(self, model: type[_M], path: str, missing: str | None, what: str) -> _M:
        body = self._get(path, missing)
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise CannotCheck(
                f"{self.base}{path} answered with something that is not {what} "
                f"({_first_error(exc)})"
            ) from None

    def receipt(self, record_hash: str) -> Receipt:
        """The receipt the service has for ``record_hash`` (not yet verified)."""
        body = self._get(
            f"/v1/receipts/{record_hash}", f"the service has no receipt for {record_hash}"
        )
        try:
            receipt = Receipt.from_json(body)
        except ReceiptFormatError as exc:
            raise CannotCheck(str(exc)) from None
        if receipt.hash != record_hash:
            raise InvalidAnswer(
                f"the service returned a receipt for {receipt.hash}, not {record_hash}"
            )
        return receipt

    def record_bytes(self, record_hash: str) -> bytes:
        """The bytes the service serves as the record ``record_hash`` (not yet checked)."""
        return self._get(
            f"/v1/records/{record_hash}",
            f"the service lists the record but has no record {record_hash}",
        )

    def order(self, buyer_ruc: str, order_number: str) -> OrderListing:
        return self._model(
            OrderListing,
            f"/v1/purchase-orders/{buyer_ruc}/{order_number}",
            f"the service has no such order: no purchase order {order_number} of buyer {buyer_ruc}",
            "an order's view with its history",
        )

    def documents(self, sha256: str) -> DocumentListing:
        return self._model(
            DocumentListing,
            f"/v1/documents/{sha256}",
            None,
            "a list of the records that bind a file",
        )


# -- one record's checks -----------------------------------------------------------------

# The steps about a record's content; the others (receipt, leaf, proof, anchor.*) are
# about its anchoring.
CONTENT_STEPS: Final = ("record", "schema", "order", "prev", "rules", "binds")


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


@dataclass
class RecordCheck:
    """Every check run on one record, in order, up to the first that failed."""

    hash: str
    type: str | None
    seq: int | None = None
    # Where the record belongs (verify-document: its order), once its bytes are checked.
    order: dict[str, Any] | None = None
    steps: list[StepResult] = field(default_factory=list)
    failure: VerificationError | None = None

    def passed(self, step: str, detail: str, expected: Any = None, actual: Any = None) -> None:
        self.steps.append(StepResult(step, True, detail, _plain(expected), _plain(actual)))

    def fail(self, exc: VerificationError) -> None:
        self.failure = exc
        if not self.steps or self.steps[-1].ok or self.steps[-1].step != exc.step:
            self.steps.append(
                StepResult(exc.step, False, exc.message, _plain(exc.expected), _plain(exc.actual))
            )

    @property
    def valid(self) -> bool:
        return self.failure is None and all(step.ok for step in self.steps)

    @property
    def failed_step(self) -> str | None:
        return None if self.failure is None else self.failure.step

    @property
    def error(self) -> str | None:
        return None if self.failure is None else str(self.failure)

    @property
    def name(self) -> str:
        """How messages name the record: ``record 2 (delivered) 0x…``."""
        seq = "" if self.seq is None else f" {self.seq}"
        kind = f" ({self.type})" if self.type else ""
        return f"record{seq}{kind} {self.hash}"

    @property
    def content_failed(self) -> bool:
        """Whether its content is not trusted (anything but its receipt failed)."""
        return self.failed_step in CONTENT_STEPS

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.seq is not None:
            data["seq"] = self.seq
        data |= {"hash": self.hash, "type": self.type}
        if self.order is not None:
            data["order"] = self.order
        return data | {
            "valid": self.valid,
            "failed_step": self.failed_step,
            "error": self.error,
            "steps": [step.to_dict() for step in self.steps],
        }


def _check_bytes(check: RecordCheck, service: Service, record_hash: str) -> dict[str, Any]:
    """Step ``record``: the bytes served hash to the listed hash and are a record in its
    RFC 8785 form (then keccak256(JCS(record)) is the hash, as receipts are checked)."""
    try:
        raw = service.record_bytes(record_hash)
    except InvalidAnswer as exc:
        raise VerificationError(str(exc), step="record") from None
    actual = hash_canonical(raw)
    if actual != record_hash:
        raise VerificationError(
            "the record's bytes the service serves do not hash to its hash: the record was "
            "changed, or is another one",
            step="record",
            expected=record_hash,
            actual=actual,
        )
    try:
        record = parse_record(raw)
        canonical = canonical_bytes(record)
    except CanonicalError as exc:
        raise VerificationError(f"the record is not a JSON record: {exc}", step="record") from None
    if canonical != raw:
        raise VerificationError(
            "the record's bytes are not its RFC 8785 canonical form",
            step="record",
            expected="RFC 8785 bytes",
            actual="other bytes",
        )
    check.passed(
        "record",
        "keccak256 of the record's bytes is its hash; the bytes are its RFC 8785 form",
        record_hash,
        actual,
    )
    return record


def _as_sent(record: Mapping[str, Any]) -> Any:
    """What a client would have sent for this record (for the schema's own validation)."""
    if record["schema"] == PURCHASE_ORDER_SCHEMA:
        return validate_order(copy.deepcopy(record["purchase_order"])).record()
    order, event = record["order"], record["event"]
    if not isinstance(order, dict) or not isinstance(event, dict):
        raise TypeError("order and event must be JSON objects")
    return parse_event({**order, "prev": record["prev"], **event}).record()


def _check_schema(check: RecordCheck, record: Mapping[str, Any], expected: str | None) -> None:
    """Step ``schema``: a record of the expected schema that passes its schema's rules,
    and nothing more: validating it as sent gives the same record back."""
    schema = record["schema"]
    if expected is not None and schema != expected:
        where = "first" if expected == PURCHASE_ORDER_SCHEMA else "every later"
        raise VerificationError(
            f"the {where} record of an order's history is an {expected} record",
            step="schema",
            expected=expected,
            actual=schema,
        )
    if schema not in (PURCHASE_ORDER_SCHEMA, ORDER_EVENT_SCHEMA):
        raise VerificationError(
            "not a record schema this version of Ancla can check",
            step="schema",
            expected=f"{PURCHASE_ORDER_SCHEMA} or {ORDER_EVENT_SCHEMA}",
            actual=schema,
        )
    try:
        again = _as_sent(record)
    except ValidationError as exc:
        raise VerificationError(
            f"the record breaks its schema's rules: {_first_error(exc)}", step="schema"
        ) from None
    except (KeyError, TypeError) as exc:
        raise VerificationError(
            f"the record is not of its schema's shape: {exc.__class__.__name__}: {exc}",
            step="schema",
        ) from None
    if again != record:
        raise VerificationError(
            "the record holds members its schema does not define, or defaults left out",
            step="schema",
            expected="the record as its schema writes it",
            actual="another record",
        )
    check.passed("schema", f"a valid {schema} record", schema, schema)


def _kind(record: Mapping[str, Any]) -> str:
    """``issued`` for an order, else the event's type (the order view's ``type``)."""
    if record["schema"] == PURCHASE_ORDER_SCHEMA:
        return "issued"
    return str(record["event"]["type"])


def _order_of(record: Mapping[str, Any]) -> tuple[str, str]:
    columns = schema_named(record["schema"]).columns(record)
    assert columns.buyer_ruc is not None and columns.order_number is not None  # noqa: S101
    return columns.buyer_ruc, columns.order_number


def _check_receipt(
    check: RecordCheck,
    service: Service,
    record: Mapping[str, Any],
    *,
    rpc_url: str,
    confirmations: int,
) -> None:
    """Step ``receipt`` (the service has one for this hash), then the receipt's own steps
    against the chain; ChainError (could not ask the chain) goes up."""
    try:
        receipt = service.receipt(check.hash)
    except InvalidAnswer as exc:
        raise VerificationError(str(exc), step="receipt") from None
    except CannotCheck as exc:
        raise CannotCheck(f"cannot check {check.name}: {exc}") from None
    try:
        steps = verify_receipt(receipt, record, rpc_url=rpc_url, confirmations=confirmations).steps
        failure = None
    except VerificationError as exc:
        steps, failure = (exc.report.steps if exc.report else []), exc
    # Its step 1 (keccak256(JCS(record)) is the receipt's hash) repeats the ``record``
    # step above when it passes: listed once.
    check.steps += [step for step in steps if not (step.step == "record" and step.ok)]
    if failure is not None:
        raise failure


# -- an order's history ------------------------------------------------------------------


@dataclass
class OrderReport:
    buyer_ruc: str
    order_number: str
    hash: str
    head: str
    records: list[RecordCheck] = field(default_factory=list)
    # What is wrong with the history as a whole (not with one record).
    problems: list[str] = field(default_factory=list)
    # The order as it stands after the history, folded here from checked records only.
    state: OrderState | None = None

    @property
    def failed(self) -> list[RecordCheck]:
        return [check for check in self.records if not check.valid]

    @property
    def valid(self) -> bool:
        return not self.problems and not self.failed

    @property
    def error(self) -> str | None:
        if self.problems:
            return self.problems[0]
        failed = self.failed
        if not failed:
            return None
        more = f" (and {len(failed) - 1} more records fail)" if len(failed) > 1 else ""
        return f"{failed[0].name}: {failed[0].error}{more}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "order": {
                "buyer_ruc": self.buyer_ruc,
                "order_number": self.order_number,
                "hash": self.hash,
                "head": self.head,
                "records": len(self.records),
            },
            "records": [check.to_dict() for check in self.records],
            "error": self.error,
        }


def verify_order(
    service: Service,
    buyer_ruc: str,
    order_number: str,
    *,
    rpc_url: str,
    confirmations: int = 1,
) -> OrderReport:
    """Check an order's whole history as the service lists it, trusting only the chain.

    For each record, in order, up to its first failure: ``record`` (its bytes
    hash to the hash listed), ``schema`` (position 0 is an
    ``ancla/purchase-order/1`` record, every later one an
    ``ancla/order-event/1``, each passing its schema's rules), ``order`` (of
    exactly this buyer and order number), ``prev`` (it names the record before
    it), ``rules`` (the history's rules hold, folded with start_order and
    apply_event), ``receipt`` (the service has its receipt), then the
    receipt's steps on chain (``leaf``, ``proof``, ``anchor.*``; a pending
    receipt fails ``anchor``). After a record whose content fails, the rules of
    later ones cannot be judged: their ``rules`` step says so.
    """
    listing = service.order(buyer_ruc, order_number)
    history = listing.history
    report = OrderReport(buyer_ruc, order_number, hash=history[0].hash, head=listing.head)
    if listing.head != history[-1].hash:
        report.problems.append(
            f"the service says the order's head is {listing.head}, but the history it lists "
            f"ends at {history[-1].hash}"
        )
    for position, listed in enumerate(history):
        if listed.seq is not None and listed.seq != position:
            report.problems.append(
                f"the service numbers record {listed.hash} seq {listed.seq}, but it is at "
                f"position {position} of the history it lists"
            )
    state: OrderState | None = None
    broken: RecordCheck | None = None
    previous: str | None = None
    for seq, listed in enumerate(history):
        check = RecordCheck(hash=listed.hash, type=listed.type, seq=seq)
        report.records.append(check)
        try:
            record = _check_bytes(check, service, listed.hash)
            _check_schema(check, record, PURCHASE_ORDER_SCHEMA if seq == 0 else ORDER_EVENT_SCHEMA)
            check.type = _kind(record)
            found = _order_of(record)
            if found != (buyer_ruc, order_number):
                raise VerificationError(
                    f"the record is of order {found[1]} of buyer {found[0]}",
                    step="order",
                    expected=f"{order_number} of buyer {buyer_ruc}",
                    actual=f"{found[1]} of buyer {found[0]}",
                )
            check.passed("order", f"of order {order_number} of buyer {buyer_ruc}")
            if seq:
                if record["prev"] != previous:
                    raise VerificationError(
                        "the record's prev is not the hash of the record before it",
                        step="prev",
                        expected=previous,
                        actual=record["prev"],
                    )
                check.passed("prev", "prev is the hash of the record before it", previous)
            state = _fold(check, state, broken, listed.hash, record)
            _check_receipt(check, service, record, rpc_url=rpc_url, confirmations=confirmations)
        except VerificationError as exc:
            check.fail(exc)
        if check.content_failed:
            state = None
            broken = broken or check
        previous = listed.hash
    report.state = state
    return report


def _fold(
    check: RecordCheck,
    state: OrderState | None,
    broken: RecordCheck | None,
    record_hash: str,
    record: Mapping[str, Any],
) -> OrderState:
    """Step ``rules``: the history so far, with this record, keeps its rules."""
    if check.seq == 0:
        started = start_order(record_hash, record)
        issued = started.issued["issued_at"]
        check.passed("rules", f"the history starts at the order, issued {issued}")
        return started
    if state is None:
        assert broken is not None  # noqa: S101 - the fold stops only at a failed record
        raise VerificationError(
            f"not checked: the history does not verify before this record (at {broken.name})",
            step="rules",
        )
    try:
        following = apply_event(state, record_hash, record)
    except ChainRefusal as refusal:
        raise VerificationError(
            f"the history breaks its rules here: {refusal.detail}", step="rules"
        ) from None
    check.passed("rules", "the history's rules hold with this record")
    return following


# -- a file ------------------------------------------------------------------------------


@dataclass
class DocumentReport:
    sha256: str
    size: int
    records: list[RecordCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RecordCheck]:
        return [check for check in self.records if not check.valid]

    @property
    def valid(self) -> bool:
        return bool(self.records) and not self.problems and not self.failed

    @property
    def error(self) -> str | None:
        if self.problems:
            return self.problems[0]
        if not self.records:
            return f"no record binds this file: the service lists none for SHA-256 {self.sha256}"
        failed = self.failed
        if not failed:
            return None
        more = f" (and {len(failed) - 1} more records fail)" if len(failed) > 1 else ""
        return f"{failed[0].name}: {failed[0].error}{more}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "sha256": self.sha256,
            "size": self.size,
            "records": [check.to_dict() for check in self.records],
            "error": self.error,
        }


def verify_document(
    service: Service, sha256: str, size: int, *, rpc_url: str, confirmations: int = 1
) -> DocumentReport:
    """Check every record the service says binds the file with this digest.

    For each: ``record`` (its bytes hash to the hash listed), ``schema``,
    ``binds`` (its documents include this digest), ``receipt``, then the
    receipt's steps on chain. Valid only if at least one record binds the file
    and every one listed verifies.
    """
    listing = service.documents(sha256)
    report = DocumentReport(sha256=sha256, size=size)
    if listing.sha256 != sha256:
        report.problems.append(
            f"the service answered for the file {listing.sha256!r}, not {sha256}"
        )
    for listed in listing.records:
        check = RecordCheck(hash=listed.hash, type=listed.type)
        report.records.append(check)
        try:
            record = _check_bytes(check, service, listed.hash)
            _check_schema(check, record, None)
            check.type = _kind(record)
            buyer_ruc, order_number = _order_of(record)
            check.order = {"buyer_ruc": buyer_ruc, "order_number": order_number}
            digests = schema_named(record["schema"]).documents(record)
            if sha256 not in digests:
                raise VerificationError(
                    "the record binds no file with this SHA-256",
                    step="binds",
                    expected=sha256,
                    actual=digests,
                )
            check.passed("binds", "the record's documents include this file's SHA-256", sha256)
            _check_receipt(check, service, record, rpc_url=rpc_url, confirmations=confirmations)
        except VerificationError as exc:
            check.fail(exc)
    return report
