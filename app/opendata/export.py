"""Open data out of the ledger: its purchase orders as OCDS releases and as CSV (DESIGN §4, §5).

The recorded orders are read in ledger order, each with the status and anchor
the API would serve for it. For OCDS, each order comes with its history (its
``ancla/order-event/1`` records, found link by link through the chain index,
as app.services.chains reads chains) and becomes one release per record
(:func:`app.opendata.mapping.history_releases`); for CSV, each order is one
row (:data:`CSV_COLUMNS`). Reading is streamed (``yield_per`` for CSV, a few
hundred orders and their histories at a time for OCDS): nothing holds the
whole ledger in memory.

:func:`write_export` is the one place that picks the writer for a format:
``ancla export`` and the export routes both call it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Final, Literal

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.errors import IntegrityFailure
from app.models import Batch, ChainTarget, Record
from app.opendata.mapping import (
    DEFAULT_OCID_PREFIX,
    JsonObject,
    ProvenRecord,
    history_releases,
)
from app.opendata.packages import (
    export_package_info,
    write_record_package,
    write_release_package,
)
from app.records.order_event import ORDER_EVENT_SCHEMA
from app.records.purchase_order import PURCHASE_ORDER_SCHEMA
from app.services.receipts import (
    PublicStatus,
    chain_target,
    public_anchor,
    public_status,
    with_batch,
)
from ledger.anchors import Anchor
from ledger.canonical import hash_canonical, parse_record

__all__ = [
    "CSV_COLUMNS",
    "EXPORT_FORMATS",
    "ExportFormat",
    "csv_row",
    "csv_rows",
    "export_csv",
    "export_releases",
    "write_csv",
    "write_export",
]

# What `ancla export --format` and the export routes write: an OCDS release
# package, an OCDS record package, or CSV.
ExportFormat = Literal["ocds", "ocds-record", "csv"]
EXPORT_FORMATS: Final[tuple[ExportFormat, ...]] = ("ocds", "ocds-record", "csv")

# One row per order; the public interface of `ancla export --format csv`.
CSV_COLUMNS: Final = (
    "order_number",
    "buyer_ruc",
    "buyer_name",
    "supplier_ruc",
    "supplier_name",
    "issued_at",
    "currency",
    "total",
    "hash",
    "status",
    "batch_id",
    "tx_hash",
    "chain_id",
    "contract",
)

# Rows fetched per round trip when streaming the ledger out.
_YIELD_PER: Final = 1000
# Orders whose histories are read together (one IN list per step along the
# chains; under SQLite's limit of variables per statement).
_HISTORIES_PER_ROUND: Final = 500


# --- Out: from the ledger ----------------------------------------------------------------


@dataclass(frozen=True)
class _Stored:
    record: JsonObject
    record_hash: str
    # As receipts and every other view say (app.services.receipts.public_status).
    status: PublicStatus
    anchor: Anchor | None


def _stored(
    record_id: int,
    record_hash: str,
    canonical: bytes,
    batch: Batch | None,
    target: ChainTarget | None,
    genesis: str | None,
) -> _Stored:
    # Publishing a proof for bytes that no longer hash to it would be a lie.
    actual = hash_canonical(canonical)
    if actual != record_hash:
        raise IntegrityFailure(
            f"record {record_id}: stored bytes hash to {actual}, not {record_hash};"
            " run `ancla verify`"
        )
    return _Stored(
        record=parse_record(canonical),
        record_hash=record_hash,
        status=public_status(batch, target, genesis=genesis),
        anchor=public_anchor(batch, target, genesis=genesis),
    )


def _orders_query(buyer: str | None, since: datetime | None) -> Select[Record, Batch]:
    query = (
        with_batch(select(Record, Batch))
        .where(Record.schema == PURCHASE_ORDER_SCHEMA)
        .order_by(Record.id)
    )
    if buyer is not None:
        query = query.where(Record.buyer_ruc == buyer)
    if since is not None:
        query = query.where(Record.issued_at >= since)
    return query


def _stored_orders(
    session: Session, buyer: str | None, since: datetime | None, genesis: str | None
) -> Iterator[_Stored]:
    """Purchase-order records in ledger order, each with the status and anchor the
    API would serve for it. ``genesis``: the chain's, as for receipts."""
    query = _orders_query(buyer, since).execution_options(yield_per=_YIELD_PER)
    target = chain_target(session)
    for stored, batch in session.execute(query):
        yield _stored(stored.id, stored.hash, stored.canonical, batch, target, genesis)


