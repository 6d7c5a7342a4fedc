"""Bulk re-verification (`ancla verify`'s Auditor) over N records, beside earlier code.

    ANCLA_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/verify.py [--records 1000000] [--database postgresql|sqlite]
            [--jobs 1,2] [--repeat 2] [--against REV]

Fills a fresh database with N realistic records in final batches of 1,000 whose
roots are anchored for real on a Hardhat node (bench/lookup.py's fill; on
PostgreSQL then vacuumed, as autovacuum would: vacuum()), then runs
the full audit (database + hash + Merkle + chain) once per --jobs value per round,
--repeat rounds, on the same database in the same run. With --against, each
round runs that revision's code too (a `git worktree` of it, removed after),
alternating with the working tree's: the machine's load varies by the minute, so
only figures of one run compare. Each audit runs in a process of its own whose
imports come from the code measured, and prints records/s, the time spent
waiting on the chain's JSON-RPC (with one process; with more the chain is asked
from the worker processes) and the peak memory of the auditing processes, which
must stay flat: the audit streams.

Goals (issue 19): >= 100,000 records/s on PostgreSQL and >= 60,000 on SQLite,
1,000,000 records, with `ancla verify --jobs N`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# A measured run imports the code under test first (--run, below).
sys.path.insert(0, os.environ.get("BENCH_CODE", str(ROOT)))
sys.path.insert(1, str(ROOT))


def run_one(url: str, rpc_url: str, contract: str, jobs: int) -> dict[str, Any]:
    """One audit, in this process, with the code first on sys.path."""
    if jobs > 1:
        # What `ancla verify --jobs N` does first (app/cli.py); code from before
        # app.processes spawns its workers instead.
        with contextlib.suppress(ImportError):
            from app.processes import start_worker_server

            start_worker_server("app.services.audit")
    from app.db import make_engine, make_session_factory
    from app.services.audit import Auditor, WorkerSetup
    from ledger.chain import ChainClient

    class TimedClient(ChainClient):
        """A chain client that adds up the time spent in JSON-RPC calls."""

        rpc_seconds = 0.0

        def call(self, what: str, fn: Any) -> Any:
            started = time.perf_counter()
            try:
                return super().call(what, fn)
            finally:
                TimedClient.rpc_seconds += time.perf_counter() - started

    engine = make_engine(url, pool_size=2)
    client = TimedClient(rpc_url)
    auditor = Auditor(
        session_factory=make_session_factory(engine),
        client=client,
        registry=client.registry(contract),
        confirmations=1,
        pending_window=timedelta(days=3650),
    )
    worker = WorkerSetup(database_url=url, rpc_url=rpc_url, contract=contract)
    started = time.perf_counter()
    report = auditor.run(jobs=jobs, worker=worker)
    total = time.perf_counter() - started
    engine.dispose()
    return {
        "records": report.records_checked,
        "batches": report.batches_checked,
        "anchors": report.anchors_checked,
        "discrepancies": len(report.discrepancies),
        "seconds": total,
        "rpc_seconds": TimedClient.rpc_seconds,
        # The largest of this process and its worker processes. This process's
        # own high-water mark from /proc: ru_maxrss would count the memory of
        # the bench's process it was started from (Linux keeps it across exec).
        "peak_mb": max(_own_peak_kib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        / 1024,
    }


def _own_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def vacuum(url: str) -> None:
    """VACUUM (ANALYZE) the filled tables, as autovacuum does within a minute of a
    bulk load on a server that runs it: the audit's queries of ids alone are then
    index-only scans, with no visit to each record's row (the test server runs no
    autovacuum, and a ledger in service is not one just loaded)."""
    from app.db import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM (ANALYZE) records, batch_entries, batches, pending_records, agencies"
            )
    finally:
        engine.dispose()


def measure(code: Path, url: str, rpc_url: str, contract: str, jobs: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--run", json.dumps([url, rpc_url, contract, jobs])],
        env={**os.environ, "BENCH_CODE": str(code)},
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--jobs", default="1", help="process counts to compare, e.g. 1,2")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--against", help="an earlier revision to run beside the working tree")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(*json.loads(args.run))))
        return

    from app.devchain import DEV_KEY_0, start_node
    from bench._common import fresh_database, revision_worktree
    from bench.lookup import fill
    from ledger.chain import ChainClient, load_signer

    jobs_list = [int(j) for j in args.jobs.split(",")]
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        codes: dict[str, Path] = {"now": ROOT}
        if args.against:
            then = stack.enter_context(revision_worktree(args.against, tmp / "then"))
            codes[f"then ({args.against})"] = then
        node = start_node(tmp / "hardhat")
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        try:
            setup = ChainClient(node.url)
            contract, _ = setup.deploy_registry(load_signer(key=DEV_KEY_0))
            with fresh_database(args.database, tmp) as url:
                started = time.perf_counter()
                fill(url, args.records, 1000, (node.url, contract, setup.genesis_hash()), set())
                if args.database == "postgresql":
                    vacuum(url)
                print(f"filled {args.records:,} records in {time.perf_counter() - started:.0f} s")
                for round_ in range(args.repeat):
                    # Alternate which code goes first, round by round.
                    order = list(codes.items())
                    if round_ % 2:
                        order.reverse()
                    for jobs in jobs_list:
                        for name, code in order:
                            got = measure(code, url, node.url, contract, jobs)
                            results.setdefault((name, jobs), []).append(got)
                            print(
                                f"  round {round_ + 1}, {name}, jobs={jobs}: "
                                f"{got['records'] / got['seconds']:,.0f} records/s "
                                f"({got['seconds']:.1f} s, {got['discrepancies']} discrepancies)",
                                flush=True,
                            )
        finally:
            node.stop()
    print(f"audit of {args.records:,} records on {args.database}, {args.repeat} round(s):")
    for (name, jobs), runs in results.items():
        rates = [r["records"] / r["seconds"] for r in runs]
        first = runs[0]
        peak = max(r["peak_mb"] for r in runs)
        line = (
            f"  {name:24s} jobs={jobs}: median {statistics.median(rates):9,.0f} records/s "
            f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}); "
            f"{first['batches']:,} batches, {first['anchors']:,} anchors, "
            f"{first['discrepancies']} discrepancies; peak {peak:,.0f} MB"
        )
        if jobs == 1:
            chain = statistics.median(r["rpc_seconds"] for r in runs)
            local = statistics.median(
                r["records"] / (r["seconds"] - r["rpc_seconds"]) for r in runs
            )
            line += f"; chain {chain:.1f} s, db+hash+Merkle {local:,.0f} records/s"
        print(line)


if __name__ == "__main__":
    main()
