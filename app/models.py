"""SQL rows (SQLAlchemy 2 typed models). The schema changes only through Alembic.

The source of truth for a record is ``records.canonical``: the exact RFC 8785
bytes that were hashed. Every other column of ``records`` is derived from
those bytes for querying, and ``ancla verify`` checks they still agree.

The tables every record writes (records, pending_records, batch_entries) have
no foreign keys (migration 0006): PostgreSQL checked each with a per-row
trigger, a third of its work per record in bulk ingest. Ancla never deletes a
record, batch or agency, and writes a queue row or batch entry in the same
transaction as what it names; ``ancla verify`` reports any reference left
dangling by a change made outside Ancla.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ledger.anchors import Anchor
from ledger.hashing import from_hex32

# Batch lifecycle (DESIGN §4): sealed -> submitted -> anchored -> final.
SEALED, SUBMITTED, ANCHORED, FINAL = "sealed", "submitted", "anchored", "final"
BATCH_STATUSES = (SEALED, SUBMITTED, ANCHORED, FINAL)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite has no time zone type)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """Amounts on SQLite, exactly, as decimal text ("1250.00").

    SQLite has no decimal type: a NUMERIC column keeps a REAL, and an amount of
    17 significant digits (what an order may hold) came back changed in its
    last digits. TEXT affinity keeps the digits; PostgreSQL keeps NUMERIC.
    """

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else decimal_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value).quantize(_CENT)


_CENT = Decimal("0.01")


def decimal_text(value: Decimal) -> str:
    """An amount as DecimalText stores it on SQLite: two decimals ("1250.00")."""
    return format(Decimal(value).quantize(_CENT), "f")


class Hash32(TypeDecorator[str]):
    """A record hash: ``0x`` + 64 lowercase hex digits in Python, 32 bytes stored.

    Half the width of its text in every index entry: the unique index on the
    hash takes random keys, so each record written dirties a leaf page of it,
    and narrower keys mean fewer pages (SQLite, in-process: inserting and
    committing took 11.7 µs per record, against 15.1 with 66-character
    keys). Queries keep comparing the text form; the column converts it.
    """

    impl = LargeBinary(32)
    cache_ok = True

    def process_bind_param(self, value: str | bytes | None, dialect: Dialect) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        return from_hex32(value, what="a record hash")

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            # Only a write made outside Ancla leaves text here (a SQLite column
            # keeps any type). Never equal to a hash: `ancla verify` names it.
            return f"text {value[:80]!r}"
        return "0x" + bytes(value).hex()


Money = Numeric(20, 2).with_variant(DecimalText(), "sqlite")

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer, "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Agency(Base):
    """An agency (buyer entity) allowed to record orders under its own RUC."""

    __tablename__ = "agencies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ruc: Mapped[str] = mapped_column(String(11), unique=True)
    name: Mapped[str] = mapped_column(String(500))
    # Public half of the API key, used to find the row without scanning.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    # SHA-256 of the secret half; keys are 256-bit random, so no slow KDF is needed.
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Batch(Base):
    """A sealed Merkle batch; its id is the on-chain batch id (1, 2, 3, ...)."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), index=True)
    size: Mapped[int] = mapped_column(Integer)
    root: Mapped[str] = mapped_column(String(66))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Filled when the anchoring transaction is sent (submitted).
    chain_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    contract: Mapped[str | None] = mapped_column(String(42), default=None)
    tx_hash: Mapped[str | None] = mapped_column(String(66), default=None)
    tx_nonce: Mapped[int | None] = mapped_column(BigInteger, default=None)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Replacements of a stuck transaction (same nonce, higher fees); bounded.
    fee_bumps: Mapped[int] = mapped_column(Integer, default=0)
    # Filled when the transaction is mined and its event seen (anchored).
    block_number: Mapped[int | None] = mapped_column(BigInteger, default=None)
    block_hash: Mapped[str | None] = mapped_column(String(66), default=None)
    log_index: Mapped[int | None] = mapped_column(Integer, default=None)
    block_timestamp: Mapped[int | None] = mapped_column(BigInteger, default=None)
    anchored_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, default=None)
    final_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # How often this batch had to be anchored again (reorg, dropped tx, chain reset).
    reanchor_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)

    @property
    def anchor(self) -> Anchor | None:
        """The batch's anchor as stored, once it is anchored (whether the chain it
        names is still the current one is :func:`app.services.receipts.public_status`'s call)."""
        if self.status not in (ANCHORED, FINAL):
            return None
        if (
            self.chain_id is None
            or self.contract is None
            or self.tx_hash is None
            or self.block_number is None
            or self.block_hash is None
            or self.log_index is None
            or self.block_timestamp is None
        ):
            raise ValueError(f"batch {self.id} is {self.status} but its anchor is incomplete")
        return Anchor(
            chain_id=self.chain_id,
            contract=self.contract,
            batch_id=self.id,
            root=self.root,
            leaf_count=self.size,
            tx_hash=self.tx_hash,
            block_number=self.block_number,
            block_hash=self.block_hash,
            log_index=self.log_index,
            timestamp=self.block_timestamp,
            gas_used=self.gas_used,
        )

    def mark_anchored(self, anchor: Anchor) -> None:
        """Record ``anchor`` (the chain's own word, for this batch's id and root)."""
        if (anchor.batch_id, anchor.root, anchor.leaf_count) != (self.id, self.root, self.size):
            raise ValueError(
                f"anchor of batch {anchor.batch_id} ({anchor.root}, {anchor.leaf_count} leaves)"
                f" is not batch {self.id}'s ({self.root}, {self.size} leaves)"
            )
        self.status = ANCHORED
        self.chain_id = anchor.chain_id
        self.contract = anchor.contract
        self.tx_hash = anchor.tx_hash
        self.block_number = anchor.block_number
        self.block_hash = anchor.block_hash
        self.log_index = anchor.log_index
        self.block_timestamp = anchor.timestamp
        self.gas_used = anchor.gas_used
        self.anchored_at = utcnow()
        self.last_error = None