def _stored_histories(
    session: Session, buyer: str | None, since: datetime | None, genesis: str | None
) -> Iterator[list[_Stored]]:
    """Each purchase order's history (DESIGN §2), orders in ledger order: its
    record, then its events in chain order, each with its status and anchor.

    A round reads the next orders (keyset on the id, no cursor left open),
    then their events one chain link at a time: an event's identity is its
    prev (app.records.order_event), so each step is one lookup in the unique
    (schema, identity) index for all the round's chains at once.
    """
    target = chain_target(session)
    after = 0
    while True:
        rows = session.execute(
            _orders_query(buyer, since).where(Record.id > after).limit(_HISTORIES_PER_ROUND)
        ).all()
        if not rows:
            return
        after = rows[-1][0].id
        histories: dict[str, list[_Stored]] = {}
        # The hash of each chain's latest record read -> the chain (its order's hash).
        frontier: dict[str, str] = {}
        for stored, batch in rows:
            histories[stored.hash] = [
                _stored(stored.id, stored.hash, stored.canonical, batch, target, genesis)
            ]
            frontier[stored.hash] = stored.hash
        while frontier:
            following: dict[str, str] = {}
            events = session.execute(
                with_batch(
                    select(Record.id, Record.hash, Record.canonical, Record.identity, Batch)
                ).where(Record.schema == ORDER_EVENT_SCHEMA, Record.identity.in_(sorted(frontier)))
            )
            for record_id, record_hash, canonical, prev, batch in events:
                assert prev is not None  # noqa: S101 - it matched the frontier
                chain = frontier[prev]
                histories[chain].append(
                    _stored(record_id, record_hash, canonical, batch, target, genesis)
                )
                following[record_hash] = chain
            frontier = following
        yield from histories.values()


def export_releases(
    *,
    session: Session,
    buyer: str | None = None,
    since: datetime | None = None,
    base_url: str = "",
    ocid_prefix: str = DEFAULT_OCID_PREFIX,
    genesis: str | None = None,
) -> Iterator[JsonObject]:
    """One OCDS release per record of each recorded purchase order's history:
    orders in ledger order, each order's releases (its own, then one per
    event) together and in history order (app.opendata.mapping.history_releases).

    ``buyer`` filters on the buyer's RUC and ``since`` (aware) on the issue
    time of the orders (an order comes with its whole history). Proof URLs are
    ``<base_url>/v1/receipts/<hash>`` and ``<base_url>/v1/records/<hash>``;
    with no base URL they are those paths on the publishing service. Raises
    IntegrityFailure if a stored record no longer hashes to its hash or a
    stored history breaks its rules.
    """
    base = base_url.rstrip("/")
    for history in _stored_histories(session, buyer, since, genesis):
        yield from _releases_of(history, base, ocid_prefix)


def _releases_of(history: Sequence[_Stored], base: str, ocid_prefix: str) -> Iterator[JsonObject]:
    proven = [
        ProvenRecord(
            record=stored.record,
            record_hash=stored.record_hash,
            receipt_url=f"{base}/v1/receipts/{stored.record_hash}",
            record_url=f"{base}/v1/records/{stored.record_hash}",
            status=stored.status,
            anchor=stored.anchor,
        )
        for stored in history
    ]
    try:
        yield from history_releases(proven, ocid_prefix=ocid_prefix)
    except ValueError as exc:
        # Ingest refuses such records: the stored ledger was changed, or its rules.
        raise IntegrityFailure(
            f"the history of order {history[0].record_hash} cannot be published: {exc};"
            " run `ancla verify`"
        ) from None


# --- Out: CSV --------------------------------------------------------------------------------


