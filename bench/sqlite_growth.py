"""What a batch of 10,000 records costs SQLite as the table grows: the mirror's writes.

    .venv/bin/python bench/sqlite_growth.py [--records 1000000] [--batch-size 10000]
        [--batches-per-commit 1,5] [--synchronous FULL]

Issue 18's monitor slows as its mirror grows (bench/monitor.py: 22,000 records/s from
first batch to last at 200,000 records, 14,600 at 1,000,000), and under py-spy at
1,000,000 most of its time is SQLite's: the records' multi-row INSERTs and the
commits. This isolates that part: a fresh database migrated as the service's and the
mirror's are (so the records table has all of their indexes: the hash, the identity,
buyer, supplier, issue date, order number; record_documents keyed by sha256), filled
batch by batch as the mirror fills it (records with random hashes and document
digests, their batch entries with proofs, their documents), with the connection
settings app.db gives a writer (WAL, the write cache). For each --batches-per-commit
value in turn, a fresh database, one transaction per that many batches; printed: the
INSERTs' and commits' time per batch at each fifth of --records, and the total.
Figures only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import fresh_database  # noqa: E402

from app.db import SQLITE_WAL_AUTOCHECKPOINT_PAGES, SQLITE_WRITE_CACHE_KIB, sqlite_path  # noqa: E402

# A purchase order's canonical form is about 650 bytes; a proof of a batch of
# 10,000 is 14 hashes.
CANONICAL = os.urandom(650)
PROOF_BYTES = 14 * 32


def run(
    records: int,
    batch_size: int,
    per_commit: int,
    synchronous: str,
    cache_kib: int = SQLITE_WRITE_CACHE_KIB,
    drop: str | None = None,
) -> float:
    with tempfile.TemporaryDirectory() as work, fresh_database("sqlite", Path(work)) as url:
        path = sqlite_path(url)
        assert path is not None  # noqa: S101 - a file database
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(f"PRAGMA cache_size={-cache_kib}")
        if drop:
            db.execute(f"DROP INDEX {drop}")
        db.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        batches = records // batch_size
        report_every = max(1, batches // 5)
        total = 0.0
        next_id = 1
        inserting = committing = 0.0
        for batch in range(batches):
            rows, entries, documents = [], [], []
            for position in range(batch_size):
                record_id = next_id
                next_id += 1
                number = f"OC-{record_id}"
                rows.append(
                    (
                        record_id,
                        os.urandom(32),
                        CANONICAL,
                        "ancla/purchase-order/1",
                        "20131312955",
                        number,
                        f"20{secrets.randbelow(10**9):09d}",
                        "PROVEEDOR S.A.C.",
                        "MUNICIPALIDAD",
                        f"2026-{1 + record_id % 12:02d}-{1 + record_id % 28:02d} 10:00:00.000000",
                        "PEN",
                        "1180.00",
                        f"20131312955/{number}",
                        "2026-12-03 10:00:00.000000",
                        "mirror",
                    )
                )
                entries.append((record_id, batch + 1, position, os.urandom(PROOF_BYTES)))
                documents.append((secrets.token_hex(32), record_id))
            started = time.perf_counter()
            if batch % per_commit == 0:
                db.execute("BEGIN")
            db.executemany(
                "INSERT INTO batches (id, status, size, root, sealed_at, reanchor_count) "
                "VALUES (?, 'final', ?, ?, '2026-12-03 10:00:00.000000', 0)",
                [(batch + 1, batch_size, "0x" + secrets.token_hex(32))],
            )
            db.executemany(
                "INSERT INTO records (id, hash, canonical, schema, buyer_ruc, order_number, "
                "supplier_ruc, supplier_name, buyer_name, issued_at, currency, total, "
                "identity, accepted_at, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            db.executemany(
                "INSERT INTO batch_entries (record_id, batch_id, position, proof) VALUES (?,?,?,?)",
                entries,
            )
            db.executemany(
                "INSERT INTO record_documents (sha256, record_id) VALUES (?,?)", documents
            )
            inserted = time.perf_counter()
            if batch % per_commit == per_commit - 1 or batch == batches - 1:
                db.execute("COMMIT")
            done = time.perf_counter()
            inserting += inserted - started
            committing += done - inserted
            total += done - started
            if (batch + 1) % report_every == 0:
                print(
                    f"    {next_id - 1:>10,} records: INSERTs {1e3 * inserting / report_every:6.1f}"
                    f" ms, commits {1e3 * committing / report_every:6.1f} ms per batch"
                )
                inserting = committing = 0.0
        db.close()
        return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--batches-per-commit", default="1,5")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument(
        "--cache-mib",
        default=str(SQLITE_WRITE_CACHE_KIB // 1024),
        help="page cache sizes, e.g. 64,512",
    )
    parser.add_argument("--drop-index", default="", help="indexes to go without, one run each")
    args = parser.parse_args()
    totals = []
    drops: list[str | None] = [None, *[d for d in args.drop_index.split(",") if d]]
    for per_commit in [int(k) for k in args.batches_per_commit.split(",")]:
        for cache_mib in [int(c) for c in args.cache_mib.split(",")]:
            for drop in drops:
                label = f"{per_commit} batch(es) of {args.batch_size:,} per transaction, " + (
                    f"cache {cache_mib} MiB" + (f", without {drop}" if drop else "")
                )
                print(f"  {label}:")
                seconds = run(
                    args.records,
                    args.batch_size,
                    per_commit,
                    args.synchronous,
                    cache_mib * 1024,
                    drop,
                )
                totals.append((label, seconds))
                rate = args.records / seconds
                print(f"    total {seconds:.1f} s: {rate:,.0f} records/s of SQLite time")
    for label, seconds in totals:
        print(f"  {label}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
