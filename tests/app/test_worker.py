"""The anchor worker on a real chain: sealing, finality, reorgs, resets, crashes, leadership."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.models import Batch, BatchEntry, ChainTarget, Record, utcnow
from app.runtime import Runtime
from app.services.batching import seal_batches
from app.services.receipts import get_receipt
from ledger import verify_receipt
from ledger.chain import ChainClient, Registry
from tests.support.hardhat import wait_until
from tests.support.services import ancla, audit, counts, ingest, settings_env, spawn_ancla

pytestmark = [pytest.mark.db, pytest.mark.chain]


def receipts_verify(runtime: Runtime, hashes: list[str]) -> None:
    with runtime.session_factory() as session:
        for record_hash in hashes:
            receipt = get_receipt(session=session, record_hash=record_hash, genesis=None)
            assert receipt.status in ("anchored", "final"), receipt
            assert verify_receipt(receipt, rpc_url=runtime.settings.rpc_url).ok


def events_per_batch(registry: Registry) -> Counter[int]:
    return Counter(e.batch_id for e in registry.find_anchor_events())


def test_seals_by_size_and_by_age(runtime: Runtime) -> None:
    ingest(runtime.session_factory, range(250))
    with runtime.session_factory() as session:
        # 250 records, batches of 100: two full batches now, the rest waits...
        sealed = seal_batches(session=session, max_size=100, max_age_seconds=3600)
        assert [b.size for b in sealed] == [100, 100]
        assert seal_batches(session=session, max_size=100, max_age_seconds=3600) == []
        # ... until its oldest record is older than the age limit.
        later = utcnow() + timedelta(seconds=3601)
        aged = seal_batches(session=session, max_size=100, max_age_seconds=3600, now=later)
        assert [(b.id, b.size) for b in aged] == [(3, 50)]
        positions = session.scalars(
            select(BatchEntry.position)
            .where(BatchEntry.batch_id == 3)
            .order_by(BatchEntry.record_id)
        ).all()
        assert list(positions) == list(range(50))


def test_anchored_then_final_after_k_confirmations(make_settings: Any, chain: ChainClient) -> None:
    runtime = Runtime.create(make_settings(confirmations=3))
    try:
        hashes = ingest(runtime.session_factory, range(5))
        worker = runtime.make_worker()
        report = worker.tick(force_seal=True)
        assert report.sealed == [1] and report.anchored == [1] and report.finalized == []
        assert get_status(runtime, hashes[0]) == "anchored"
        chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert worker.tick().finalized == []
        chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert worker.tick().finalized == [1]
        assert get_status(runtime, hashes[0]) == "final"
        receipts_verify(runtime, hashes)
    finally:
        runtime.stop()


def get_status(runtime: Runtime, record_hash: str) -> str:
    with runtime.session_factory() as session:
        return get_receipt(session=session, record_hash=record_hash, genesis=None).status


def test_reorged_batch_is_anchored_again(runtime: Runtime, chain: ChainClient) -> None:
    provider = chain.w3.provider
    worker = runtime.make_worker()
    first = ingest(runtime.session_factory, range(3))
    worker.tick(force_seal=True)
    snapshot = provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    second = ingest(runtime.session_factory, range(3, 6))
    worker.tick(force_seal=True)
    with runtime.session_factory() as session:
        old_receipt = get_receipt(session=session, record_hash=second[0], genesis=None)
    assert verify_receipt(old_receipt, rpc_url=runtime.settings.rpc_url).ok
    # The block holding batch 2 disappears; the chain grows another branch.
    provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    report = worker.tick()
    assert report.reset == [2] and report.anchored == [2]
    with runtime.session_factory() as session:
        batch = session.get(Batch, 2)
        assert batch is not None and batch.reanchor_count == 1
        new_receipt = get_receipt(session=session, record_hash=second[0], genesis=None)
    assert new_receipt.anchor != old_receipt.anchor
    with pytest.raises(Exception, match="anchor.block"):
        verify_receipt(old_receipt, rpc_url=runtime.settings.rpc_url)
    receipts_verify(runtime, first + second)
    assert events_per_batch(worker.registry) == Counter({1: 1, 2: 1})
    assert audit(runtime).ok


def test_chain_reset_reanchors_everything(
    runtime: Runtime, make_settings: Any, chain: ChainClient, signer: Any, tmp_path: Path
) -> None:
    from tests.support.hardhat import start_node

    hashes = ingest(runtime.session_factory, range(4))
    runtime.make_worker().tick(force_seal=True)
    new_node = start_node(tmp_path)  # a brand-new chain, same chain id
    try:
        new_chain = ChainClient(new_node.url)
        address, _ = new_chain.deploy_registry(signer)
        moved = Runtime.create(make_settings(rpc_url=new_node.url, contract_address=address))
        try:
            with moved.session_factory() as session:
                before = session.get(ChainTarget, 1)
                assert before is not None and before.genesis_hash != new_chain.genesis_hash()
            with moved.session_factory() as session:
                # Before the worker has even looked at the new chain, the service no
                # longer vouches for anchors on the old one.
                receipt = get_receipt(
                    session=session, record_hash=hashes[0], genesis=moved.chain_genesis()
                )
                assert receipt.status == "pending"
            report = moved.make_worker().tick()
            assert report.reset == [1] and report.anchored == [1]
            receipts_verify(moved, hashes)
            assert audit(moved).ok
        finally:
            moved.stop()
    finally:
        new_node.stop()


@pytest.mark.parametrize("fault", ["after-send", "after-submitted"])
def test_crash_after_sending_is_reconciled_without_double_anchoring(
    runtime: Runtime, fault: str
) -> None:
    hashes = ingest(runtime.session_factory, range(7))
    env = settings_env(runtime.settings)
    crashed = ancla("anchor", env={**env, "ANCLA_FAULT": fault})
    assert crashed.returncode == 137, crashed.stderr
    registry = runtime.registry()
    assert registry is not None
    assert registry.next_batch_id() == 2  # the transaction did reach the chain
    expected = "sealed" if fault == "after-send" else "submitted"
    assert counts(runtime.session_factory).get(expected) == 1
    recovered = ancla("anchor", "--json", env=env)
    assert recovered.returncode == 0, recovered.stderr
    assert registry.next_batch_id() == 2
    assert events_per_batch(registry) == Counter({1: 1})
    receipts_verify(runtime, hashes)


@pytest.mark.parametrize("previous_block", ["as recorded", "wrong"])
def test_recovery_searches_for_the_anchor_after_the_previous_one_not_from_block_0(
    make_settings: Any, chain: ChainClient, signer: Any, previous_block: str
) -> None:
    """A public provider caps eth_getLogs (here at 1,000 blocks). A batch anchored
    by a previous life of the worker (the crash-after-sending case) is adopted
    with a search that starts at the previous batch's anchor, not at block 0;
    if the previous anchor's block is wrong, the whole chain is searched."""
    from tests.support.rpc_endpoint import PickyEndpoint

    runtime = Runtime.create(make_settings(batch_max_size=5))
    try:
        # A long chain: its first 20,000 blocks hold no anchor of this registry.
        chain.w3.provider.make_request("hardhat_mine", [hex(20_000)])  # type: ignore[arg-type]
        ingest(runtime.session_factory, range(5))
        runtime.make_worker().tick()
        assert counts(runtime.session_factory).get("final") == 1
        hashes = ingest(runtime.session_factory, range(5, 10))
        with runtime.session_factory() as session:
            (second,) = seal_batches(session=session, max_size=5, max_age_seconds=3600)
            assert second.id == 2
            registry = runtime.registry()
            assert registry is not None
            # Sent, then the crash: the chain has batch 2, this ledger does not know it.
            sent = registry.send_anchor(
                signer, batch_id=2, root=second.root, leaf_count=second.size
            )
            chain.wait(sent.tx_hash)
            if previous_block == "wrong":
                first = session.get(Batch, 1)
                assert first is not None and first.block_number is not None
                first.block_number += 5_000  # beyond batch 2's anchor
                session.commit()
        endpoint = PickyEndpoint(runtime.settings.rpc_url, max_log_range=1_000)
        behind = Runtime.create(make_settings(batch_max_size=5, rpc_url=endpoint.url))
        try:
            behind.make_worker().tick()
        finally:
            behind.stop()
            endpoint.close()
        with runtime.session_factory() as session:
            adopted = session.get(Batch, 2)
            assert adopted is not None and adopted.tx_hash == sent.tx_hash
            assert adopted.status in ("anchored", "final")
        if previous_block == "as recorded":
            assert endpoint.methods["eth_getLogs"] == 1 and endpoint.refused_log_ranges == 0
        else:  # the bounded search found nothing, then the halving search of every block
            assert endpoint.refused_log_ranges > 0
        assert events_per_batch(registry) == Counter({1: 1, 2: 1})
        receipts_verify(runtime, hashes)
    finally:
        runtime.stop()


