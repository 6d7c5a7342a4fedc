"""An independent monitor and mirror of an Ancla service (``ancla monitor``, DESIGN §9).

What a newspaper or an NGO runs to watch a service it does not trust, the way
Certificate Transparency monitors watch logs: it trusts only the chain, fetches
everything else, keeps its own copy, and reports what it finds by kind.

* **The chain says which batches exist.** The registry's ``BatchAnchored`` events
  are read block range by block range (a provider that caps ``eth_getLogs`` is
  asked for halves, as ``ancla verify`` does), and each anchored batch id, root
  and leaf count is noted in the mirror with how far the chain was read, in one
  transaction, so a restart reads on from there.
* **The service is asked for the rest**, over its public API only: each batch's
  tree (``/v1/batches/{id}/tree``) and its records (``/v1/batches/{id}/records``,
  NDJSON, streamed and checked line by line, never held whole). A tree counts
  only if its root is the chain's; a record only if its bytes hash to a leaf.
* **The mirror** (:mod:`app.services.mirror`) is an Ancla database of the
  monitor's own: a batch's verified records, its entries and its verdict are
  committed in one transaction (new batches a group per transaction,
  :meth:`Monitor._check_group`), after every check of the batch ran, so a monitor
  killed at any point never holds a verdict it did not reach and never checks a
  verified batch again as new. Later passes fetch verified batches again (a few
  per pass, the least recently checked first) and compare with the mirror: what
  was once served and later changes or disappears is reported.
* **Findings** (:data:`FINDING_KINDS`) name the batch, the record and the order
  where they apply, and are kept in the mirror once per subject.
* **A service that is down or answers garbage** is asked again with back-off;
  when it still does not answer, a pass stops with :class:`ServiceUnavailable`
  (``--once`` exits 2; ``--follow`` tries again later). A service that answers
  everything else but not one batch's tree or records has a finding about that
  batch instead: one broken batch must not stop the watch of all the others.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

import httpx
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db import dispose_engine, make_session_factory, serialized_writes
from app.models import (
    FLAWED,
    MONITOR_STATE_ID,
    SEEN,
    VERIFIED,
    MonitorBatch,
    MonitorFinding,
    MonitorState,
    Record,
    utcnow,
)
from app.records.registry import schema_named
from app.services import mirror
from app.services.histories import check_chains_of
from app.services.mirror import MirroredRecord, MirrorLock, MirrorRefused, RecordWriter
from ledger.anchors import AnchorEvent
from ledger.chain import ChainClient, Registry
from ledger.errors import ChainError, MerkleError
from ledger.hashing import keccak256, to_hex
from ledger.merkle import LEAF_ENCODING, TREE_FORMAT, MerkleTree

__all__ = [
    "FINDING_KINDS",
    "Finding",
    "Monitor",
    "MonitorError",
    "MonitorMetrics",
    "PassReport",
    "Reported",
    "RetryPolicy",
    "ServiceClient",
    "ServiceUnavailable",
    "open_monitor",
]

log = logging.getLogger("ancla.monitor")

# -- findings ---------------------------------------------------------------------------

TREE_MISMATCH: Final = "tree_mismatch"  # the served tree's root is not the chain's
LEAF_COUNT_MISMATCH: Final = "leaf_count_mismatch"  # the tree's leaves != the event's count
UNPUBLISHED_BATCH: Final = "unpublished_batch"  # anchored, but no tree is served for it
UNPUBLISHED_RECORD: Final = "unpublished_record"  # a leaf whose record is not served
RECORD_MISMATCH: Final = "record_mismatch"  # served bytes that hash to no leaf of the batch
DUPLICATE_RECORD: Final = "duplicate_record"  # a leaf already mirrored in another batch
CHAIN_GAP: Final = "chain_gap"  # batch ids anchored without an event the monitor saw
BROKEN_HISTORY: Final = "broken_history"  # an order's prev links or rules break
ALTERED_RECORD: Final = "altered_record"  # a record once served now served as other bytes
WITHDRAWN_RECORD: Final = "withdrawn_record"  # a record once served no longer served
TREE_CHANGED: Final = "tree_changed"  # a verified batch's served tree changed or went
FINDING_KINDS: Final = (
    TREE_MISMATCH,
    LEAF_COUNT_MISMATCH,
    UNPUBLISHED_BATCH,
    UNPUBLISHED_RECORD,
    RECORD_MISMATCH,
    DUPLICATE_RECORD,
    CHAIN_GAP,
    BROKEN_HISTORY,
    ALTERED_RECORD,
    WITHDRAWN_RECORD,
    TREE_CHANGED,
)

# Findings of one kind listed one by one per batch check; the rest are counted in one
# more finding. A service that withdrew a batch of 10,000 records is one story, not
# 10,000 lines.
LISTED_PER_KIND: Final = 20


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the monitor found wrong, by kind, naming what it concerns."""

    kind: str
    message: str
    batch_id: int | None = None
    record_hash: str | None = None
    # The order it concerns, as its identity says ("buyer RUC/order number").
    order: str | None = None
    # What tells apart two findings of one kind about one batch and record.
    subject: str = ""

    @property
    def fingerprint(self) -> str:
        batch = "" if self.batch_id is None else str(self.batch_id)
        return f"{self.kind}:{batch}:{self.record_hash or ''}:{self.subject}"[:200]

    def stored(self) -> mirror.StoredFinding:
        return mirror.StoredFinding(
            fingerprint=self.fingerprint,
            kind=self.kind,
            batch_id=self.batch_id,
            record_hash=self.record_hash,
            order_ref=self.order,
            message=self.message,
        )


@dataclass(frozen=True, slots=True)
class Reported:
    """A finding as one pass reports it: ``new`` if the mirror had never seen it."""

    finding: Finding
    new: bool

    def to_dict(self) -> dict[str, Any]:
        finding = self.finding
        return {
            "kind": finding.kind,
            "batch_id": finding.batch_id,
            "record_hash": finding.record_hash,
            "order": finding.order,
            "message": finding.message,
            "new": self.new,
        }


class _Findings:
    """The findings of one batch check: at most LISTED_PER_KIND listed per kind."""

    def __init__(self, batch_id: int) -> None:
        self.batch_id = batch_id
        self.listed: list[Finding] = []
        self.counts: dict[str, int] = {}

    def add(
        self,
        kind: str,
        message: str,
        *,
        record_hash: str | None = None,
        order: str | None = None,
        subject: str = "",
        batch_id: int | None = None,
    ) -> None:
        count = self.counts.get(kind, 0) + 1
        self.counts[kind] = count
        if count <= LISTED_PER_KIND:
            self.listed.append(
                Finding(
                    kind,
                    message,
                    batch_id=self.batch_id if batch_id is None else batch_id,
                    record_hash=record_hash,
                    order=order,
                    subject=subject,
                )
            )

    def count(self, kind: str, more: int) -> None:
        """Count ``more`` findings of ``kind`` beyond those listed."""
        if more:
            self.counts[kind] = self.counts.get(kind, 0) + more

    def wants(self, kind: str) -> bool:
        """Whether one more finding of ``kind`` would be listed (else only counted)."""
        return self.counts.get(kind, 0) < LISTED_PER_KIND

    def all(self) -> list[Finding]:
        more = [
            Finding(
                kind,
                f"and {count - LISTED_PER_KIND:,} more {kind} findings in batch {self.batch_id}",
                batch_id=self.batch_id,
                subject="more",
            )
            for kind, count in self.counts.items()
            if count > LISTED_PER_KIND
        ]
        return self.listed + more

    def __bool__(self) -> bool:
        return bool(self.counts)