def csv_row(
    record: Mapping[str, Any], *, record_hash: str, status: str, anchor: Anchor | None
) -> dict[str, str]:
    """One CSV row (CSV_COLUMNS) for a purchase-order record; values as recorded."""
    order = record["purchase_order"]
    return {
        "order_number": order["order_number"],
        "buyer_ruc": order["buyer"]["ruc"],
        "buyer_name": order["buyer"]["name"],
        "supplier_ruc": order["supplier"]["ruc"],
        "supplier_name": order["supplier"]["name"],
        "issued_at": order["issued_at"],
        "currency": order["currency"],
        "total": order["total"],
        "hash": record_hash,
        "status": status,
        "batch_id": str(anchor.batch_id) if anchor else "",
        "tx_hash": anchor.tx_hash if anchor else "",
        "chain_id": str(anchor.chain_id) if anchor else "",
        "contract": anchor.contract if anchor else "",
    }


def csv_rows(
    *,
    session: Session,
    buyer: str | None = None,
    since: datetime | None = None,
    genesis: str | None = None,
) -> Iterator[dict[str, str]]:
    """CSV rows for the recorded purchase orders, streamed (filters as export_releases)."""
    for stored in _stored_orders(session, buyer, since, genesis):
        yield csv_row(
            stored.record,
            record_hash=stored.record_hash,
            status=stored.status,
            anchor=stored.anchor,
        )


def export_csv(fp: IO[str], rows: Iterable[Mapping[str, str]]) -> int:
    """Write a header and ``rows`` as RFC 4180 CSV; returns the number of rows.

    Open ``fp`` with ``newline=""`` (the csv module writes CRLF itself).
    Values are written verbatim, as recorded.
    """
    writer = csv.DictWriter(fp, fieldnames=CSV_COLUMNS, extrasaction="raise")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def write_csv(
    fp: IO[str],
    *,
    session: Session,
    buyer: str | None = None,
    since: datetime | None = None,
    genesis: str | None = None,
) -> int:
    """Stream the recorded purchase orders to ``fp`` as CSV; returns the number of rows."""
    return export_csv(fp, csv_rows(session=session, buyer=buyer, since=since, genesis=genesis))


# --- Out: one export, whatever its format ----------------------------------------------------


def write_export(
    fp: IO[str],
    *,
    session: Session,
    format: ExportFormat,
    buyer: str | None = None,
    since: datetime | None = None,
    base_url: str = "",
    uri: str | None = None,
    publisher_name: str = "Ancla",
    genesis: str | None = None,
) -> int:
    """Write the recorded purchase orders to ``fp`` in ``format``; returns how many orders.

    ``"ocds"`` is a release package (one release per record of each order's
    history), ``"ocds-record"`` a record package (one record per order, its
    releases embedded, with their compiled and versioned releases), ``"csv"``
    one row per order (:data:`CSV_COLUMNS`). ``buyer`` and ``since`` filter as in
    :func:`export_releases`; ``base_url`` is the service's public URL (the
    proof and extension URLs start with it), ``uri`` the package's own URL
    (default ``<base_url>/v1/export/ocds``) and ``publisher_name`` its publisher.
    ``genesis`` is the genesis hash of the chain the service talks to now
    (None: unknown), so statuses are those its receipts give.

    A package raises :class:`app.opendata.packages.EmptyPackage` before
    writing anything when no order matches (an OCDS package holds at least
    one release); a CSV of no orders is its header alone. Open ``fp`` with
    ``newline=""`` (the CSV writer writes CRLF itself).
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
    if format == "csv":
        return write_csv(fp, session=session, buyer=buyer, since=since, genesis=genesis)
    base = base_url.rstrip("/")
    releases = export_releases(
        session=session, buyer=buyer, since=since, base_url=base, genesis=genesis
    )
    info = export_package_info(
        base_url=base,
        uri=uri if uri is not None else f"{base}/v1/export/ocds",
        publisher_name=publisher_name,
    )
    if format == "ocds-record":
        return write_record_package(fp, releases, info)
    orders = 0

    def counted() -> Iterator[JsonObject]:
        # An order's releases are consecutive: count its ocid once.
        nonlocal orders
        ocid = None
        for release in releases:
            if release["ocid"] != ocid:
                ocid = release["ocid"]
                orders += 1
            yield release

    write_release_package(fp, counted(), info)
    return orders
