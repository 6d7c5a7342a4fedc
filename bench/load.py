"""Sustained load on the production shape: several API processes and two anchor workers.

    ANCLA_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/load.py [--seconds 30] [--clients 16] [--api-workers 2]

A fresh PostgreSQL schema, a Hardhat node, `ancla serve --workers N --no-worker`
and two `ancla worker` processes; `--clients` threads POST distinct orders (every
fifth request a bulk of 20) for `--seconds`. Prints the load held (requests/s,
records/s, error rate, p50/p99), then waits until every accepted record is final
and runs `ancla verify` (lost, doubled or forged records would show there).
The load generator runs on the same 2 cores as the service and takes its share.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db import make_engine, make_session_factory  # noqa: E402
from app.devchain import DEV_KEY_0, start_node  # noqa: E402
from app.services.agencies import add_agency  # noqa: E402
from app.settings import Settings  # noqa: E402
from ledger.chain import ChainClient, load_signer  # noqa: E402
from tests.support.database import fresh_database  # noqa: E402
from tests.support.load import ServiceProcess, run_load, serve  # noqa: E402
from tests.support.orders import BUYER_RUC  # noqa: E402
from tests.support.services import ancla, counts, settings_env  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--api-workers", type=int, default=2)
    args = parser.parse_args()
    backend = "postgresql" if os.environ.get("ANCLA_TEST_DATABASE_URL") else "sqlite"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        node = start_node(tmp)
        try:
            contract, _ = ChainClient(node.url).deploy_registry(load_signer(key=DEV_KEY_0))
            with fresh_database(backend, tmp) as url:
                settings = Settings(
                    environment="test",
                    database_url=url,
                    rpc_url=node.url,
                    contract_address=contract,
                    signer_key=DEV_KEY_0,
                )
                engine = make_engine(url, pool_size=1)
                sessions = make_session_factory(engine)
                with sessions() as session:
                    key = add_agency(session=session, ruc=BUYER_RUC, name="BENCH").api_key
                env = settings_env(
                    settings,
                    ANCLA_BATCH_MAX_SIZE="1000",
                    ANCLA_BATCH_MAX_AGE_SECONDS="1",
                    ANCLA_RATE_LIMIT_PER_SECOND="0",
                )
                workers = [
                    ServiceProcess(["worker"], env, tmp / f"worker-{i}.log") for i in range(2)
                ]
                service, base = serve(
                    env, tmp / "serve.log", workers=args.api_workers, anchor=False
                )
                try:
                    result = run_load(
                        base,
                        key,
                        seconds=args.seconds,
                        clients=args.clients,
                        bulk_every=5,
                        bulk_size=20,
                    )
                    summary = result.summary()
                    summary["records_per_s"] = round(len(result.accepted) / result.seconds, 1)
                    print(
                        f"{backend}: {args.api_workers} API processes + 2 anchor workers, "
                        f"{args.clients} clients, {args.seconds:g} s"
                    )
                    print(json.dumps(summary, indent=2))
                    started = time.monotonic()
                    while True:
                        state = counts(sessions)
                        if state["pending_records"] == 0 and set(state) == {
                            "final",
                            "pending_records",
                        }:
                            break
                        time.sleep(0.5)
                    print(
                        f"all {len(result.accepted)} accepted records final "
                        f"{time.monotonic() - started:.1f} s after the load stopped"
                    )
                    audit = ancla("verify", "--json", env=env, timeout=1800)
                    report = json.loads(audit.stdout)
                    print(
                        f"ancla verify: exit {audit.returncode}, "
                        f"{report['records_checked']} records, {report['batches_checked']} "
                        f"batches, discrepancies {report['discrepancies_by_kind'] or 'none'}"
                    )
                finally:
                    service.stop()
                    for worker in workers:
                        worker.stop()
                    engine.dispose()
        finally:
            node.stop()


if __name__ == "__main__":
    main()