def _order_of(buyer_ruc: str | None, order_number: str | None) -> str | None:
    if buyer_ruc is None or order_number is None:
        return None
    return f"{buyer_ruc}/{order_number}"


# -- errors -------------------------------------------------------------------------


class MonitorError(Exception):
    """The monitor could not run (exit 2): bad arguments, the mirror refused, the
    service or the chain not answering."""


class ServiceUnavailable(MonitorError):
    """The service did not answer, or answered garbage, every time it was asked."""


# -- asking the service ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and after how long, a request that failed is sent again."""

    attempts: int = 4
    first_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait before attempt ``attempt`` (1 is the first retry)."""
        return float(min(self.max_delay, self.first_delay * 2 ** (attempt - 1)))


class _Transient(Exception):
    """One request failed in a way worth asking again (unreachable, 5xx, 429, garbage)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(reason)
        self.where = where  # "tree" or "records"
        self.reason = reason


def check_api_url(value: str) -> str:
    """An http(s) URL with a host (the service's base URL), or MonitorError."""
    try:
        parts = urlsplit(value)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:
        scheme, host = "", None
    if not host or scheme not in ("http", "https"):
        raise MonitorError(f"--api must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def _problem_detail(response: httpx.Response) -> str:
    """What an error answer says: its problem+json detail, else the start of its body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])[:300]
    return response.content[:120].decode("utf-8", "replace")


class ServiceClient:
    """The service's public API, as the monitor reads it (httpx).

    Answers come back as data or as why not: a 4xx is the service's word about
    that batch (not served); a transport failure, a 5xx, a 429 or a body that is
    not what was asked for is :class:`_Transient`, for the caller to retry.
    """

    def __init__(self, api_url: str, *, http: httpx.Client | None = None, timeout: float = 60.0):
        self.api_url = api_url.rstrip("/")
        self._owned = http is None
        self._http = http or httpx.Client(
            base_url=self.api_url,
            timeout=timeout,
            headers={"User-Agent": "ancla-monitor"},
        )

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def _url(self, path: str) -> str:
        return f"{self.api_url}{path}"

    def _check_status(self, response: httpx.Response, where: str, path: str) -> str | None:
        status = response.status_code
        if status == 200:
            return None
        if status in (408, 429) or status >= 500:
            raise _Transient(where, f"GET {path} answered {status}: {_problem_detail(response)}")
        return f"GET {path} answers {status}: {_problem_detail(response)}"

    def tree(self, batch_id: int) -> tuple[MerkleTree | None, str]:
        """The batch's tree as served, built again from its values (:func:`tree_of`);
        or None and why."""
        path = f"/v1/batches/{batch_id}/tree"
        try:
            response = self._http.get(self._url(path))
        except httpx.HTTPError as exc:
            raise _Transient("tree", f"GET {path}: {type(exc).__name__}: {exc}") from exc
        refused = self._check_status(response, "tree", path)
        if refused is not None:
            return None, refused
        try:
            dump = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _Transient("tree", f"GET {path} answered 200 with no JSON: {exc}") from exc
        try:
            return tree_of(dump), ""
        except MerkleError as exc:
            return None, f"GET {path} answers no standard-v1 tree: {exc}"

    @contextmanager
    def records(self, batch_id: int) -> Iterator[Iterator[bytes] | str]:
        """The batch's records as served, line by line (a line is one record's bytes),
        or why they are not served. Reading is streamed; a stream cut off midway is
        :class:`_Transient`."""
        path = f"/v1/batches/{batch_id}/records"
        try:
            with self._http.stream("GET", self._url(path)) as response:
                if response.status_code != 200:
                    response.read()
                    refused = self._check_status(response, "records", path)
                    yield refused or ""
                    return
                media = response.headers.get("content-type", "").split(";")[0].strip()
                if media != "application/x-ndjson":
                    raise _Transient(
                        "records", f"GET {path} answered 200 with {media or 'no'} content type"
                    )
                yield _lines(response.iter_bytes())
        except httpx.HTTPError as exc:
            raise _Transient("records", f"GET {path}: {type(exc).__name__}: {exc}") from exc

    def answers(self) -> bool:
        """Whether the service answers its batch list with JSON: it is up, and what
        it does not serve of one batch is about that batch."""
        try:
            response = self._http.get(self._url("/v1/batches"), params={"limit": 1})
            body = orjson.loads(response.content) if response.status_code == 200 else None
        except (httpx.HTTPError, orjson.JSONDecodeError):
            return False
        return isinstance(body, dict) and isinstance(body.get("items"), list)


def tree_of(dump: Any) -> MerkleTree:
    """The tree a ``standard-v1`` dump stands for, built again from its values.

    Only the values (the record hashes, in order) are taken from the dump: the tree
    of them is computed here, and the dump's own root must be its root, or
    MerkleError. The dump's inner nodes are not read: they follow from the values,
    and checking them one by one (MerkleTree.load) cost twice the building.
    """
    if not isinstance(dump, dict):
        raise MerkleError("a tree dump must be a JSON object")
    if dump.get("format") != TREE_FORMAT or dump.get("leafEncoding") != list(LEAF_ENCODING):
        raise MerkleError(
            f"not a {TREE_FORMAT} dump of {list(LEAF_ENCODING)} leaves: format "
            f"{dump.get('format')!r}, leaf encoding {dump.get('leafEncoding')!r}"
        )
    nodes, entries = dump.get("tree"), dump.get("values")
    if not isinstance(nodes, list) or not isinstance(entries, list) or not entries:
        raise MerkleError('a tree dump needs "tree" and "values" arrays')
    try:
        values = [entry["value"][0] for entry in entries]
    except (TypeError, KeyError, IndexError):
        raise MerkleError('every value must be {"value": [hash], "treeIndex": n}') from None
    tree = MerkleTree.of(values)
    if len(nodes) != 2 * len(values) - 1 or nodes[0] != tree.root:
        raise MerkleError(
            f"its tree of {len(nodes)} nodes, root {str(nodes[:1])[:70]}, is not the tree "
            f"of its {len(values)} values (root {tree.root})"
        )
    return tree


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines of a byte stream, without their newlines."""
    rest = b""
    for chunk in chunks:
        if rest:
            chunk = rest + chunk
        lines = chunk.split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


