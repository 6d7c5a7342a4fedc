"""Receipt lookup latency with many records stored: GET /v1/receipts/{hash}.

    .venv/bin/python bench/lookup.py [--records 1000000] [--database sqlite|postgresql|both]
        [--lookups 20000] [--batch-size 10000] [--no-chain] [--workers 1]

For each database: a fresh migrated database filled quickly with --records
realistic purchase-order records (canonical RFC 8785 bytes that re-validate,
their keccak hashes, 40 agencies, 5,000 suppliers, a year of issue dates) in
final batches of --batch-size (10,000, the service's default
ANCLA_BATCH_MAX_SIZE) with real OpenZeppelin-compatible Merkle proofs. By
default every batch root is really anchored on a Hardhat node started here
(AnchorRegistry.anchor, one transaction per batch, sent while the rows are
inserted), so the receipts served are true ones and the anchor worker can run
inside the service as in production (ANCLA_RUN_WORKER=1). --no-chain writes
synthetic anchors instead and runs the service without the worker.

The fill inserts rows directly with SQLAlchemy Core executemany (SQLite with
synchronous=OFF during the fill only; PostgreSQL with COPY-free multi-row
INSERTs), then ANALYZEs PostgreSQL as autovacuum would. Then, on random
existing hashes (warm page cache):

* the in-process service call app.services.receipts.get_receipt (own session
  per call, as a request has), plus to_dict();
* GET /v1/receipts/{hash} over real HTTP against uvicorn, one sequential
  keep-alive client (http.client, about 50 us of client time per request);
* throughput with wrk, 8 connections (when wrk is installed).

Goal: p99 <= 10 ms with 1,000,000 records. Figures only; nothing asserts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CpuMeter,
    backends_from,
    code_version,
    fresh_database,
    percentile,
    pids_named,
    print_table,
    run_server,
    tree,
    which,
)
from sqlalchemy import Table, bindparam, insert, text, update  # noqa: E402

from app.db import is_sqlite, make_engine, make_read_engine, make_session_factory  # noqa: E402
from app.models import FINAL, Agency, Batch, ChainTarget  # noqa: E402
from app.records.purchase_order import (  # noqa: E402
    PURCHASE_ORDER_SCHEMA,
    PurchaseOrder,
    order_identity,
    ruc_check_digit,
)
from ledger import MerkleTree  # noqa: E402
from ledger.canonical import canonical_bytes  # noqa: E402
from ledger.hashing import keccak256, to_hex  # noqa: E402

AGENCIES = 40
SUPPLIERS = 5000
CHAIN_ID = 31337
WARMUP = 500
PERU = "-05:00"
CHUNK_BATCHES = 20  # batches (of --batch-size records) per executemany + commit

_ENTITY_KINDS = [
    "MUNICIPALIDAD DISTRITAL DE",
    "MUNICIPALIDAD PROVINCIAL DE",
    "GOBIERNO REGIONAL DE",
    "HOSPITAL REGIONAL DE",
    "UNIDAD DE GESTIÓN EDUCATIVA LOCAL",
]
_PLACES = ["SAN MARTÍN", "CUSCO", "PUNO", "AREQUIPA", "PIURA", "LORETO", "JUNÍN", "ÁNCASH"]
_SUPPLIER_KINDS = ["S.A.C.", "E.I.R.L.", "S.R.L.", "S.A."]


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _ruc(prefix: str, number: int) -> str:
    body = f"{prefix}{number:08d}"
    return body + ruc_check_digit(body)


# -- realistic records, fast -------------------------------------------------------

# Values that occur once in the template record, so they can be cut out of
# its canonical text and replaced per record (all plain ASCII/UTF-8 strings
# that RFC 8785 writes verbatim; JCS key order does not depend on values).
_TEMPLATE_VALUES = {
    "order_number": "OCAM-TEMPLATE-NUMBER",
    "buyer_ruc": "20600027426",
    "buyer_name": "BUYER-NAME-TEMPLATE",
    "supplier_ruc": "10412742694",
    "supplier_name": "SUPPLIER-NAME-TEMPLATE",
    "issued_at": "2026-01-31T09:57:50-05:00",
    "subtotal": "1000.01",
    "tax": "180.00",
    "total": "1180.01",
}


def _canonical_template() -> str:
    """The canonical text of a valid record as a %-format with its variable values named."""
    v = _TEMPLATE_VALUES
    order = {
        "order_number": v["order_number"],
        "buyer": {"ruc": v["buyer_ruc"], "name": v["buyer_name"]},
        "supplier": {"ruc": v["supplier_ruc"], "name": v["supplier_name"]},
        "issued_at": v["issued_at"],
        "currency": "PEN",
        "subtotal": v["subtotal"],
        "tax": v["tax"],
        "total": v["total"],
        "framework_agreement": "ÚTILES DE ESCRITORIO, PAPELES Y CARTONES",
        "procurement_method": "Compra ordinaria",
        "status": "ACEPTADA",
        "documents": [
            {
                "title": "Orden electrónica",
                "url": "https://apps1.perucompras.gob.pe//OrdenCompra/obtenerPdfOrdenPublico"
                "?ID_OrdenCompra=3447646&ImprimirCompleto=1",
            }
        ],
    }
    text_ = canonical_bytes(PurchaseOrder.model_validate(order).to_record()).decode()
    parts: list[str] = [text_]
    for name, value in v.items():
        needle = f'"{value}"'
        new_parts: list[str] = []
        for i, part in enumerate(parts):
            if i % 2:
                new_parts.append(part)
                continue
            assert part.count(needle) <= 1  # noqa: S101
            if needle in part:
                before, after = part.split(needle)
                new_parts += [before + '"', name, '"' + after]
            else:
                new_parts.append(part)
        parts = new_parts
    return "".join(f"%({p})s" if i % 2 else p.replace("%", "%%") for i, p in enumerate(parts))


# Column order of the rows RecordMaker.make returns (the fill writes them as tuples).
# Ids are given, so that the batch entries written with them can name them.
RECORD_COLUMNS = (
    "id",
    "hash",
    "canonical",
    "schema",
    "buyer_ruc",
    "buyer_name",
    "order_number",
    "supplier_ruc",
    "supplier_name",
    "issued_at",
    "currency",
    "total",
    "identity",
    "agency_id",
    "accepted_at",
)
ID, HASH, CANONICAL, ISSUED_AT, TOTAL, ACCEPTED_AT = 0, 1, 2, 9, 11, 14
ENTRY_COLUMNS = ("record_id", "batch_id", "position", "proof")


class RecordMaker:
    def __init__(self, n: int, seed: int = 7) -> None:
        self.template = _canonical_template()
        self.rng = random.Random(seed)
        self.agencies = [
            (
                _ruc("20", 10_000_000 + 7919 * k),
                f"{_ENTITY_KINDS[k % len(_ENTITY_KINDS)]} {_PLACES[k % len(_PLACES)]} {k}",
            )
            for k in range(AGENCIES)
        ]
        self.suppliers = [
            (
                _ruc("10" if s % 3 == 0 else "20", 40_000_000 + 104_729 * s % 59_999_999),
                f"PROVEEDOR {s} {_SUPPLIER_KINDS[s % len(_SUPPLIER_KINDS)]}",
            )
            for s in range(SUPPLIERS)
        ]
        self.start = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
        self.step = timedelta(days=365) / max(n, 1)
        self.accepted = datetime(2026, 1, 2, tzinfo=UTC)

    def make(self, i: int, agency_ids: list[int]) -> list[Any]:
        k = i % AGENCIES
        buyer_ruc, buyer_name = self.agencies[k]
        supplier_ruc, supplier_name = self.suppliers[self.rng.randrange(SUPPLIERS)]
        issued = self.start + self.step * i
        issued_peru = issued - timedelta(hours=5)
        issued_text = issued_peru.strftime("%Y-%m-%dT%H:%M:%S") + PERU
        cents = self.rng.randrange(1_000, 50_000_000)
        tax = cents * 18 // 100
        number = f"OCAM-2025-{1000 + k}-{i}-0"
        values = {
            "order_number": number,
            "buyer_ruc": buyer_ruc,
            "buyer_name": buyer_name,
            "supplier_ruc": supplier_ruc,
            "supplier_name": supplier_name,
            "issued_at": issued_text,
            "subtotal": f"{cents // 100}.{cents % 100:02d}",
            "tax": f"{tax // 100}.{tax % 100:02d}",
            "total": f"{(cents + tax) // 100}.{(cents + tax) % 100:02d}",
        }
        canonical = (self.template % values).encode()
        return [
            i + 1,
            to_hex(keccak256(canonical)),
            canonical,
            PURCHASE_ORDER_SCHEMA,
            buyer_ruc,
            buyer_name,
            number,
            supplier_ruc,
            supplier_name,
            issued.replace(microsecond=0),
            "PEN",
            Decimal(values["total"]),
            order_identity(buyer_ruc, number),
            agency_ids[k],
            self.accepted + timedelta(microseconds=i * 50),
        ]


def check_records(maker: RecordMaker, agency_ids: list[int], count: int = 50) -> None:
    """Every generated record re-validates and re-canonicalises to the same bytes."""
    for i in range(count):
        row = maker.make(i * 7919, agency_ids)
        record = json.loads(row[CANONICAL])
        order = PurchaseOrder.model_validate(record["purchase_order"])
        if canonical_bytes(order.to_record()) != row[CANONICAL]:
            raise RuntimeError(f"generated record {i} is not canonical: {row[CANONICAL]!r}")


# -- anchoring the batch roots on the chain ---------------------------------------------


class Anchorer(threading.Thread):
    """Anchor batch roots in id order while the fill goes on; results by batch id."""

    def __init__(self, rpc_url: str, contract: str) -> None:
        super().__init__(name="bench-anchorer", daemon=True)
        from app.devchain import DEV_KEY_0
        from ledger.chain import ChainClient, load_signer

        self.client = ChainClient(rpc_url)
        self.registry = self.client.registry(contract)
        self.signer = load_signer(key=DEV_KEY_0)
        self.todo: queue.Queue[tuple[int, str, int] | None] = queue.Queue()
        self.results: dict[int, Any] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while (item := self.todo.get()) is not None:
                batch_id, root, size = item
                self.results[batch_id] = self.registry.anchor(
                    self.signer, batch_id=batch_id, root=root, leaf_count=size
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


# -- the fill ------------------------------------------------------------------------


def fill(
    url: str,
    n: int,
    batch_size: int,
    chain: tuple[str, str, str] | None,
    wanted: set[int],
) -> tuple[dict[int, str], dict[str, float]]:
    """Insert n records in final batches; return the hashes of the ``wanted`` indexes."""
    engine = make_engine(url, pool_size=1)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    found: dict[int, str] = {}
    anchorer = None
    try:
        with engine.connect() as conn:
            if is_sqlite(engine):
                conn.exec_driver_sql("PRAGMA synchronous=OFF")
                conn.exec_driver_sql("PRAGMA cache_size=-1000000")
            maker = RecordMaker(n)
            agency_rows = [
                {
                    "ruc": maker.agencies[k][0],
                    "name": maker.agencies[k][1],
                    "key_id": f"bench{k:011d}",
                    "key_hash": bytes(32),
                    "created_at": datetime(2025, 1, 1, tzinfo=UTC),
                }
                for k in range(AGENCIES)
            ]
            conn.execute(insert(_table(Agency)), agency_rows)
            agency_ids = [
                conn.execute(
                    text("SELECT id FROM agencies WHERE ruc = :ruc"), {"ruc": r["ruc"]}
                ).scalar_one()
                for r in agency_rows
            ]
            if chain is not None:
                rpc_url, contract, genesis = chain
                anchorer = Anchorer(rpc_url, contract)
                anchorer.start()
            else:
                contract, genesis = "0x" + "5a" * 20, "0x" + "00" * 32
            conn.execute(
                insert(_table(ChainTarget)),
                [
                    {
                        "id": 1,
                        "chain_id": CHAIN_ID,
                        "genesis_hash": genesis,
                        "contract": contract,
                        "recorded_at": datetime(2025, 1, 1, tzinfo=UTC),
                    }
                ],
            )
            conn.commit()
            check_records(maker, agency_ids)
            t_gen = t_tree = t_sql = 0.0
            batches = (n + batch_size - 1) // batch_size
            rng = random.Random(11)
            for chunk_start in range(0, batches, CHUNK_BATCHES):
                batch_rows: list[dict[str, Any]] = []
                record_rows: list[list[Any]] = []
                entry_rows: list[tuple[int, int, int, bytes]] = []
                for b in range(chunk_start, min(batches, chunk_start + CHUNK_BATCHES)):
                    t0 = time.perf_counter()
                    first = b * batch_size
                    rows = [
                        maker.make(i, agency_ids) for i in range(first, min(n, first + batch_size))
                    ]
                    t1 = time.perf_counter()
                    tree = MerkleTree.of([r[HASH] for r in rows])
                    proofs = tree.proof_bytes()
                    batch_id = b + 1
                    for position, (row, proof) in enumerate(zip(rows, proofs, strict=True)):
                        entry_rows.append((row[ID], batch_id, position, proof))
                        if first + position in wanted:
                            found[first + position] = row[HASH]
                    t2 = time.perf_counter()
                    t_gen += t1 - t0
                    t_tree += t2 - t1
                    sealed = rows[-1][ACCEPTED_AT] + timedelta(seconds=5)
                    batch_rows.append(
                        _batch_row(
                            batch_id,
                            len(rows),
                            tree.root,
                            sealed,
                            rng,
                            synthetic=chain is None,
                            contract=contract,
                        )
                    )
                    record_rows.extend(rows)
                    if anchorer is not None:
                        anchorer.todo.put((batch_id, tree.root, len(rows)))
                t3 = time.perf_counter()
                conn.execute(insert(_table(Batch)), batch_rows)
                _insert_records(conn, record_rows, entry_rows)
                conn.commit()
                t_sql += time.perf_counter() - t3
                if anchorer is not None and anchorer.error is not None:
                    raise anchorer.error
                done = min(n, (chunk_start + CHUNK_BATCHES) * batch_size)
                if done % 100_000 < CHUNK_BATCHES * batch_size:
                    elapsed = time.perf_counter() - started
                    print(
                        f"    {done:,} records in {elapsed:.0f} s "
                        f"({done / elapsed:,.0f} records/s)",
                        flush=True,
                    )
            timings.update(generate=t_gen, merkle=t_tree, insert=t_sql)
            if anchorer is not None:
                t4 = time.perf_counter()
                anchorer.todo.put(None)
                anchorer.join()
                if anchorer.error is not None:
                    raise anchorer.error
                timings["anchor wait"] = time.perf_counter() - t4
                t5 = time.perf_counter()
                _record_anchors(conn, anchorer.results)
                conn.commit()
                timings["anchor update"] = time.perf_counter() - t5
            t6 = time.perf_counter()
            if not is_sqlite(engine):
                conn.commit()
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
                timings["analyze"] = time.perf_counter() - t6
    finally:
        engine.dispose()
    timings["total"] = time.perf_counter() - started
    return found, timings


def _insert_records(
    conn: Any, rows: list[list[Any]], entries: list[tuple[int, int, int, bytes]]
) -> None:
    """Raw DBAPI bulk insert of records and their batch entries: executemany on
    SQLite, COPY on PostgreSQL.

    Values are written as the app's own types store them: the hash as its 32
    bytes (Hash32); on SQLite, naive UTC 'YYYY-MM-DD HH:MM:SS.ffffff' text for
    UTCDateTime and decimal text for amounts (DecimalText).
    """
    columns = ", ".join(RECORD_COLUMNS)
    for row in rows:
        row[HASH] = bytes.fromhex(row[HASH][2:])
    if conn.dialect.name == "sqlite":
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        for row in rows:
            row[ISSUED_AT] = row[ISSUED_AT].strftime(fmt)
            row[ACCEPTED_AT] = row[ACCEPTED_AT].strftime(fmt)
            row[TOTAL] = format(row[TOTAL], "f")
        marks = ", ".join("?" * len(RECORD_COLUMNS))
        conn.exec_driver_sql(
            f"INSERT INTO records ({columns}) VALUES ({marks})",  # noqa: S608 - fixed names
            [tuple(r) for r in rows],
        )
        conn.exec_driver_sql(
            f"INSERT INTO batch_entries ({', '.join(ENTRY_COLUMNS)}) VALUES (?, ?, ?, ?)",  # noqa: S608
            entries,
        )
        return
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY records ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    with cursor.copy(f"COPY batch_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN") as copy:
        for entry in entries:
            copy.write_row(entry)
    # The ids were given: the sequence must start after them for the service's inserts.
    cursor.execute("SELECT setval('records_id_seq', (SELECT max(id) FROM records))")


def _batch_row(
    batch_id: int,
    size: int,
    root: str,
    sealed: datetime,
    rng: random.Random,
    *,
    synthetic: bool,
    contract: str,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": batch_id,
        "status": FINAL,
        "size": size,
        "root": root,
        "sealed_at": sealed,
        "reanchor_count": 0,
    }
    if synthetic:
        row.update(
            chain_id=CHAIN_ID,
            contract=contract,
            tx_hash="0x" + rng.randbytes(32).hex(),
            tx_nonce=batch_id,
            submitted_at=sealed + timedelta(seconds=1),
            block_number=100 + batch_id,
            block_hash="0x" + rng.randbytes(32).hex(),
            log_index=0,
            block_timestamp=int((sealed + timedelta(seconds=2)).timestamp()),
            anchored_at=sealed + timedelta(seconds=2),
            gas_used=53_658,
            final_at=sealed + timedelta(seconds=30),
        )
    return row


def _record_anchors(conn: Any, results: dict[int, Any]) -> None:
    table = _table(Batch)
    now = datetime.now(UTC)
    conn.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            chain_id=bindparam("b_chain"),
            contract=bindparam("b_contract"),
            tx_hash=bindparam("b_tx"),
            tx_nonce=bindparam("b_nonce"),
            submitted_at=bindparam("b_at"),
            block_number=bindparam("b_block"),
            block_hash=bindparam("b_block_hash"),
            log_index=bindparam("b_log"),
            block_timestamp=bindparam("b_ts"),
            anchored_at=bindparam("b_at"),
            gas_used=bindparam("b_gas"),
            final_at=bindparam("b_at"),
        ),
        [
            {
                "b_id": batch_id,
                "b_chain": r.chain_id,
                "b_contract": r.contract,
                "b_tx": r.tx_hash,
                "b_nonce": batch_id - 1,
                "b_at": now,
                "b_block": r.block_number,
                "b_block_hash": r.block_hash,
                "b_log": r.log_index,
                "b_ts": r.timestamp,
                "b_gas": r.gas_used,
            }
            for batch_id, r in sorted(results.items())
        ],
    )


# -- measurements --------------------------------------------------------------------


def summary(label: str, values_ms: list[float], elapsed: float) -> list[Any]:
    values = sorted(values_ms)
    return [
        label,
        len(values),
        percentile(values, 50),
        percentile(values, 90),
        percentile(values, 99),
        values[-1],
        len(values) / elapsed,
    ]


def in_process(url: str, hashes: list[str]) -> list[Any]:
    from app.services.receipts import get_receipt

    # The engine the service reads receipts through (autocommit on PostgreSQL).
    base = make_engine(url)
    engine = make_read_engine(base)
    factory = make_session_factory(engine)
    try:
        for h in hashes[:WARMUP]:
            with factory() as session:
                get_receipt(session=session, record_hash=h, genesis=None).to_dict()
        times: list[float] = []
        started = time.perf_counter()
        for h in hashes[WARMUP:]:
            t0 = time.perf_counter()
            with factory() as session:
                receipt = get_receipt(session=session, record_hash=h, genesis=None).to_dict()
            times.append((time.perf_counter() - t0) * 1000)
            if receipt["status"] != "final":
                raise RuntimeError(f"receipt of {h} is {receipt['status']}, not final")
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
        base.dispose()
    return summary("in-process get_receipt", times, elapsed)


def over_http(port: int, hashes: list[str]) -> tuple[list[Any], dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    errors = 0
    first: dict[str, Any] = {}

    def get(h: str) -> int:
        conn.request("GET", f"/v1/receipts/{h}")
        response = conn.getresponse()
        body = response.read()
        if not first and response.status == 200:
            first.update(json.loads(body))
        return response.status

    for h in hashes[:WARMUP]:
        get(h)
    times: list[float] = []
    started = time.perf_counter()
    for h in hashes[WARMUP:]:
        t0 = time.perf_counter()
        status = get(h)
        times.append((time.perf_counter() - t0) * 1000)
        errors += status != 200
    elapsed = time.perf_counter() - started
    conn.close()
    row = summary("HTTP GET, 1 client", times, elapsed)
    if errors:
        row[0] += f" ({errors} errors)"
    return row, first


def wrk_throughput(
    port: int, hashes: list[str], work_dir: Path, connections: int = 8, seconds: int = 5
) -> list[Any] | None:
    if not which("wrk"):
        return None
    script = work_dir / "lookup.lua"
    listed = ",".join(f'"{h}"' for h in hashes)
    script.write_text(
        f"""