class Record(Base):
    """One ledger entry: its canonical bytes, hash and derived columns.

    Written once: its batch membership and proof are rows of their own
    (:class:`BatchEntry`), so sealing inserts narrow rows instead of rewriting
    every record and its indexes (that rewrite was most of the database's
    work per record in bulk ingest).
    """

    __tablename__ = "records"
    __table_args__ = (
        # A record's identity within its schema (app.records.registry): a
        # second record of the same schema and identity (a purchase order's
        # buyer + order number) is refused by the database itself, whatever
        # the schema and however many writers race.
        # Identity first: lookups name many identities of one schema at once
        # (identity = ANY(...)), and with the schema first PostgreSQL read every
        # entry of the schema and filtered them (found with EXPLAIN on a fresh
        # ledger, whose statistics lag).
        Index(
            "uq_records_identity",
            "identity",
            "schema",
            unique=True,
            sqlite_where=text("identity IS NOT NULL"),
            postgresql_where=text("identity IS NOT NULL"),
        ),
        # A filtered list is read in (issued_at, id) order along one of these
        # (GET /v1/purchase-orders): a page is one index range, whatever the
        # filter matches. id breaks ties, so the cursor is exact.
        Index("ix_records_buyer_issued", "buyer_ruc", "issued_at", "id"),
        Index("ix_records_supplier_issued", "supplier_ruc", "issued_at", "id"),
        Index("ix_records_issued", "issued_at", "id"),
        # The pages' search by order number alone (any buyer). The number only:
        # each indexed column costs every write, and a number names a handful
        # of records (its orders at a few buyers and their events).
        Index("ix_records_order_number", "order_number"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    hash: Mapped[str] = mapped_column(Hash32, unique=True)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    schema: Mapped[str] = mapped_column(String(64))
    # Query columns (app.records.registry.RecordColumns): each schema fills
    # those that mean something for it, derived from its bytes.
    buyer_ruc: Mapped[str | None] = mapped_column(String(11))
    order_number: Mapped[str | None] = mapped_column(String(64))
    supplier_ruc: Mapped[str | None] = mapped_column(String(11))
    supplier_name: Mapped[str | None] = mapped_column(String(500))
    buyer_name: Mapped[str | None] = mapped_column(String(500))
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    currency: Mapped[str | None] = mapped_column(String(3))
    total: Mapped[Decimal | None] = mapped_column(Money)
    prev_hash: Mapped[str | None] = mapped_column(String(66), default=None)
    identity: Mapped[str | None] = mapped_column(String(200), default=None)
    # The agency whose key recorded it; None for records brought in by `ancla import`.
    agency_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # "api", or "import:<file name>" for bulk imports by the operator.
    source: Mapped[str] = mapped_column(String(200), default="api")
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingRecord(Base):
    """The queue of records in no batch yet, written with the record itself.

    The sealer takes the lowest ids first and deletes them as it inserts
    their batch entries, in one transaction: a record is always either
    queued here or in a batch, which `ancla verify` checks.
    """

    __tablename__ = "pending_records"

    record_id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False)


class BatchEntry(Base):
    """A record's place in its batch: position and Merkle proof, written at sealing."""

    __tablename__ = "batch_entries"
    __table_args__ = (UniqueConstraint("batch_id", "position"),)

    # A record is in one batch at most.
    record_id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False)
    batch_id: Mapped[int] = mapped_column(BigIntId)
    # Index of the hash in the list the batch's tree was built from (dump order).
    position: Mapped[int] = mapped_column(Integer)
    # The Merkle proof, siblings leaf to root, 32 bytes each.
    proof: Mapped[bytes] = mapped_column(LargeBinary)