# -- metrics ---------------------------------------------------------------------------


class MonitorMetrics:
    """The monitor's Prometheus metrics, in a registry of their own (``--metrics-port``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.blocks_scanned = Counter(
            "ancla_monitor_blocks_scanned",
            "Blocks whose BatchAnchored events were read",
            registry=self.registry,
        )
        self.scanned_to = Gauge(
            "ancla_monitor_scanned_block", "The last block read", registry=self.registry
        )
        self.batches_verified = Counter(
            "ancla_monitor_batches_verified",
            "Batches verified and mirrored whole",
            registry=self.registry,
        )
        self.batches_checked = Counter(
            "ancla_monitor_batches_checked",
            "Batch checks (first and repeated)",
            registry=self.registry,
        )
        self.records_mirrored = Counter(
            "ancla_monitor_records_mirrored",
            "Records verified and written to the mirror",
            registry=self.registry,
        )
        self.findings = Counter(
            "ancla_monitor_findings",
            "Findings first seen, by kind",
            labelnames=("kind",),
            registry=self.registry,
        )
        for kind in FINDING_KINDS:
            self.findings.labels(kind=kind)
        self.service_errors = Counter(
            "ancla_monitor_service_errors",
            "Requests to the service that failed and were retried",
            registry=self.registry,
        )
        self.passes_failed = Counter(
            "ancla_monitor_passes_failed",
            "Passes stopped because the service or the chain did not answer",
            registry=self.registry,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve /metrics on ``port`` (a thread of prometheus_client's)."""
        start_http_server(port, addr=host, registry=self.registry)


# -- one pass ---------------------------------------------------------------------------


@dataclass
class PassReport:
    """What one pass did and found."""

    scanned_from: int | None = None
    scanned_to: int | None = None
    blocks_scanned: int = 0
    batches_checked: int = 0
    batches_verified: int = 0
    batches_rechecked: int = 0
    records_mirrored: int = 0
    findings: list[Reported] = field(default_factory=list)
    # Why the pass stopped before its end (the service or the chain did not answer).
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": not self.findings and self.error is None,
            "scanned_from": self.scanned_from,
            "scanned_to": self.scanned_to,
            "blocks_scanned": self.blocks_scanned,
            "batches_checked": self.batches_checked,
            "batches_verified": self.batches_verified,
            "batches_rechecked": self.batches_rechecked,
            "records_mirrored": self.records_mirrored,
            "findings": [reported.to_dict() for reported in self.findings],
            "error": self.error,
        }


# Blocks asked per eth_getLogs: public providers cap ranges at 1,000-10,000 blocks
# (a refused range is asked again in halves: ledger.chain.Registry.find_anchor_events).
BLOCKS_PER_QUERY: Final = 10_000
# Verified records written per statement group, and so never more held in memory.
RECORDS_PER_WRITE: Final = 2_000
# Chunks of RECORDS_PER_WRITE read, hashed and parsed ahead of the one being written.
READ_AHEAD_CHUNKS: Final = 2
# New batches are checked in groups of at most this many records (a batch larger than
# that is a group alone) and batches per transaction of the mirror
# (Monitor._check_group): what a killed monitor checks again, at most.
RECORDS_PER_TRANSACTION: Final = 50_000
BATCHES_PER_TRANSACTION: Final = 8
# Lines that hash to no leaf, kept (with their bytes for the first few) to say which
# leaf each one stands in for.
_STRAYS_KEPT: Final = 10_000


@dataclass(frozen=True, slots=True)
class _Anchored:
    """A batch as the chain anchored it, and the monitor's verdict so far."""

    event: AnchorEvent
    status: str

    @property
    def batch_id(self) -> int:
        return self.event.batch_id


@dataclass
class _Outcome:
    findings: list[Finding]
    new: list[bool]
    verified_now: bool
    written: int


Emit = Callable[[Reported], None]


