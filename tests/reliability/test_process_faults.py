"""Processes killed for real under load, and several API processes with two anchor workers.

After each: every record answered with 2xx is present, anchored exactly once, and a full
`ancla verify` finds nothing lost, doubled or forged."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.runtime import Runtime
from app.services.agencies import add_agency
from tests.support.hardhat import wait_until
from tests.support.load import ServiceProcess, run_load, serve
from tests.support.orders import BUYER_RUC
from tests.support.services import ancla, counts, settings_env

pytestmark = [pytest.mark.reliability, pytest.mark.db, pytest.mark.chain]


def service_env(runtime: Runtime, **extra: str) -> dict[str, str]:
    return settings_env(
        runtime.settings,
        ANCLA_BATCH_MAX_SIZE="50",
        ANCLA_BATCH_MAX_AGE_SECONDS="0.3",
        ANCLA_RATE_LIMIT_PER_SECOND="0",
        **extra,
    )


def api_key(runtime: Runtime) -> str:
    with runtime.session_factory() as session:
        return add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key


def all_final(runtime: Runtime) -> bool:
    c = counts(runtime.session_factory)
    return c["pending_records"] == 0 and set(c) == {"final", "pending_records"}


def check_ledger(runtime: Runtime, base: str, accepted: dict[str, str]) -> None:
    wait_until(lambda: all_final(runtime), timeout=180)
    with httpx.Client(base_url=base) as http:
        for record_hash in accepted:
            receipt = http.get(f"/v1/receipts/{record_hash}")
            assert receipt.status_code == 200, record_hash
            assert receipt.json()["status"] == "final"
    verified = ancla("verify", "--json", env=settings_env(runtime.settings), timeout=300)
    report = json.loads(verified.stdout)
    assert verified.returncode == 0, report
    registry = runtime.registry()
    assert registry is not None
    per_batch = Counter(e.batch_id for e in registry.find_anchor_events())
    assert set(per_batch.values()) == {1}
    assert report["batches_checked"] == len(per_batch)


def test_sigkill_during_ingest_and_anchoring(runtime: Runtime, tmp_path: Path) -> None:
    env = service_env(runtime)
    key = api_key(runtime)
    accepted: dict[str, str] = {}
    for round_number in range(2):
        service, base = serve(env, tmp_path / "serve.log")
        stop = threading.Event()
        loads: list[Any] = []

        def load(
            base: str = base,
            first: int = round_number * 1000,
            stop: threading.Event = stop,
            loads: list[Any] = loads,
        ) -> None:
            loads.append(
                run_load(
                    base,
                    key,
                    seconds=30,
                    clients=4,
                    bulk_every=3,
                    bulk_size=25,
                    first_number=first,
                    stop=stop,
                )
            )

        loader = threading.Thread(target=load)
        loader.start()
        wait_until(lambda: counts(runtime.session_factory).get("final", 0) >= 2, timeout=60)
        time.sleep(0.5)
        service.kill()  # mid-flight: requests in progress, batches being anchored
        stop.set()
        loader.join()
        result = loads[0]
        assert result.errors > 0 or result.requests > 0
        accepted.update(result.accepted)
    service, base = serve(env, tmp_path / "serve.log")
    try:
        assert len(accepted) > 100
        check_ledger(runtime, base, accepted)
    finally:
        service.stop()


@pytest.mark.postgresql_only
def test_api_processes_and_two_workers_under_load(runtime: Runtime, tmp_path: Path) -> None:
    env = service_env(runtime)
    key = api_key(runtime)
    workers = [ServiceProcess(["worker"], env, tmp_path / f"worker-{i}.log") for i in range(2)]
    service, base = serve(env, tmp_path / "serve.log", workers=2, anchor=False)
    try:
        result = run_load(base, key, seconds=8, clients=8, bulk_every=5, bulk_size=20)
        print("load held:", json.dumps(result.summary()))  # noqa: T201 - a figure, not a check
        assert result.errors == 0, result.summary()
        check_ledger(runtime, base, result.accepted)
        with runtime.session_factory() as session:
            from sqlalchemy import func, select

            from app.models import Record

            stored = session.scalar(select(func.count()).select_from(Record))
        assert stored == len(result.accepted)  # nothing lost, nothing doubled
    finally:
        service.stop()
        for worker in workers:
            worker.stop()
