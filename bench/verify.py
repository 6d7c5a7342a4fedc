"""Bulk re-verification (`ancla verify`'s Auditor) over N records, with the chain checks apart.

    ANCLA_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/verify.py [--records 1000000] [--database postgresql]
            [--jobs 1,2] [--repeat 2]

Fills a fresh database with N realistic records in final batches of 1,000 whose
roots are anchored for real on a Hardhat node (bench/lookup.py's fill), then runs
the full audit and prints records/s overall and for the database + hash + Merkle
part alone (total minus the time spent waiting on the chain's JSON-RPC), the
number of HTTP requests to the node (JSON-RPC batch requests, per window of
anchors, never per record) and the peak memory (it must
stay flat: the audit streams). Goal (issue 4): >= 50,000 records/s for the hash
and Merkle part on PostgreSQL; issue 19: >= 100,000 records/s with `ancla verify
--jobs N` (processes over ranges of batches). Each --jobs value is run --repeat
times, alternating, on the same database in the same run; with more than one
job the chain time is spent in the worker processes, so only the wall-clock
rate is printed for those.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db import make_engine, make_session_factory  # noqa: E402
from app.devchain import DEV_KEY_0, start_node  # noqa: E402
from app.services.audit import Auditor, WorkerSetup  # noqa: E402
from bench._common import fresh_database  # noqa: E402
from bench.lookup import fill  # noqa: E402
from ledger.chain import RPC_BATCH_LIMIT, ChainClient, load_signer  # noqa: E402


class TimedClient(ChainClient):
    """A chain client that adds up the time spent in JSON-RPC calls."""

    rpc_seconds = 0.0
    rpc_calls = 0

    def call(self, what: str, fn: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().call(what, fn)
        finally:
            TimedClient.rpc_seconds += time.perf_counter() - started
            TimedClient.rpc_calls += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--jobs", default="1", help="process counts to compare, e.g. 1,2")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    runs: list[tuple[int, float, float, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        node = start_node(tmp / "hardhat")
        try:
            setup = ChainClient(node.url)
            contract, _ = setup.deploy_registry(load_signer(key=DEV_KEY_0))
            with fresh_database(args.database, tmp) as url:
                started = time.perf_counter()
                fill(url, args.records, 1000, (node.url, contract, setup.genesis_hash()), set())
                print(f"filled {args.records:,} records in {time.perf_counter() - started:.0f} s")
                engine = make_engine(url, pool_size=2)
                worker = WorkerSetup(database_url=url, rpc_url=node.url, contract=contract)
                for _ in range(args.repeat):
                    for jobs in (int(j) for j in args.jobs.split(",")):
                        client = TimedClient(node.url)
                        TimedClient.rpc_seconds, TimedClient.rpc_calls = 0.0, 0
                        auditor = Auditor(
                            session_factory=make_session_factory(engine),
                            client=client,
                            registry=client.registry(contract),
                            confirmations=1,
                            pending_window=timedelta(days=3650),
                        )
                        started = time.perf_counter()
                        report = auditor.run(jobs=jobs, worker=worker)
                        total = time.perf_counter() - started
                        runs.append((jobs, total, TimedClient.rpc_seconds, report))
                        print(
                            f"  jobs={jobs}: {report.records_checked / total:,.0f} records/s "
                            f"({total:.1f} s, {len(report.discrepancies)} discrepancies)"
                        )
                engine.dispose()
        finally:
            node.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for jobs, total, rpc_seconds, report in runs:
        print(
            f"audit of {report.records_checked:,} records, {report.batches_checked:,} batches, "
            f"{report.anchors_checked:,} anchors on {args.database}, {jobs} process(es): "
            f"{len(report.discrepancies)} discrepancies"
        )
        print(
            f"  total            {total:8.1f} s  {report.records_checked / total:10,.0f} records/s"
        )
        if jobs == 1:
            local = total - rpc_seconds
            print(
                f"  chain (JSON-RPC) {rpc_seconds:8.1f} s  (batch requests of <= "
                f"{RPC_BATCH_LIMIT} calls)"
            )
            print(
                f"  db+hash+Merkle   {local:8.1f} s  {report.records_checked / local:10,.0f} "
                "records/s"
            )
    print(f"  peak memory of this process: {peak_mb:,.0f} MB (fill included)")


if __name__ == "__main__":
    main()