class RecordDocument(Base):
    """A file a record binds, by the SHA-256 of its bytes (``GET /v1/documents/{sha256}``).

    Written with the record (its schema says which digests it binds:
    app.records.registry.RecordSchema.documents) and never again.
    """

    __tablename__ = "record_documents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False)


# The one row of chain_target.
CHAIN_TARGET_ID = 1


class ChainTarget(Base):
    """Which chain and contract the batches are anchored on (one row, CHAIN_TARGET_ID).

    The genesis hash identifies the chain beyond its id: a reset dev chain
    keeps id 31337 but not its genesis, and its receipts must not be served.
    """

    __tablename__ = "chain_target"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    genesis_hash: Mapped[str] = mapped_column(String(66))
    contract: Mapped[str] = mapped_column(String(42))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- an independent monitor's own tables (`ancla monitor`, DESIGN §9) ------------------
#
# A monitor's mirror is an Ancla database of its own: the records, batches and batch
# entries it verified against the chain, in the tables above (so `ancla export` reads
# a mirror as it reads a service's database), and these three tables of its progress
# and findings. A service's database leaves them empty.

# The one row of monitor_state.
MONITOR_STATE_ID = 1
# A monitor's batches: anchored on chain and not checked yet; checked, every check
# passed and all its records mirrored; checked, with findings (what verified is mirrored).
SEEN, VERIFIED, FLAWED = "seen", "verified", "flawed"
MONITOR_BATCH_STATUSES = (SEEN, VERIFIED, FLAWED)


class MonitorState(Base):
    """What a monitor watches (one row, MONITOR_STATE_ID) and how far it read the chain."""

    __tablename__ = "monitor_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    genesis_hash: Mapped[str] = mapped_column(String(66))
    contract: Mapped[str] = mapped_column(String(42))
    api_url: Mapped[str] = mapped_column(String(500))
    from_block: Mapped[int] = mapped_column(BigInteger)
    # The last block whose BatchAnchored events are all in monitor_batches (None: none yet).
    scanned_to: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The highest batch id seen anchored (None: none yet).
    last_batch_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MonitorBatch(Base):
    """One batch anchored on chain, as the chain's event tells it, and the monitor's
    verdict on what the service serves of it."""

    __tablename__ = "monitor_batches"

    batch_id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(66))
    leaf_count: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    # How many times its served tree and records were checked.
    checks: Mapped[int] = mapped_column(Integer, default=0)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class MonitorFinding(Base):
    """A finding, once per kind and subject (``fingerprint``), with when it was seen."""

    __tablename__ = "monitor_findings"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    batch_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    record_hash: Mapped[str | None] = mapped_column(String(66), default=None)
    # The order it concerns, as its identity says it ("buyer RUC/order number").
    order_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    message: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    times_seen: Mapped[int] = mapped_column(Integer, default=1)
