"""One recorded purchase order as one OCDS 1.1 release (schema 1.1.5), its proof included.

Out. Every recorded purchase order becomes one OCDS release. Following the
OCDS guidance, a purchase order is a *contract*; an order under an Acuerdo
Marco is the second stage of a framework agreement procedure, so it gets its
own ocid and links to the framework through ``relatedProcesses`` with
relationship ``framework``, and carries a minimal ``tender``, one award and one
contract (tag ``award`` + ``contract``, as the guidance's "award of a
procurement contract without second stage competition" prescribes). Ancla's
proof (record hash, receipt, batch, anchoring transaction) and the fields a
Peruvian order needs that OCDS 1.1 lacks ride in the documented extension in
``app/ocds_extension/``.

The release is a *view* of the ledger record, never the record: OCDS amounts
are JSON numbers, while the hashed record keeps the decimal strings the agency
sent (DESIGN §2). Numbers are made here, at the export, and nowhere else; the
release points to the record (``ancla.recordUrl``) so anyone can re-hash it.

An order's history (DESIGN §2 "Order history": its purchase-order record
followed by its ``ancla/order-event/1`` records) is one release per record, in
history order, under the order's ocid (:func:`history_releases`): the order's
release as above, then one release per event carrying what the event changed
(OCDS releases state the new information; a compiled release merges them,
:mod:`app.opendata.packages`). Each release's ``id`` is its record's hash and
its ``ancla`` proof is that record's.

The ``ancla`` object of each release follows the extension in
``app/ocds_extension/`` (:data:`EXTENSION_DIR`), which the service serves
under :data:`EXTENSION_PATH` (:func:`extension_url`, :func:`extension_metadata`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from pydantic import ValidationError

from app.records.order_event import (
    ORDER_EVENT_SCHEMA,
    OrderState,
    apply_event,
    parse_event,
    start_order,
)
from app.records.purchase_order import PURCHASE_ORDER_SCHEMA, PurchaseOrder
from app.records.registry import ChainRefusal
from ledger.anchors import Anchor
from ledger.canonical import record_hash as record_hash_of

__all__ = [
    "CONTRACT_STATUS",
    "DEFAULT_OCID_PREFIX",
    "EXTENSION_DIR",
    "EXTENSION_PATH",
    "FRAMEWORK_SCHEME",
    "OCDS_VERSION",
    "RUC_SCHEME",
    "JsonObject",
    "ProvenRecord",
    "extension_metadata",
    "extension_url",
    "history_releases",
    "ocds_datetime",
    "ocds_number",
    "ocds_url",
    "ocid_for",
    "release_for",
]

JsonObject = dict[str, Any]

# The OCDS minor version the packages declare (schema 1.1.5 validates them).
OCDS_VERSION: Final = "1.1"

# An ocid is <ocid prefix>-<internal id>. A real publisher registers its prefix
# ("ocds-" + six random lowercase alphanumerics) with the OCDS Data Support
# team (data@open-contracting.org) and configures it here; this default has the
# registered shape but is NOT registered, so ocids made with it are unique
# only within one Ancla deployment.
DEFAULT_OCID_PREFIX: Final = "ocds-ancla0"
_OCID_PREFIX_RE: Final = re.compile(r"[a-z0-9]+-[a-z0-9]{6}")

# org-id.guide's code for SUNAT's Registro Único de Contribuyentes.
RUC_SCHEME: Final = "PE-RUC"

# Perú Compras publishes no OCDS (hence no ocid) for its Acuerdos Marco, so a
# framework link cannot use the "ocid" scheme. "X-" marks a local scheme (the
# OCDS convention for unregistered lists); its identifier is the agreement's
# name exactly as Perú Compras writes it (ACUERDO_MARCO). Switch to "ocid"
# once the framework agreements have ocids.
FRAMEWORK_SCHEME: Final = "X-ANCLA-ACUERDO-MARCO"

# The extension's files; see its README for the design.
EXTENSION_DIR: Final = Path(__file__).resolve().parents[1] / "ocds_extension"
# Where the service is to serve EXTENSION_DIR, under its public base URL.
EXTENSION_PATH: Final = "/ocds/extension/"

# Perú Compras' order states (ESTADO_ORDEN_ELECTRÓNICA) -> OCDS's closed
# contractStatus codelist. Only states whose meaning is unambiguous are mapped:
# any other state leaves `status` out (OCDS: unknown) and is still published
# verbatim in `statusDetails` (extension). ANULADA is left out on purpose: an
# order can be voided before acceptance (cancelled) or after (terminated).
CONTRACT_STATUS: Final[Mapping[str, str]] = {
    "PUBLICADA": "pending",  # issued, not yet accepted by the supplier
    "ACEPTADA": "active",  # accepted by the supplier: in force
    "ACEPTADA C/ ENTREGA PENDIENTE": "active",
    "ENTREGADA": "active",  # delivered, not yet closed
    "RECHAZADA": "cancelled",  # the supplier refused it: never in force
    "CULMINADA": "terminated",
    "RESUELTA": "terminated",  # "resolución de contrato": ended early
}

# Characters RFC 3986 allows in a URL; anything else (spaces in Perú Compras'
# file names, non-ASCII) is percent-encoded, because OCDS's "uri" format
# rejects it. "%" stays so existing escapes are not escaped twice.
_URL_SAFE: Final = ":/?#[]@!$&'()*+,;=-._~%"


# --- Out: one order -> one release ------------------------------------------------


def ocid_for(buyer_ruc: str, order_number: str, *, prefix: str = DEFAULT_OCID_PREFIX) -> str:
    """The ocid of an order: unique per buyer and order number, as the ledger is."""
    if not _OCID_PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"ocid prefix {prefix!r} is not of the form ocds-xxxxxx")
    return f"{prefix}-{buyer_ruc}-{order_number}"


def _party_id(ruc: str) -> str:
    return f"{RUC_SCHEME}-{ruc}"


def ocds_number(text: str) -> int | float:
    """A decimal string as the JSON number OCDS wants (exact integers stay ints).

    A float's shortest repr equals the decimal for up to 15 significant
    digits, i.e. every amount below 10^13 soles with céntimos; the exact
    string stays in the hashed record either way.
    """
    value = Decimal(text)
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def ocds_datetime(text: str) -> str:
    """An ISO 8601 time as RFC 3339 (``T`` separator, offset ``±hh:mm``), same instant."""
    moment = datetime.fromisoformat(text)
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(f"{text!r} has no UTC offset")
    if offset % timedelta(minutes=1):
        # RFC 3339 offsets have no seconds; say the same instant in UTC.
        moment = moment.astimezone(UTC)
    return moment.isoformat()


def ocds_url(url: str) -> str:
    """``url`` with the characters RFC 3986 forbids percent-encoded (same resource)."""
    return quote(url, safe=_URL_SAFE)


def _ancla(
    *,
    record_hash: str,
    record_url: str,
    receipt_url: str,
    status: str,
    anchor: Anchor | None,
    record_schema: str = PURCHASE_ORDER_SCHEMA,
) -> JsonObject:
    if status not in ("pending", "anchored", "final"):
        raise ValueError(f"status must be pending, anchored or final, not {status!r}")
    if (status == "pending") != (anchor is None):
        raise ValueError(
            f"a {status} record must {'not ' if status == 'pending' else ''}come with its anchor"
        )
    proof: JsonObject = {
        "recordSchema": record_schema,
        "recordHash": record_hash,
        "recordUrl": record_url,
        "receiptUrl": receipt_url,
        "status": status,
    }
    if anchor is not None:
        proof.update(
            batchId=anchor.batch_id,
            merkleRoot=anchor.root,
            chainId=anchor.chain_id,
            contract=anchor.contract,
            transactionHash=anchor.tx_hash,
            blockNumber=anchor.block_number,
        )
    return proof


def _organization(ruc: str, name: str, roles: list[str]) -> JsonObject:
    return {
        "id": _party_id(ruc),
        "name": name,
        "identifier": {"scheme": RUC_SCHEME, "id": ruc, "legalName": name},
        "roles": roles,
    }


def _value(amount: str, currency: str) -> JsonObject:
    return {"amount": ocds_number(amount), "currency": currency}


def _contract_value(order: PurchaseOrder) -> JsonObject:
    # Both sides of IGV (extension, OCDS 1.2 names); `amount` is the total the
    # buyer pays, as the order document states it.
    return {
        **_value(order.total, order.currency),
        "amountNet": ocds_number(order.subtotal),
        "amountGross": ocds_number(order.total),
    }


def _items(order: PurchaseOrder) -> list[JsonObject] | None:
    if order.items is None:
        return None
    items: list[JsonObject] = []
    for index, line in enumerate(order.items, start=1):
        item: JsonObject = {
            "id": str(index),
            "description": line.description,
            "quantity": ocds_number(line.quantity),
            "unit": {"name": line.unit, "value": _value(line.unit_price, order.currency)},
        }
        if line.classification is not None:
            item["classification"] = {
                "scheme": line.classification.scheme,
                "id": line.classification.id,
            }
        items.append(item)
    return items


def _documents(documents: Sequence[Mapping[str, Any]], *, prefix: str = "") -> list[JsonObject]:
    """§4 document objects (title, url, sha256?) as OCDS documents, ids ``<prefix><n>``
    from 1 (an order's own documents: their positions)."""
    entries: list[JsonObject] = []
    for index, document in enumerate(documents, start=1):
        entry: JsonObject = {
            "id": f"{prefix}{index}",
            "title": document["title"],
            "url": ocds_url(document["url"]),
        }
        if document.get("sha256") is not None:
            entry["sha256"] = document["sha256"]
        entries.append(entry)
    return entries


def release_for(
    record: Mapping[str, Any],
    *,
    record_hash: str,
    receipt_url: str,
    status: str,
    record_url: str | None = None,
    anchor: Anchor | None = None,
    ocid_prefix: str = DEFAULT_OCID_PREFIX,
) -> JsonObject:
    """The OCDS release of one purchase-order record (``ancla/purchase-order/1``).

    ``status`` is the receipt's (pending, anchored, final); ``anchor`` is
    given exactly when it is not pending. ``record_url`` defaults to the
    record path beside ``receipt_url``. Raises ValueError if ``record`` is not
    a purchase-order record in the form Ancla records or does not hash to
    ``record_hash``.
    """
    order = PurchaseOrder.from_record(record)
    actual = record_hash_of(record)
    if actual != record_hash:
        # The release would carry a proof for other bytes than its own.
        raise ValueError(f"record_hash is {record_hash}, but the record hashes to {actual}")
    if record_url is None:
        base, found, _ = receipt_url.rpartition(f"/v1/receipts/{record_hash}")
        if not found:
            raise ValueError("give record_url: receipt_url is not .../v1/receipts/<record_hash>")
        record_url = f"{base}/v1/records/{record_hash}"
    number = order.order_number
    issued_at = ocds_datetime(order.issued_at)
    buyer = {"id": _party_id(order.buyer.ruc), "name": order.buyer.name}
    supplier = {"id": _party_id(order.supplier.ruc), "name": order.supplier.name}

    tender: JsonObject = {"id": number}  # the guidance: tender.id = award.id
    if order.procurement_method is not None:
        tender["procurementMethodDetails"] = order.procurement_method

    value = _value(order.total, order.currency)
    contract: JsonObject = {"id": number, "awardID": number}
    if order.status is not None:
        if order.status in CONTRACT_STATUS:
            contract["status"] = CONTRACT_STATUS[order.status]
        contract["statusDetails"] = order.status
    contract["value"] = _contract_value(order)
    contract["dateSigned"] = issued_at
    items = _items(order)
    if items is not None:
        contract["items"] = items
    if order.documents:
        contract["documents"] = _documents(
            [document.model_dump(mode="json") for document in order.documents]
        )

    release: JsonObject = {
        "ocid": ocid_for(order.buyer.ruc, number, prefix=ocid_prefix),
        # Unique per release: a later record of the same order has another hash.
        "id": record_hash,
        "date": issued_at,
        "tag": ["award", "contract"],
        "initiationType": "tender",
        "language": "es",
        "parties": [
            _organization(order.buyer.ruc, order.buyer.name, ["buyer"]),
            _organization(order.supplier.ruc, order.supplier.name, ["supplier"]),
        ],
        "buyer": buyer,
        "tender": tender,
        "awards": [{"id": number, "date": issued_at, "value": value, "suppliers": [supplier]}],
        "contracts": [contract],
    }
    if order.framework_agreement is not None:
        release["relatedProcesses"] = [
            {
                "id": "1",
                "relationship": ["framework"],
                "title": order.framework_agreement,
                "scheme": FRAMEWORK_SCHEME,
                "identifier": order.framework_agreement,
            }
        ]
    release["ancla"] = _ancla(
        record_hash=record_hash,
        record_url=record_url,
        receipt_url=receipt_url,
        status=status,
        anchor=anchor,
    )
    return release


# --- Out: an order's history -> one release per record ---------------------------------


@dataclass(frozen=True, slots=True)
class ProvenRecord:
    """A ledger record and what its release's ``ancla`` proof says of it (see release_for)."""

    record: Mapping[str, Any]
    record_hash: str
    receipt_url: str
    record_url: str
    status: str
    anchor: Anchor | None = None


# Contract statuses after which the contract is over (contractStatus codelist).
_ENDED: Final = ("cancelled", "terminated")


def _reference(party: Mapping[str, Any]) -> JsonObject:
    return {"id": _party_id(party["ruc"]), "name": party["name"]}


def _event_body(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event of an ``ancla/order-event/1`` record in the form Ancla records, or ValueError."""
    if not isinstance(record, Mapping) or record.get("schema") != ORDER_EVENT_SCHEMA:
        schema = record.get("schema") if isinstance(record, Mapping) else None
        raise ValueError(f"record schema is {schema!r}, expected {ORDER_EVENT_SCHEMA!r}")
    order, event = record.get("order"), record.get("event")
    if set(record) != {"schema", "order", "prev", "event"} or not (
        isinstance(order, Mapping) and isinstance(event, Mapping)
    ):
        raise ValueError("an order-event record has exactly schema, order, prev and event")
    try:
        body = parse_event({**order, "prev": record["prev"], **event})
    except ValidationError as exc:
        raise ValueError(f"not a valid order event: {exc}") from None
    if body.record() != dict(record):
        raise ValueError("record is not in the form Ancla records; its hash would differ")
    return event


@dataclass
class _Walk:
    """An order's history so far, as its releases need it."""

    state: OrderState
    # The contract's OCDS status so far (None: unknown).
    contract_status: str | None
    transaction_ids: set[str] = field(default_factory=set)
    # Whether an earlier release carried implementation (its tag: implementation).
    implemented: bool = False

    def transaction_id(self, candidate: str | None, seq: int) -> str:
        # OCDS: a transaction's id is the reference it can be cross-checked by;
        # unique within the contract, or merging would fold two into one.
        identifier = candidate or str(seq)
        while identifier in self.transaction_ids:
            identifier = f"{identifier}/{seq}"
        self.transaction_ids.add(identifier)
        return identifier

    def implementation_tag(self) -> list[str]:
        tag = ["implementationUpdate" if self.implemented else "implementation"]
        self.implemented = True
        return tag

    def in_force(self) -> bool:
        state = self.state
        return (
            state.accepted
            or state.delivered
            or state.invoiced > 0
            or state.paid > 0
            or self.contract_status in ("active", "terminated")
        )

    def release(self, proven: ProvenRecord, ocid_prefix: str) -> JsonObject:
        record = proven.record
        event = _event_body(record)
        actual = record_hash_of(record)
        if actual != proven.record_hash:
            raise ValueError(
                f"record_hash is {proven.record_hash}, but the record hashes to {actual}"
            )
        before = self.state
        try:
            after = apply_event(before, proven.record_hash, record)
        except ChainRefusal as refusal:
            raise ValueError(
                f"record {proven.record_hash} does not follow the order's history: {refusal.detail}"
            ) from None
        seq = after.seq
        kind = event["type"]
        occurred_at = ocds_datetime(event["occurred_at"])
        number = before.order_number
        contract: JsonObject = {"id": number, "awardID": number}
        # Ids of what an event adds: its position in the history (seq), so
        # they never collide with the order's own ("1", "2", ...) or another event's.
        prefix = f"{seq}-"

        def documents(entries: Sequence[Mapping[str, Any]]) -> list[JsonObject]:
            return [
                {**entry, "datePublished": occurred_at}
                for entry in _documents(entries, prefix=prefix)
            ]

        tag: list[str]
        if kind == "accepted":
            contract["status"] = "active"
            contract["dateSigned"] = occurred_at
            self.contract_status = "active"
            tag = ["contractUpdate"]
        elif kind == "amended":
            amended = PurchaseOrder.model_validate(event["purchase_order"])
            contract["value"] = _contract_value(amended)
            items = _items(amended)
            if items is not None:
                contract["items"] = items
            if amended.documents:
                contract["documents"] = _documents(
                    [document.model_dump(mode="json") for document in amended.documents]
                )
            contract["amendments"] = [
                {
                    "id": str(seq),
                    "date": occurred_at,
                    "rationale": event["rationale"],
                    # The release before (the record this one names as prev)
                    # and this one, which holds the values after.
                    "amendsReleaseID": record["prev"],
                    "releaseID": proven.record_hash,
                }
            ]
            tag = ["contractAmendment"]
        elif kind == "delivered":
            milestone: JsonObject = {
                "id": str(seq),
                "type": "delivery",
                "status": "met",
                "dateMet": occurred_at,
            }
            if "note" in event:
                milestone["description"] = event["note"]
            if event.get("documents"):
                milestone["documents"] = documents(event["documents"])
            contract["implementation"] = {"milestones": [milestone]}
            tag = self.implementation_tag()
        elif kind in ("invoiced", "paid"):
            payer, payee = (
                _reference(before.current["buyer"]),
                _reference(before.current["supplier"]),
            )
            if kind == "invoiced":
                invoice = event["invoice"]
                transaction: JsonObject = {
                    "id": self.transaction_id(invoice["number"], seq),
                    "kind": "invoice",
                    "date": ocds_datetime(invoice["issued_at"]),
                    "value": _value(invoice["amount"], invoice["currency"]),
                }
            else:
                payment = event["payment"]
                transaction = {
                    "id": self.transaction_id(payment.get("reference"), seq),
                    "kind": "payment",
                    "date": occurred_at,
                    "value": _value(payment["amount"], payment["currency"]),
                }
            transaction.update(payer=payer, payee=payee)
            contract["implementation"] = {"transactions": [transaction]}
            tag = self.implementation_tag()
        elif kind == "cancelled":
            # contractStatus: "cancelled" is before the contract came into
            # force; an order cancelled once in force ended early: terminated
            # (as CONTRACT_STATUS maps RECHAZADA and RESUELTA).
            status = "terminated" if self.in_force() else "cancelled"
            contract["status"] = status
            contract["documents"] = [
                {
                    "id": f"{prefix}1",
                    "documentType": "cancellationDetails",
                    "description": event["rationale"],
                    "datePublished": occurred_at,
                }
            ]
            self.contract_status = status
            tag = ["contractTermination"]
        elif kind == "status":
            verbatim = event["status"]
            mapped = CONTRACT_STATUS.get(verbatim)
            if mapped is not None:
                contract["status"] = mapped
                self.contract_status = mapped
            contract["statusDetails"] = verbatim
            if event.get("documents"):
                contract["documents"] = documents(event["documents"])
            tag = ["contractTermination"] if mapped in _ENDED else ["contractUpdate"]
        elif kind == "document":
            bound = event["document"]
            entry: JsonObject = {
                "id": f"{prefix}1",
                "documentType": bound["document_type"],
                "title": bound["title"],
                "format": bound["media_type"],
            }
            if "url" in bound:
                entry["url"] = ocds_url(bound["url"])
            entry.update(datePublished=occurred_at, sha256=bound["sha256"], size=bound["size"])
            contract["documents"] = [entry]
            tag = ["contractUpdate"]
        else:  # apply_event refuses any other type
            raise ValueError(f"unknown event type {kind!r}")
        self.state = after
        return {
            "ocid": ocid_for(before.buyer_ruc, number, prefix=ocid_prefix),
            "id": proven.record_hash,
            "date": occurred_at,
            "tag": tag,
            "initiationType": "tender",
            "language": "es",
            "contracts": [contract],
            "ancla": _ancla(
                record_hash=proven.record_hash,
                record_url=proven.record_url,
                receipt_url=proven.receipt_url,
                status=proven.status,
                anchor=proven.anchor,
                record_schema=ORDER_EVENT_SCHEMA,
            ),
        }


def history_releases(
    history: Iterable[ProvenRecord], *, ocid_prefix: str = DEFAULT_OCID_PREFIX
) -> Iterator[JsonObject]:
    """One release per record of one order's history, in history order.

    ``history`` is the order's purchase-order record followed by its
    ``ancla/order-event/1`` records, each naming the one before as its
    ``prev`` (DESIGN §2). The order's release is :func:`release_for`'s; each
    event's release, under the same ocid, dated ``occurred_at``, states what
    the event changed (a compiled release merges them):

    * ``accepted``: the contract's ``status`` ``active`` and ``dateSigned``;
    * ``amended``: the contract's ``value`` (and items, documents) as amended
      and an ``amendments`` entry (``amendsReleaseID``: the record before;
      ``releaseID``: this one);
    * ``delivered``: an ``implementation.milestones`` entry of type
      ``delivery``, ``met`` on ``dateMet``, with its documents;
    * ``invoiced``, ``paid``: an ``implementation.transactions`` entry (its id
      the invoice number or payment reference; ``kind`` in the extension);
    * ``cancelled``: the contract ``cancelled`` (``terminated`` if it was in
      force) with a ``cancellationDetails`` document holding the rationale;
    * ``status``: ``statusDetails`` verbatim, ``status`` where
      :data:`CONTRACT_STATUS` maps it, and its documents;
    * ``document``: a document with its type, media type (``format``), and its
      SHA-256 and size (extension).

    Raises ValueError (while iterating) if a record is not in the form Ancla
    records, does not hash to its hash, or does not follow the history (its
    ``prev``, the rules of DESIGN §2).
    """
    records = iter(history)
    first = next(records, None)
    if first is None:
        return
    yield release_for(
        first.record,
        record_hash=first.record_hash,
        receipt_url=first.receipt_url,
        record_url=first.record_url,
        status=first.status,
        anchor=first.anchor,
        ocid_prefix=ocid_prefix,
    )
    state = start_order(first.record_hash, first.record)
    walk = _Walk(state, CONTRACT_STATUS.get(state.last_status or ""))
    for proven in records:
        yield walk.release(proven, ocid_prefix)


# --- Out: the extension's URLs ------------------------------------------------------------


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def extension_url(base_url: str) -> str:
    """The URL of the Ancla extension's ``extension.json`` on the service at ``base_url``."""
    return f"{_base(base_url)}{EXTENSION_PATH}extension.json"


def extension_metadata(base_url: str) -> JsonObject:
    """``extension.json`` as served from ``base_url``: its documentation URL made absolute."""
    metadata: JsonObject = json.loads((EXTENSION_DIR / "extension.json").read_text("utf-8"))
    metadata["documentationUrl"] = {
        language: f"{_base(base_url)}{EXTENSION_PATH}{path}"
        for language, path in metadata["documentationUrl"].items()
    }
    return metadata