class _Reading:
    """One reading of a batch's records, in a thread of its own: each line hashed and
    matched to its leaf, and the records to mirror handed over in chunks of
    RECORDS_PER_WRITE, at most READ_AHEAD_CHUNKS of them waiting to be taken.

    ``expected`` (the leaves, in order) and ``mirrored`` (the hashes of the batch the
    mirror holds already, not written again) are what the reading was made for: a
    reading started ahead of its batch's check is used only if they are what the
    check itself finds (:meth:`made_for`). A failure of the service (_Transient) is
    raised to whoever takes the chunks, as if they had read the lines themselves.
    """

    _END: Final = object()

    def __init__(
        self,
        service: ServiceClient,
        batch_id: int,
        expected: list[bytes],
        mirrored: set[bytes],
    ) -> None:
        self.batch_id = batch_id
        self.expected = expected
        self.mirrored = mirrored
        # Filled in by the thread, read once the last chunk was taken.
        self.served = bytearray(len(expected))
        self.strays: dict[int, bytes] = {}  # line index -> the hash of a line that is no leaf
        self.stray_bytes: dict[int, bytes] = {}
        self.extra = 0
        self.cut_off = False
        self.why: str | None = None
        self._service = service
        self._chunks: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD_CHUNKS)
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"monitor-read-{batch_id}", daemon=True
        )
        self._thread.start()

    def made_for(self, expected: list[bytes], mirrored: set[bytes]) -> bool:
        return self.expected == expected and self.mirrored == mirrored

    def chunks(self) -> Iterator[list[MirroredRecord]]:
        """The records to mirror, chunk by chunk, in the order they were served."""
        while True:
            item = self._chunks.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop reading (the service's answer is closed) and wait for the thread."""
        self._closed.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._chunks.get(timeout=0.05)
        self._thread.join()

    def _hand(self, item: Any) -> bool:
        """Hand ``item`` over, waiting for room; False once the reading was closed."""
        while not self._closed.is_set():
            try:
                self._chunks.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with self._service.records(self.batch_id) as answer:
                if isinstance(answer, str):
                    self.why = answer
                elif not self._read(answer):
                    return
        except BaseException as exc:  # noqa: BLE001 - raised again by chunks()
            self._hand(exc)
            return
        self._hand(self._END)

    def _read(self, lines: Iterator[bytes]) -> bool:
        expected, mirrored, served = self.expected, self.mirrored, self.served
        strays, stray_bytes = self.strays, self.stray_bytes
        leaf_of = {digest: position for position, digest in enumerate(expected)}.get
        most = len(expected) + _STRAYS_KEPT
        pending: list[MirroredRecord] = []
        for line_number, line in enumerate(lines):
            if line_number >= most:
                self.cut_off = True
                break
            digest = keccak256(line)
            position = leaf_of(digest)
            if position is None:
                if len(strays) < _STRAYS_KEPT:
                    strays[line_number] = digest
                    if len(stray_bytes) < LISTED_PER_KIND:
                        stray_bytes[line_number] = line
                else:
                    self.extra += 1
                continue
            if served[position]:
                continue
            served[position] = 1
            if digest in mirrored:
                continue
            pending.append(mirror.record_row(position, digest, line, _loads(line)))
            if len(pending) >= RECORDS_PER_WRITE:
                if not self._hand(pending):
                    return False
                pending = []
        return not pending or self._hand(pending)


@dataclass(frozen=True, slots=True)
class _Prefetched:
    """What was asked for ahead of one batch's check (:meth:`_Ahead.taking`): its tree
    being fetched, its records being read (or None for either: the check asks for
    them), and what to call once its records were all read: the next batch's reading."""

    tree: Future[tuple[MerkleTree | None, str]] | None
    reading: _Reading | None
    then: Callable[[], None]


class _Ahead:
    """What the monitor asks for ahead of the batch it checks, in a list of batches:
    the next batch's tree (in the fetcher thread) as each batch is taken, so that the
    service builds it while this one is checked; and, once a new batch's records were
    all read, the next new batch's records (a _Reading), so that they are read and
    hashed while this one's last chunk is written and its verdict made (a batch's
    first chunk, the wait for the service's answer and the mirror's reads before it
    had left the mirror's writer idle for a fifth of a catch-up, measured)."""

    def __init__(
        self, fetcher: ThreadPoolExecutor, service: ServiceClient, batches: list[_Anchored]
    ) -> None:
        self._fetcher = fetcher
        self._service = service
        self._batches = batches
        self._tree: tuple[int, Future[tuple[MerkleTree | None, str]]] | None = None
        self._reading: tuple[int, _Reading] | None = None

    def take(
        self, index: int
    ) -> tuple[Future[tuple[MerkleTree | None, str]] | None, _Reading | None]:
        """The tree of ``batches[index]`` being fetched and its records being read, or
        None for either (then ask for it); the next batch's tree is asked for."""
        tree = None
        if self._tree is not None and self._tree[0] == index:
            tree = self._tree[1]
        self._tree = None
        reading = None
        if self._reading is not None and self._reading[0] == index:
            reading = self._reading[1]
        else:
            self._drop_reading()
        self._reading = None
        following = index + 1
        if following < len(self._batches):
            batch_id = self._batches[following].batch_id
            self._tree = (following, self._fetcher.submit(self._service.tree, batch_id))
        return tree, reading

    @contextmanager
    def taking(self, index: int) -> Iterator[_Prefetched]:
        """:meth:`take`, for the check of ``batches[index]``; its reading closed after."""
        tree, reading = self.take(index)
        try:
            yield _Prefetched(tree, reading, partial(self.read, index + 1))
        finally:
            if reading is not None:
                reading.close()

    def read(self, index: int) -> None:
        """Start reading the records of ``batches[index]`` if it is new and its tree
        (waited for: its check would wait for it next) is the chain's: what its check
        would read them against. A tree the service failed to give is asked for again
        by the check, which reads the records itself then."""
        if index >= len(self._batches) or self._tree is None or self._tree[0] != index:
            return
        anchored, tree = self._batches[index], self._tree[1]
        if anchored.status != SEEN or tree.exception() is not None:
            return
        served, _ = tree.result()
        if served is None or served.root != anchored.event.root:
            return
        self._drop_reading()
        expected = served.digests
        self._reading = (index, _Reading(self._service, anchored.batch_id, expected, set()))

    def close(self) -> None:
        self._drop_reading()

    def _drop_reading(self) -> None:
        if self._reading is not None:
            self._reading[1].close()
            self._reading = None


class Monitor:
    """Watches one service against one registry, into one mirror (see the module)."""

    def __init__(
        self,
        *,
        engine: Engine,
        service: ServiceClient,
        chain: ChainClient,
        registry: Registry,
        from_block: int = 0,
        confirmations: int = 1,
        recheck: int = 10,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, never mutated
        metrics: MonitorMetrics | None = None,
        on_finding: Emit | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.sessions = make_session_factory(engine)
        self.service = service
        self.chain = chain
        self.registry = registry
        self.from_block = from_block
        self.confirmations = confirmations
        self.recheck = recheck
        self.retry = retry
        self.metrics = metrics or MonitorMetrics()
        self.on_finding = on_finding
        self.sleep = sleep
        self.lock = MirrorLock(engine)
        self.chain_id = 0
        # One thread asks for the next batch's tree, one writes verified records into
        # the mirror while the next ones are read and hashed (by a _Reading's thread;
        # SQLite and psycopg let go of the GIL while the database works); at most one
        # of each at a time.
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-fetch")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-write")

    # -- life -------------------------------------------------------------------------

    def start(self) -> None:
        """Take the mirror (one monitor at a time) and check that it follows this chain
        and contract; MirrorRefused, MonitorError or ChainError otherwise."""
        self.chain_id = self.chain.chain_id
        genesis = self.chain.genesis_hash()
        if not self.chain.code_at(self.registry.address):
            raise MonitorError(
                f"there is no contract at {self.registry.address} on chain {self.chain_id}"
            )
        self.lock.acquire()
        try:
            with self.sessions() as session, session.begin():
                mirror.open_state(
                    session,
                    chain_id=self.chain_id,
                    genesis_hash=genesis,
                    contract=self.registry.address,
                    api_url=self.service.api_url,
                    from_block=self.from_block,
                )
        except BaseException:
            self.lock.release()
            raise

    def close(self) -> None:
        self._fetcher.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True, cancel_futures=True)
        self.lock.release()
        self.service.close()
        dispose_engine(self.engine)

    def follow(self, *, stop: threading.Event, interval: float) -> None:
        """Passes until ``stop`` is set, ``interval`` seconds apart; a pass the service
        or the chain stopped is tried again after a longer and longer wait."""
        failures = 0
        while not stop.is_set():
            report = self.run_pass(stop=stop)
            if report.error is None:
                failures = 0
                wait = interval
            else:
                failures += 1
                wait = min(self.retry.max_delay * 10, interval * 2 ** min(failures - 1, 10))
                log.warning("pass stopped: %s; next pass in %.1f s", report.error, wait)
            stop.wait(wait)

    def run_pass(self, *, stop: threading.Event | None = None) -> PassReport:
        """One pass: read the chain on from where the mirror left it; check every batch
        not checked yet; check again every batch whose last check had findings (a
        problem that lasts is reported at every pass, and one the service repairs is
        verified then); then fetch again up to ``recheck`` verified batches, the least
        recently checked first, and compare them with the mirror."""
        report = PassReport()
        started = utcnow()
        try:
            self._scan(report)
            new = list(self._batches("new", before=started))
            if not self._check_each(new, report, stop, again=False):
                return report
            for which, limit in (("open", None), ("recheck", self.recheck)):
                if limit == 0:
                    continue
                batches = list(self._batches(which, before=started, limit=limit))
                if not self._check_each(batches, report, stop, again=True):
                    return report
        except (MonitorError, ChainError) as exc:
            self.metrics.passes_failed.inc()
            report.error = str(exc)
        return report

    def _check_each(
        self,
        batches: list[_Anchored],
        report: PassReport,
        stop: threading.Event | None,
        *,
        again: bool,
    ) -> bool:
        """Check ``batches`` in order, each batch's tree asked for while the one before
        it is checked (the service builds a tree of 10,000 leaves in about 0.1 s, a wait
        the monitor would otherwise spend idle) and a new batch's records read while the
        one before it is finished (:class:`_Ahead`). New batches are checked a group at
        a time (:meth:`_check_group`), checked ones again one by one. False if ``stop``
        was set."""
        ahead = _Ahead(self._fetcher, self.service, batches)
        try:
            return self._check_in_turn(batches, ahead, report, stop, again=again)
        finally:
            ahead.close()

    def _check_in_turn(
        self,
        batches: list[_Anchored],
        ahead: _Ahead,
        report: PassReport,
        stop: threading.Event | None,
        *,
        again: bool,
    ) -> bool:
        index = 0
        while index < len(batches):
            if stop is not None and stop.is_set():
                return False
            if again:
                with _collected_after(), ahead.taking(index) as prefetched:
                    self._check(batches[index], report, prefetched=prefetched)
                report.batches_rechecked += 1
                index += 1
                continue
            end = index + 1
            records = batches[index].event.leaf_count
            while (
                end < len(batches)
                and end - index < BATCHES_PER_TRANSACTION
                and records + batches[end].event.leaf_count <= RECORDS_PER_TRANSACTION
            ):
                records += batches[end].event.leaf_count
                end += 1
            with _collected_after():
                self._check_group(batches[index:end], index, ahead, report)
            index = end
        return True

    def _check_group(
        self, group: list[_Anchored], first: int, ahead: _Ahead, report: PassReport
    ) -> None:
        """Check new batches in one transaction of the mirror, each with its verdict, and
        report them once it is committed. A mirror of a million records spent a third of
        its SQLite time in commits of one batch each: each dirtied a share of its random
        hash and document keys' index pages that grows with the mirror, and a group
        dirties the same pages once for several batches (bench/sqlite_growth.py). A
        failure to be asked again (a _Transient) rolls the whole group back, and its
        batches are then checked one by one, each asked again with back-off."""
        if len(group) == 1:
            with ahead.taking(first) as prefetched:
                self._check(group[0], report, prefetched=prefetched)
            report.batches_checked += 1
            return
        outcomes: list[_Outcome] = []
        try:
            with self.sessions() as session, session.begin(), serialized_writes(session):
                for offset, anchored in enumerate(group):
                    with ahead.taking(first + offset) as prefetched:
                        outcomes.append(self._check_in(session, anchored, {}, prefetched))
        except _Transient as exc:
            self.metrics.service_errors.inc()
            log.warning(
                "batches %d-%d: %s; checking them one by one",
                group[0].batch_id,
                group[-1].batch_id,
                exc,
            )
            for anchored in group:
                self._check(anchored, report)
                report.batches_checked += 1  # counted as each commits: the next may stop the pass
            return
        for anchored, outcome in zip(group, outcomes, strict=True):
            self._report(anchored, outcome, report)
        report.batches_checked += len(group)

    # -- the chain ---------------------------------------------------------------------

    def _state(self, session: Session) -> MonitorState:
        state = session.get(MonitorState, MONITOR_STATE_ID)
        if state is None:  # pragma: no cover - start() makes it
            raise MonitorError("the mirror has no monitor state; call start() first")
        return state

    def _scan(self, report: PassReport) -> None:
        with self.sessions() as session:
            state = self._state(session)
            start = state.from_block if state.scanned_to is None else state.scanned_to + 1
        to_block = self.chain.head() - self.confirmations + 1
        report.scanned_to = to_block
        if to_block < start:
            return
        report.scanned_from = start
        while start <= to_block:
            end = min(to_block, start + BLOCKS_PER_QUERY - 1)
            events = sorted(
                self.registry.find_anchor_events(from_block=start, to_block=end),
                key=lambda e: (e.block_number, e.log_index),
            )
            with self.sessions() as session, session.begin():
                gaps = self._note_events(session, events, end=end, last_page=end == to_block)
                new = mirror.upsert_findings(session, [gap.stored() for gap in gaps])
            for gap, is_new in zip(gaps, new, strict=True):
                self._emit(Reported(gap, is_new), report)
            report.blocks_scanned += end - start + 1
            self.metrics.blocks_scanned.inc(end - start + 1)
            self.metrics.scanned_to.set(end)
            start = end + 1

    def _note_events(
        self, session: Session, events: Sequence[AnchorEvent], *, end: int, last_page: bool
    ) -> list[Finding]:
        """Note the anchored batches of one block range; the gaps in their ids."""
        state = self._state(session)
        gaps: list[Finding] = []
        for event in events:
            last = state.last_batch_id
            if last is not None and event.batch_id <= last:
                log.warning(
                    "batch %d is anchored again at block %d (tx %s); the first anchor stands",
                    event.batch_id,
                    event.block_number,
                    event.tx_hash,
                )
                continue
            # From block 0 every id from 1 on is seen; from a later block, the first
            # id seen is where this mirror starts.
            expected = last + 1 if last is not None else 1 if state.from_block == 0 else None
            if expected is not None and event.batch_id > expected:
                gaps.append(
                    _gap(
                        expected,
                        event.batch_id - 1,
                        f"no BatchAnchored event is on chain for them before batch "
                        f"{event.batch_id} (block {event.block_number})",
                    )
                )
            session.add(
                MonitorBatch(
                    batch_id=event.batch_id,
                    root=event.root,
                    leaf_count=event.leaf_count,
                    tx_hash=event.tx_hash,
                    block_number=event.block_number,
                    block_hash=event.block_hash,
                    log_index=event.log_index,
                    status=SEEN,
                    checks=0,
                )
            )
            state.last_batch_id = event.batch_id
        state.scanned_to = end
        state.updated_at = utcnow()
        if last_page:
            gaps += self._count_check(state, end)
        return gaps

    def _count_check(self, state: MonitorState, end: int) -> list[Finding]:
        """The registry's own count at the last block read: every id below its next
        batch id was anchored, so an id with no event seen is a gap in what the RPC
        endpoint's logs show."""
        if state.last_batch_id is None and state.from_block != 0:
            return []
        try:
            next_id = self.registry.next_batch_id(block=end)
        except ChainError as exc:
            log.warning("cannot read the registry's nextBatchId at block %d: %s", end, exc)
            return []
        seen = state.last_batch_id or 0
        if next_id - 1 <= seen:
            return []
        return [
            _gap(
                seen + 1,
                next_id - 1,
                f"the registry counts {next_id - 1} batches anchored by block {end}, "
                f"but the chain's logs showed events up to batch {seen} only",
            )
        ]

    def _batches(
        self, which: str, *, before: datetime, limit: int | None = None
    ) -> Iterator[_Anchored]:
        """Batches to check: "new" (never checked), "open" (findings at their last
        check) or "recheck" (verified, clean at their last check), checked before
        ``before``; new ones in id order, the others least recently checked first."""
        last_check_found = (
            select(MonitorFinding.id)
            .where(
                MonitorFinding.batch_id == MonitorBatch.batch_id,
                MonitorFinding.last_seen_at >= MonitorBatch.checked_at,
            )
            .exists()
        )
        query = select(MonitorBatch)
        if which == "new":
            query = query.where(MonitorBatch.status == SEEN).order_by(MonitorBatch.batch_id)
        else:
            query = query.where(MonitorBatch.checked_at < before).order_by(
                MonitorBatch.checked_at, MonitorBatch.batch_id
            )
            if which == "open":
                query = query.where((MonitorBatch.status == FLAWED) | last_check_found)
            else:
                query = query.where(MonitorBatch.status == VERIFIED, ~last_check_found)
        if limit is not None:
            query = query.limit(limit)
        with self.sessions() as session:
            contract = self._state(session).contract
            rows = [
                _Anchored(
                    AnchorEvent(
                        contract=contract,
                        batch_id=row.batch_id,
                        root=row.root,
                        leaf_count=row.leaf_count,
                        tx_hash=row.tx_hash,
                        block_number=row.block_number,
                        block_hash=row.block_hash,
                        log_index=row.log_index,
                    ),
                    row.status,
                )
                for row in session.scalars(query)
            ]
        yield from rows

    # -- one batch ---------------------------------------------------------------------

    def _check(
        self,
        anchored: _Anchored,
        report: PassReport,
        *,
        prefetched: _Prefetched | None = None,
    ) -> None:
        """Check one batch, asking the service again with back-off when it fails; if it
        answers everything but this batch, that is a finding about this batch.
        ``prefetched``: what was asked for ahead of it, for the first attempt."""
        outcome = None
        failure: _Transient | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                wait = self.retry.delay(attempt)
                log.warning(
                    "batch %d: %s; asking again in %.1f s (attempt %d of %d)",
                    anchored.batch_id,
                    failure,
                    wait,
                    attempt + 1,
                    self.retry.attempts,
                )
                self.sleep(wait)
            try:
                outcome = self._check_once(anchored, {}, None if attempt else prefetched)
                break
            except _Transient as exc:
                self.metrics.service_errors.inc()
                failure = exc
        if outcome is None:
            assert failure is not None  # noqa: S101 - attempts >= 1
            if not self.service.answers():
                self._unavailable(failure)
            try:
                outcome = self._check_once(anchored, {failure.where: failure.reason})
            except _Transient as exc:
                outcome = self._check_once(anchored, {"tree": exc.reason, "records": exc.reason})
        self._report(anchored, outcome, report)

    def _report(self, anchored: _Anchored, outcome: _Outcome, report: PassReport) -> None:
        """A batch's check, committed: counted, logged, its findings emitted."""
        self.metrics.batches_checked.inc()
        self.metrics.records_mirrored.inc(outcome.written)
        report.records_mirrored += outcome.written
        if outcome.verified_now:
            report.batches_verified += 1
            self.metrics.batches_verified.inc()
        log.info(
            "batch %d: %s, %d records mirrored, %d findings",
            anchored.batch_id,
            "verified" if outcome.verified_now else "checked",
            outcome.written,
            len(outcome.findings),
        )
        for finding, is_new in zip(outcome.findings, outcome.new, strict=True):
            self._emit(Reported(finding, is_new), report)

    def _unavailable(self, failure: _Transient) -> NoReturn:
        raise ServiceUnavailable(
            f"the service at {self.service.api_url} does not answer "
            f"({self.retry.attempts} attempts): {failure.reason}"
        )

    def _emit(self, reported: Reported, report: PassReport) -> None:
        report.findings.append(reported)
        if reported.new:
            self.metrics.findings.labels(kind=reported.finding.kind).inc()
        if self.on_finding is not None:
            self.on_finding(reported)

    def _check_once(
        self,
        anchored: _Anchored,
        unavailable: Mapping[str, str],
        prefetched: _Prefetched | None = None,
    ) -> _Outcome:
        """One check of one batch, in one transaction of the mirror: committed whole
        with its verdict, or not at all (a _Transient failure rolls it back).

        ``unavailable`` says what not to ask for again, and why ("tree", "records").
        """
        # serialized_writes: on SQLite, the service's write cache for the transaction.
        # (It pokes the checkpointer thread on its way out, before this commit; a
        # group's WAL passes SQLite's autocheckpoint threshold, so the commit copies
        # it back itself. Poking after the commit, with a higher threshold for the
        # mirror, measured no gain: bench/README.)
        with self.sessions() as session, session.begin(), serialized_writes(session):
            return self._check_in(session, anchored, unavailable, prefetched)

    def _check_in(
        self,
        session: Session,
        anchored: _Anchored,
        unavailable: Mapping[str, str],
        prefetched: _Prefetched | None = None,
    ) -> _Outcome:
        """One check of one batch in the open transaction of ``session``: its records,
        entries, verdict and findings written there, committed by the caller.

        ``prefetched``: its tree being fetched and its records being read already (a
        reading used only if made for the leaves and mirrored records found here), and
        what to call once its records were all read, while the last are written."""
        tree = prefetched.tree if prefetched is not None else None
        event = anchored.event
        batch_id = event.batch_id
        found = _Findings(batch_id)
        # The block's time, for the mirror's batch row.
        timestamp = (
            None if anchored.status == VERIFIED else self.chain.block_timestamp(event.block_hash)
        )
        row = session.get(MonitorBatch, batch_id)
        assert row is not None  # noqa: S101 - _batches() read it
        held = mirror.batch_hashes(session, batch_id)
        served: MerkleTree | None
        if "tree" in unavailable:
            served, why = None, unavailable["tree"]
        elif tree is not None:
            served, why = tree.result()
        else:
            served, why = self.service.tree(batch_id)
        proofs: Sequence[bytes] = ()
        if row.status == VERIFIED:
            # The mirror holds the batch whole, verified: it is what was served.
            expected = [held[position] for position in range(len(held))]
            _compare_trees(found, event, served, why, expected)
        else:
            if served is None:
                found.add(
                    UNPUBLISHED_BATCH,
                    f"batch {batch_id} is anchored on chain (root {event.root}, block "
                    f"{event.block_number}) but the service serves no tree for it: {why}",
                )
                return self._finish(session, row, found, complete=False, written=0)
            if served.root != event.root:
                found.add(
                    TREE_MISMATCH,
                    f"batch {batch_id}: the service's tree has root {served.root}, "
                    f"the chain anchored {event.root} (block {event.block_number})",
                )
                return self._finish(session, row, found, complete=False, written=0)
            if len(served) != event.leaf_count:
                found.add(
                    LEAF_COUNT_MISMATCH,
                    f"batch {batch_id}: the service's tree has {len(served)} leaves, the "
                    f"chain's event says {event.leaf_count}",
                )
            expected = served.digests
            proofs = served.proof_bytes()
            assert timestamp is not None  # noqa: S101 - not VERIFIED
            mirror.add_batch_row(
                session, event, chain_id=self.chain_id, size=len(served), timestamp=timestamp
            )
            session.flush()
        writer = RecordWriter(session, batch_id=batch_id, proofs=proofs)
        chained = self._read_records(
            session,
            found,
            batch_id,
            expected,
            held,
            writer,
            unavailable.get("records"),
            reading=prefetched.reading if prefetched is not None else None,
            then=prefetched.then if prefetched is not None else None,
        )
        self._check_histories(session, found, chained)
        complete = len(held) + writer.written == len(expected)
        return self._finish(session, row, found, complete=complete, written=writer.written)

    def _finish(
        self, session: Session, row: MonitorBatch, found: _Findings, *, complete: bool, written: int
    ) -> _Outcome:
        now = utcnow()
        row.checks += 1
        row.checked_at = now
        verified_now = False
        if row.status != VERIFIED:
            if complete and not found:
                row.status = VERIFIED
                row.verified_at = now
                verified_now = True
            else:
                row.status = FLAWED
        findings = found.all()
        new = mirror.upsert_findings(session, [finding.stored() for finding in findings])
        return _Outcome(findings, new, verified_now, written)

    def _read_records(
        self,
        session: Session,
        found: _Findings,
        batch_id: int,
        expected: list[bytes],
        held: dict[int, bytes],
        writer: RecordWriter,
        unavailable: str | None,
        *,
        reading: _Reading | None = None,
        then: Callable[[], None] | None = None,
    ) -> dict[str, set[tuple[Any, ...]]]:
        """Stream the batch's records, write those that hash to a leaf and are not
        mirrored yet, and name every leaf not served; the chains the new ones extend."""
        mirrored = set(held.values())
        chained: dict[str, set[tuple[Any, ...]]] = {}
        # The chunk being written by the writer thread, while the next one is read.
        writing: tuple[list[MirroredRecord], Future[list[MirroredRecord]]] | None = None

        def settle() -> None:
            nonlocal writing
            if writing is not None:
                rows, future = writing
                writing = None
                self._written(found, writer, rows, future.result(), chained)

        def write(rows: list[MirroredRecord]) -> None:
            nonlocal writing
            settle()
            if rows:
                writing = (rows, self._writer.submit(writer.flush, rows))

        if unavailable is not None:
            why: str | None = unavailable
            served = bytearray(len(expected))
            strays: dict[int, bytes] = {}
            stray_bytes: dict[int, bytes] = {}
            extra, cut_off = 0, False
        else:
            own = None
            if reading is None or not reading.made_for(expected, mirrored):
                reading = own = _Reading(self.service, batch_id, expected, mirrored)
            try:
                with _settled(lambda: writing):
                    for chunk in reading.chunks():
                        write(chunk)
                    if then is not None:
                        then()
                    settle()
            finally:
                if own is not None:
                    own.close()
            why, served, strays = reading.why, reading.served, reading.strays
            stray_bytes, extra, cut_off = reading.stray_bytes, reading.extra, reading.cut_off
        self._name_missing(session, found, batch_id, expected, served, mirrored, strays, why)
        for line_number, digest in strays.items():
            if line_number < len(expected) and not served[line_number]:
                continue  # named above, as the leaf it stands in for
            if found.wants(RECORD_MISMATCH):
                found.add(
                    RECORD_MISMATCH,
                    f"line {line_number + 1} of batch {batch_id}'s records hashes to "
                    f"{to_hex(digest)}, which is no leaf of the batch",
                    record_hash=to_hex(digest),
                    order=_claimed_order(stray_bytes.get(line_number)),
                    subject=f"line {line_number + 1}",
                )
            else:
                found.count(RECORD_MISMATCH, 1)
        found.count(RECORD_MISMATCH, extra)
        if cut_off:
            found.add(
                RECORD_MISMATCH,
                f"batch {batch_id}'s records go on beyond {len(expected) + _STRAYS_KEPT:,} "
                "lines, more than its tree has leaves; the rest was not read",
                subject="cut off",
            )
        return chained

    def _name_missing(
        self,
        session: Session,
        found: _Findings,
        batch_id: int,
        expected: list[bytes],
        served: bytearray,
        mirrored: set[bytes],
        strays: dict[int, bytes],
        why: str | None,
    ) -> None:
        """A finding for each leaf no line hashed to: withdrawn or altered if the
        mirror holds its record (it was served before), else unpublished or mismatched."""
        missing = [position for position, done in enumerate(served) if not done]
        if not missing:
            return
        listed_held = [
            to_hex(expected[position]) for position in missing if expected[position] in mirrored
        ][: 2 * LISTED_PER_KIND]
        orders = mirror.orders_of(session, listed_held)
        for position in missing:
            digest = expected[position]
            record_hash = to_hex(digest)
            stand_in = strays.get(position)
            before = digest in mirrored
            kind = (
                (ALTERED_RECORD if stand_in is not None else WITHDRAWN_RECORD)
                if before
                else (RECORD_MISMATCH if stand_in is not None else UNPUBLISHED_RECORD)
            )
            if not found.wants(kind):
                found.count(kind, 1)
                continue
            where = f"record {record_hash} (leaf {position} of batch {batch_id})"
            if kind == ALTERED_RECORD:
                message = (
                    f"{where}, mirrored when it was served, is now served as bytes that "
                    f"hash to {to_hex(stand_in or b'')}"
                )
            elif kind == WITHDRAWN_RECORD:
                message = f"{where}, mirrored when it was served, is no longer served" + (
                    f": {why}" if why else ""
                )
            elif kind == RECORD_MISMATCH:
                message = (
                    f"line {position + 1} of batch {batch_id}'s records hashes to "
                    f"{to_hex(stand_in or b'')}, not to its leaf's record {record_hash}"
                )
            else:
                message = f"{where} is anchored but not served" + (
                    f": {why}" if why else " among the batch's records"
                )
            order = _order_of(*orders.get(record_hash, (None, None))) if before else None
            found.add(kind, message, record_hash=record_hash, order=order)

    def _written(
        self,
        found: _Findings,
        writer: RecordWriter,
        rows: list[MirroredRecord],
        refused: list[MirroredRecord],
        chained: dict[str, set[tuple[Any, ...]]],
    ) -> None:
        """After verified records were written (:meth:`RecordWriter.flush`): those the
        mirror refused are a record it holds in another batch, or a second record of one
        identity, each a finding; the second is written without its identity (the unique
        index keeps the first). Notes the histories the written ones extend."""
        if refused:
            taken_hashes, taken_identities = writer.taken(refused)
            again: list[MirroredRecord] = []
            identities: set[tuple[str, str]] = set()
            duplicates: list[str] = []
            for row in refused:
                if row.digest in taken_hashes:
                    duplicates.append(to_hex(row.digest))
                    continue
                identity = row.columns.identity
                if identity is not None:
                    key = (row.schema_name, identity)
                    if key in taken_identities or key in identities:
                        row = mirror.without_identity(row)
                        if row.schema is not None and row.schema.chain is None:
                            found.add(
                                BROKEN_HISTORY,
                                f"{row.schema.describe(row.columns)} is recorded twice: "
                                f"{to_hex(row.digest)} is a second record of it",
                                record_hash=to_hex(row.digest),
                                order=_order_of(row.columns.buyer_ruc, row.columns.order_number),
                                subject="recorded twice",
                            )
                    else:
                        identities.add(key)
                again.append(row)
            if writer.flush(again):  # pragma: no cover - what taken() let through goes in
                raise RuntimeError("the mirror refused records its indexes do not hold")
            elsewhere = mirror.batches_of(writer.session, duplicates)
            for record_hash in duplicates:
                found.add(
                    DUPLICATE_RECORD,
                    f"record {record_hash} of batch {writer.batch_id} is mirrored in batch "
                    f"{elsewhere.get(record_hash, '?')} already: a record is in one batch at most",
                    record_hash=record_hash,
                )
            skipped = {to_hex(d) for d in taken_hashes}
            rows = [row for row in rows if to_hex(row.digest) not in skipped]
        for row in rows:
            schema = row.schema
            if schema is not None and schema.chain is not None:
                key = tuple(getattr(row.columns, name) for name in schema.chain.chain_columns)
                if None not in key:
                    chained.setdefault(schema.name, set()).add(key)

    def _check_histories(
        self, session: Session, found: _Findings, chained: dict[str, set[tuple[Any, ...]]]
    ) -> None:
        """Fold every history a record of this batch extends, from the mirror (its
        earlier records came with earlier batches), by the history's own rules."""
        reports: list[tuple[str, str, str | None, str | None]] = []

        def add(
            code: str,
            message: str,
            *,
            record_hash: str | None = None,
            order: str | None = None,
            **_: Any,
        ) -> None:
            reports.append((code, message, record_hash, order))

        for schema_name, keys in chained.items():
            check_chains_of(session=session, schema=schema_named(schema_name), keys=keys, add=add)
        if not reports:
            return
        batches = mirror.batches_of(session, [r[2] for r in reports if r[2] is not None])
        for code, message, record_hash, order in reports:
            found.add(
                BROKEN_HISTORY,
                f"order {order}: {code}: {message}",
                record_hash=record_hash,
                order=order,
                subject=code,
                batch_id=batches.get(record_hash) if record_hash is not None else None,
            )