@pytest.mark.postgresql_only
def test_two_workers_anchor_each_batch_exactly_once(runtime: Runtime, tmp_path: Path) -> None:
    """Two `ancla worker` processes on one PostgreSQL; the leader is killed half-way."""
    env = settings_env(
        runtime.settings, ANCLA_BATCH_MAX_SIZE="20", ANCLA_BATCH_MAX_AGE_SECONDS="0.2"
    )
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    handles = [log.open("wb") for log in logs]
    workers = [spawn_ancla("worker", env=env, log=handle) for handle in handles]

    def leader_index() -> int | None:
        leading = [i for i, log in enumerate(logs) if b"now leads anchoring" in log.read_bytes()]
        return leading[0] if len(leading) == 1 else None

    try:
        wait_until(lambda: leader_index() is not None, timeout=60)
        first_leader = leader_index()
        assert first_leader is not None
        hashes: list[str] = []
        for start in range(0, 200, 40):
            hashes += ingest(runtime.session_factory, range(start, start + 40))
            if start == 80:
                workers[first_leader].send_signal(signal.SIGKILL)
        wait_until(
            lambda: (
                (c := counts(runtime.session_factory))["pending_records"] == 0
                and set(c) == {"final", "pending_records"}
            ),
            timeout=120,
        )
        standby = logs[1 - first_leader].read_bytes()
        assert b"now leads anchoring" in standby, standby.decode(errors="replace")
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        for handle in handles:
            handle.close()
    registry = runtime.registry()
    assert registry is not None
    per_batch = events_per_batch(registry)
    assert per_batch and set(per_batch.values()) == {1}
    with runtime.session_factory() as session:
        ids = list(session.scalars(select(Batch.id).order_by(Batch.id)))
    assert ids == sorted(per_batch) == list(range(1, len(ids) + 1))
    receipts_verify(runtime, hashes)


def test_oldest_unanchored_follows_pending_sealed_and_anchored(runtime: Runtime) -> None:
    from app.services.anchoring import oldest_unanchored

    with runtime.session_factory() as session:
        assert oldest_unanchored(session=session) is None
    ingest(runtime.session_factory, range(3))
    with runtime.session_factory() as session:
        first = session.scalar(select(Record.accepted_at).order_by(Record.id).limit(1))
        assert oldest_unanchored(session=session) == first
        seal_batches(session=session, max_size=2, max_age_seconds=3600)  # 2 sealed, 1 pending
        assert oldest_unanchored(session=session) == first
    runtime.make_worker().tick(force_seal=True)
    with runtime.session_factory() as session:
        assert oldest_unanchored(session=session) is None
