"""Chain faults produced for real: an RPC node that goes away or answers garbage, dropped
and underpriced transactions. After each, `ancla verify` finds nothing lost or doubled."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.main import create_app
from app.models import Batch
from app.runtime import Runtime
from app.services.agencies import add_agency
from app.services.anchoring import AnchorWorker
from app.services.audit import Auditor
from ledger.chain import ChainClient, Registry
from ledger.errors import ChainUnavailable
from tests.support.hardhat import wait_until
from tests.support.orders import BUYER_RUC, order
from tests.support.proxy import FaultyProxy
from tests.support.services import audit, counts, ingest

pytestmark = [pytest.mark.reliability, pytest.mark.db, pytest.mark.chain]


def audit_clean(runtime: Runtime, registry: Registry) -> None:
    report = audit(runtime)
    assert report.ok, report.to_dict()
    assert report.anchors_checked == len(anchors_per_batch(registry))


def anchors_per_batch(registry: Registry) -> Counter[int]:
    return Counter(e.batch_id for e in registry.find_anchor_events())


@pytest.fixture
def proxy(rpc_url: str) -> Iterator[FaultyProxy]:
    target = urlparse(rpc_url)
    assert target.hostname and target.port
    faulty = FaultyProxy(target.hostname, target.port)
    yield faulty
    faulty.close()


def rpc_errors() -> float:
    return REGISTRY.get_sample_value("ancla_rpc_errors_total") or 0.0


def test_rpc_outage_and_garbage_then_recovery(
    make_settings: Any, proxy: FaultyProxy, registry: Registry
) -> None:
    runtime = Runtime.create(
        make_settings(rpc_url=proxy.url, batch_max_age_seconds=0.2, rpc_timeout_seconds=2)
    )
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(runtime=runtime, worker=True)) as client:
        for i in range(5):
            assert (
                client.post("/v1/purchase-orders", json=order(i), headers=headers).status_code
                == 202
            )
        wait_until(lambda: counts(runtime.session_factory).get("final") == 1, timeout=30)

        proxy.set_mode("down")
        errors_before = rpc_errors()
        # Orders keep being accepted while the chain is unreachable.
        for i in range(5, 10):
            assert (
                client.post("/v1/purchase-orders", json=order(i), headers=headers).status_code
                == 202
            )
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "unreachable" in ready.json()["checks"]["chain"]["error"]
        wait_until(lambda: rpc_errors() > errors_before, timeout=30)

        proxy.set_mode("garbage")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "unusable RPC answer" in ready.json()["checks"]["chain"]["error"]
        errors_garbage = rpc_errors()
        wait_until(lambda: rpc_errors() > errors_garbage, timeout=60)

        proxy.set_mode("up")
        wait_until(
            lambda: (
                (c := counts(runtime.session_factory))["pending_records"] == 0
                and set(c) == {"final", "pending_records"}
            ),
            timeout=90,
        )
        assert client.get("/readyz").status_code == 200
    assert set(anchors_per_batch(registry).values()) == {1}
    audit_clean(runtime, registry)
    runtime.stop()


@pytest.fixture
def manual_mining(chain: ChainClient) -> Iterator[Any]:
    provider = chain.w3.provider
    provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        yield provider
    finally:
        provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def stuck_worker(runtime: Runtime, **config: Any) -> AnchorWorker:
    worker = runtime.make_worker()
    worker.config.mine_timeout = 0.3
    worker.config.resend_after_seconds = 0
    for name, value in config.items():
        setattr(worker.config, name, value)
    return worker


def batch_1(runtime: Runtime) -> Batch:
    with runtime.session_factory() as session:
        batch = session.get(Batch, 1)
        assert batch is not None
        return batch


def test_dropped_transaction_is_sent_again(
    runtime: Runtime, manual_mining: Any, registry: Registry, chain: ChainClient
) -> None:
    hashes = ingest(runtime.session_factory, range(4))
    worker = stuck_worker(runtime)
    assert worker.tick(force_seal=True).anchored == []
    first_tx = batch_1(runtime).tx_hash
    assert batch_1(runtime).status == "submitted" and first_tx
    manual_mining.make_request("hardhat_dropTransaction", [first_tx])
    assert not chain.transaction_known(first_tx)
    worker.tick()  # the node forgot it: back to sealed, broadcast again
    second = batch_1(runtime)
    assert second.status == "submitted" and second.reanchor_count == 1
    # Same nonce, fees and data sign to the same bytes: the node has it again.
    assert second.tx_hash is not None and chain.transaction_known(second.tx_hash)
    manual_mining.make_request("evm_mine", [])
    assert worker.tick().anchored == [1]
    assert anchors_per_batch(registry) == Counter({1: 1})
    assert len(hashes) == 4
    audit_clean(runtime, registry)


def test_underpriced_transaction_is_replaced_with_higher_fees(
    runtime: Runtime, manual_mining: Any, registry: Registry, chain: ChainClient
) -> None:
    ingest(runtime.session_factory, range(3))
    worker = stuck_worker(runtime)
    worker.tick(force_seal=True)
    first_tx = batch_1(runtime).tx_hash
    sent = chain.w3.eth.get_transaction(first_tx)  # type: ignore[arg-type]
    # The next blocks' base fee jumps above what the transaction offers.
    manual_mining.make_request(
        "hardhat_setNextBlockBaseFeePerGas", [hex(int(sent["maxFeePerGas"]) * 3 // 2)]
    )
    manual_mining.make_request("evm_mine", [])
    assert chain.receipt(first_tx) is None  # priced out: not included
    for _ in range(10):
        if worker.tick().anchored:
            break
        manual_mining.make_request("evm_mine", [])
    final = batch_1(runtime)
    assert final.status in ("anchored", "final")
    assert final.tx_hash != first_tx
    replaced = chain.w3.eth.get_transaction(final.tx_hash)  # type: ignore[arg-type]
    assert replaced["nonce"] == sent["nonce"]
    assert int(replaced["maxFeePerGas"]) > int(sent["maxFeePerGas"])
    assert anchors_per_batch(registry) == Counter({1: 1})
    audit_clean(runtime, registry)


def test_fee_bumps_are_bounded(runtime: Runtime, manual_mining: Any, chain: ChainClient) -> None:
    ingest(runtime.session_factory, range(2))
    worker = stuck_worker(runtime, max_fee_bumps=1)
    worker.tick(force_seal=True)
    sent = chain.w3.eth.get_transaction(batch_1(runtime).tx_hash)  # type: ignore[arg-type]
    manual_mining.make_request(
        "hardhat_setNextBlockBaseFeePerGas", [hex(int(sent["maxFeePerGas"]) * 100)]
    )
    manual_mining.make_request("evm_mine", [])
    for _ in range(3):
        worker.tick()
    stuck = batch_1(runtime)
    assert stuck.status == "submitted" and stuck.fee_bumps == 1
    assert stuck.last_error == (
        "anchor of batch 1 is still unmined after 1 fee bumps; waiting (raise the limit or "
        "the fees)"
    )
    # Leave the chain clean for the next tests: drop what is pending.
    manual_mining.make_request("hardhat_dropTransaction", [stuck.tx_hash])


def test_chain_gone_mid_audit_is_an_error_not_a_hang(
    make_settings: Any, proxy: FaultyProxy, registry: Registry
) -> None:
    """The audit streams records (a COPY on PostgreSQL) while it asks the chain per
    window of 32 anchors; the node going away between two windows must end the
    audit with ChainUnavailable, and leave the database usable."""
    runtime = Runtime.create(make_settings(rpc_url=proxy.url, batch_max_size=1))
    try:
        ingest(runtime.session_factory, range(40))
        worker = runtime.make_worker()
        while counts(runtime.session_factory).get("final", 0) < 40:
            worker.tick(force_seal=True)
        auditor = Auditor(
            session_factory=runtime.session_factory,
            client=ChainClient(proxy.url, timeout=2),
            registry=ChainClient(proxy.url, timeout=2).registry(registry.address),
            confirmations=1,
            pending_window=timedelta(hours=1),
            # After the first batch's records, before the second window's questions.
            progress=lambda n: proxy.set_mode("down"),
        )
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                auditor.run()
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the test below
                outcome.append(exc)

        # A daemon thread: the bug was a hang, which must fail the test, not stall it.
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout=120)
        assert not thread.is_alive(), "the audit hung after the chain went away"
        assert len(outcome) == 1 and isinstance(outcome[0], ChainUnavailable), outcome
        assert counts(runtime.session_factory)["final"] == 40
    finally:
        proxy.set_mode("up")
        runtime.stop()