def _gap(first: int, last: int, why: str) -> Finding:
    ids = f"batch {first}" if first == last else f"batches {first}-{last}"
    return Finding(
        CHAIN_GAP,
        f"{ids}: {why}; the registry anchors ids in sequence, so these batches cannot be "
        "checked (the RPC endpoint's logs are incomplete, or the contract is no AnchorRegistry)",
        batch_id=first,
        subject=f"{first}-{last}",
    )


def _compare_trees(
    found: _Findings,
    event: AnchorEvent,
    tree: MerkleTree | None,
    why: str,
    expected: list[bytes],
) -> None:
    """A verified batch's tree, served again, against the one the mirror verified."""
    batch_id = event.batch_id
    if tree is None:
        found.add(
            TREE_CHANGED,
            f"batch {batch_id}'s tree, verified before, is no longer served: {why}",
            subject="withdrawn",
        )
    elif tree.root != event.root:
        found.add(
            TREE_CHANGED,
            f"batch {batch_id}'s tree now has root {tree.root}, not the chain's {event.root} "
            "it had when verified",
            subject=f"root {tree.root}",
        )
    elif tree.digests != expected:
        found.add(
            TREE_CHANGED,
            f"batch {batch_id}'s tree lists its {len(tree)} records in another order than "
            "when verified",
            subject="order",
        )