local hashes = {{{listed}}}
local n = #hashes
math.randomseed(os.time())
function request()
  return wrk.format("GET", "/v1/receipts/" .. hashes[math.random(n)])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_RESULT {{"requests":%d,"duration_us":%d,"errors":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max))
end
""",
        encoding="utf-8",
    )
    proc = subprocess.run(  # noqa: S603
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if line is None:
        print(f"  wrk failed: {proc.stdout} {proc.stderr}")
        return None
    d = json.loads(line.removeprefix("WRK_RESULT "))
    label = f"HTTP GET, wrk {connections} conns"
    if d["errors"]:
        label += f" ({d['errors']} errors)"
    return [
        label,
        d["requests"],
        d["p50"] / 1000,
        d["p90"] / 1000,
        d["p99"] / 1000,
        d["max"] / 1000,
        d["requests"] / (d["duration_us"] / 1e6),
    ]


def spot_check(receipt: dict[str, Any], rpc_url: str) -> str:
    from ledger.receipt import Receipt
    from ledger.verify import verify_receipt

    try:
        verify_receipt(
            Receipt.from_json(json.dumps(receipt)), None, rpc_url=rpc_url, confirmations=1
        )
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"FAILED: {exc}"
    return "valid on chain"


def measure_http(
    url: str,
    backend: str,
    args: argparse.Namespace,
    chain: tuple[str, str, str] | None,
    with_worker: bool,
    hashes: list[str],
    work_dir: Path,
) -> tuple[list[list[Any]], list[list[Any]], dict[str, Any]]:
    """Sequential latency, then wrk throughput, against a fresh uvicorn."""
    rows: list[list[Any]] = []
    cpu_rows: list[list[Any]] = []
    tag = f"{backend}, worker {'on' if with_worker else 'off'}"
    with run_server(
        database_url=url,
        log_dir=work_dir,
        workers=args.workers,
        run_worker=with_worker,
        rpc_url=chain[0] if chain else "http://127.0.0.1:9",
        contract=chain[1] if chain else None,
    ) as server:
        groups: dict[str, Any] = {"service": lambda: tree(server.process.pid)}
        if backend == "postgresql":
            groups["postgres"] = lambda: pids_named("postgres")
        meter = CpuMeter(groups)
        meter.start()
        row, receipt = over_http(server.port, hashes)
        cores = meter.stop()
        rows.append([f"{tag}: " + row[0], *row[1:]])
        cpu_rows.append(
            [
                tag,
                "1 client",
                *(
                    f"{cores.get(k, 0):.2f}"
                    for k in ("service", "postgres", "bench (this process)", "machine")
                ),
            ]
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        meter.start()
        wrk_row = wrk_throughput(server.port, hashes[WARMUP:], work_dir)
        cores = meter.stop()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if wrk_row:
            rows.append([f"{tag}: " + wrk_row[0], *wrk_row[1:]])
            wrk_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 5
            cpu_rows.append(
                [
                    tag,
                    "wrk 8 conns",
                    *(f"{cores.get(k, 0):.2f}" for k in ("service", "postgres")),
                    f"{wrk_cpu:.2f} (wrk)",
                    f"{cores.get('machine', 0):.2f}",
                ]
            )
    return rows, cpu_rows, receipt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument(
        "--worker-off-only",
        action="store_true",
        help="measure HTTP only with the anchor worker off (default: on, then off)",
    )
    parser.add_argument(
        "--no-chain",
        action="store_true",
        help="synthetic anchors, no Hardhat node, service without its worker",
    )
    args = parser.parse_args()
    if args.lookups + WARMUP > args.records:
        parser.error("--lookups (+500 warm-up) must not exceed --records")

    print(
        f"Receipt lookups with {args.records:,} records stored (batches of "
        f"{args.batch_size:,}, status final); code: {code_version()}"
    )
    print(
        "  anchors: "
        + (
            "synthetic (--no-chain); service without the anchor worker"
            if args.no_chain
            else "real, on a Hardhat node; HTTP measured with the anchor worker running in the "
            "service (ANCLA_RUN_WORKER=1, the real configuration), then without it"
        ),
        flush=True,
    )
    rows: list[list[Any]] = []
    cpu_rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="ancla-lookup-") as tmp:
        work_dir = Path(tmp)
        node = None
        try:
            for backend in backends_from(args.database):
                chain = None
                if not args.no_chain:
                    from app.devchain import DEV_KEY_0, start_node
                    from ledger.chain import ChainClient, load_signer

                    if node is None:
                        node = start_node(work_dir / "hardhat")
                    client = ChainClient(node.url)
                    contract, _ = client.deploy_registry(load_signer(key=DEV_KEY_0))
                    chain = (node.url, contract, client.genesis_hash())
                picked = random.Random(3).sample(range(args.records), args.lookups + WARMUP)
                with fresh_database(backend, work_dir) as url:
                    print(f"  {backend}: filling {args.records:,} records ...", flush=True)
                    found, timings = fill(url, args.records, args.batch_size, chain, set(picked))
                    hashes = [found[i] for i in picked]
                    print(
                        f"  {backend}: filled in {timings['total']:.0f} s ("
                        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total")
                        + f"); {args.records / timings['total']:,.0f} records/s",
                        flush=True,
                    )
                    r = in_process(url, hashes)
                    rows.append([f"{backend}: " + r[0], *r[1:]])
                    modes = (
                        [True, False] if chain is not None and not args.worker_off_only else [False]
                    )
                    receipt: dict[str, Any] = {}
                    for with_worker in modes:
                        got = measure_http(url, backend, args, chain, with_worker, hashes, work_dir)
                        rows.extend(got[0])
                        cpu_rows.extend(got[1])
                        receipt = receipt or got[2]
                    if chain is not None and receipt:
                        print(
                            f"  {backend}: spot check of one served receipt (batch "
                            f"{receipt['batch']['id']}): {spot_check(receipt, chain[0])}"
                        )
                    print_table(
                        ["lookup", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "per s"],
                        rows[-(1 + 2 * len(modes)) :],
                        title=f"  {backend} so far:",
                    )
        finally:
            if node is not None:
                node.stop()
    print()
    print_table(
        ["lookup", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "per s"],
        rows,
        title=f"Receipt lookup, {args.records:,} records (goal: p99 <= 10 ms)",
    )
    print()
    print_table(
        ["database", "load", "service", "postgres", "client", "machine"],
        cpu_rows,
        title="Cores used during the HTTP runs (CPU s per wall s; 'machine' is everything "
        "busy on it, other sessions' work included)",
    )


if __name__ == "__main__":
    main()