@contextmanager
def _collected_after() -> Iterator[None]:
    """The cyclic garbage collector paused while a group of batches is checked, and
    run once after it. A group parses tens of thousands of records (dicts and lists,
    which make no cycles: reference counts free them) and the collector's automatic
    passes over them were 13% of the monitor's main thread under py-spy. What does
    make cycles (httpx's responses, each holding a batch's tree dump of about 1.3 MB)
    is collected after each group, so memory stays bounded by one group's garbage."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
            gc.collect()


@contextmanager
def _settled(writing: Callable[[], tuple[Any, Future[Any]] | None]) -> Iterator[None]:
    """On the way out of a failure, wait for the chunk being written: the transaction
    is rolled back next, and its connection must not be in use by the writer then."""
    try:
        yield
    except BaseException:
        in_flight = writing()
        if in_flight is not None:
            wait([in_flight[1]])
        raise


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _claimed_order(line: bytes | None) -> str | None:
    """The order served bytes say they are about (bytes that hash to no leaf: a claim)."""
    if line is None:
        return None
    row = mirror.record_row(0, b"", line, _loads(line))
    return _order_of(row.columns.buyer_ruc, row.columns.order_number)


# -- putting it together ---------------------------------------------------------------


def open_monitor(
    *,
    api_url: str,
    rpc_url: str,
    contract: str,
    mirror_database_url: str,
    from_block: int = 0,
    confirmations: int = 1,
    recheck: int = 10,
    retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen
    metrics: MonitorMetrics | None = None,
    on_finding: Emit | None = None,
    http: httpx.Client | None = None,
) -> Monitor:
    """A started monitor of ``api_url`` against ``contract`` on the chain at
    ``rpc_url``, into the mirror at ``mirror_database_url`` (migrated already).

    Raises MonitorError (bad arguments, no contract there), MirrorRefused, or
    ChainError (the chain does not answer).
    """
    service = ServiceClient(check_api_url(api_url), http=http)
    chain = ChainClient(rpc_url)
    registry = chain.registry(contract)
    engine = mirror.mirror_engine(mirror_database_url)
    monitor = Monitor(
        engine=engine,
        service=service,
        chain=chain,
        registry=registry,
        from_block=from_block,
        confirmations=confirmations,
        recheck=recheck,
        retry=retry,
        metrics=metrics,
        on_finding=on_finding,
    )
    try:
        monitor.start()
    except BaseException:
        service.close()
        engine.dispose()
        raise
    return monitor


def mirror_counts(engine: Engine) -> dict[str, int]:
    """How many batches the mirror holds by verdict, and how many records."""
    from sqlalchemy import func

    with make_session_factory(engine)() as session:
        by_status = dict(
            session.execute(
                select(MonitorBatch.status, func.count()).group_by(MonitorBatch.status)
            ).all()
        )
        records = session.scalar(select(func.count()).select_from(Record)) or 0
    return {
        "seen": int(by_status.get(SEEN, 0)),
        "verified": int(by_status.get(VERIFIED, 0)),
        "flawed": int(by_status.get(FLAWED, 0)),
        "records": int(records),
    }


__all__ += ["MirrorRefused", "check_api_url", "mirror_counts"]
