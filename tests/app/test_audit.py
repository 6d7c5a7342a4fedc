"""`ancla verify`: tamper with the database and the chain for real; each kind is found, and
nothing else is reported."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from app.models import Batch, BatchEntry, PendingRecord, Record
from app.runtime import Runtime
from app.services.audit import AuditReport, AuditScope
from app.services.batching import seal_batches
from ledger.chain import ChainClient, Registry
from tests.support.orders import BUYER_RUC
from tests.support.services import ancla, audit, ingest, settings_env

pytestmark = [pytest.mark.db, pytest.mark.chain]


@pytest.fixture
def ledger(make_settings: Any) -> Any:
    """30 records in 3 anchored batches of 10, plus 2 pending records."""
    runtime = Runtime.create(make_settings(batch_max_size=10))
    hashes = ingest(runtime.session_factory, range(30))
    runtime.make_worker().tick(force_seal=True)
    hashes += ingest(runtime.session_factory, range(30, 32))
    yield runtime, hashes
    runtime.stop()


def kinds(report: AuditReport) -> Counter[str]:
    return Counter(d.kind for d in report.discrepancies)


def change(runtime: Runtime, statement: Any) -> None:
    with runtime.session_factory() as session:
        session.execute(statement)
        session.commit()


def test_clean_ledger_has_no_discrepancies(ledger: Any) -> None:
    runtime, _ = ledger
    report = audit(runtime)
    assert report.ok, report.to_dict()
    assert (report.records_checked, report.batches_checked, report.anchors_checked) == (32, 3, 3)


def test_edited_record_bytes(ledger: Any) -> None:
    runtime, hashes = ledger
    with runtime.session_factory() as session:
        canonical = session.scalar(select(Record.canonical).where(Record.hash == hashes[4]))
    assert canonical is not None
    forged = canonical.replace(b'"total":"', b'"total":"9')
    change(runtime, update(Record).where(Record.hash == hashes[4]).values(canonical=forged))
    report = audit(runtime)
    assert kinds(report) == Counter({"tampered_record": 1})
    assert report.discrepancies[0].record_hash == hashes[4]


def test_edited_derived_column(ledger: Any) -> None:
    runtime, hashes = ledger
    change(runtime, update(Record).where(Record.hash == hashes[7]).values(total=1))
    report = audit(runtime)
    assert kinds(report) == Counter({"derived_mismatch": 1})
    assert report.discrepancies[0].detail == "column total disagrees with the record's bytes"


def delete_record(runtime: Runtime, record_hash: str) -> None:
    """Delete a record and its batch entry, as one who knew the schema would."""
    record_id = select(Record.id).where(Record.hash == record_hash).scalar_subquery()
    change(runtime, delete(BatchEntry).where(BatchEntry.record_id == record_id))
    change(runtime, delete(Record).where(Record.hash == record_hash))


def test_deleted_record(ledger: Any) -> None:
    runtime, hashes = ledger
    delete_record(runtime, hashes[12])
    report = audit(runtime)
    assert kinds(report) == Counter({"missing_record": 1})
    assert report.discrepancies[0].batch_id == 2


def test_deleted_record_whose_entry_is_left(ledger: Any) -> None:
    # No foreign key refuses it (migration 0006): the batch still lacks it.
    runtime, hashes = ledger
    change(runtime, delete(Record).where(Record.hash == hashes[12]))
    report = audit(runtime)
    assert kinds(report) == Counter({"missing_record": 1})
    assert report.discrepancies[0].batch_id == 2


def test_entry_naming_a_batch_that_does_not_exist(ledger: Any) -> None:
    runtime, hashes = ledger
    record_id = select(Record.id).where(Record.hash == hashes[3]).scalar_subquery()
    change(runtime, update(BatchEntry).where(BatchEntry.record_id == record_id).values(batch_id=99))
    report = audit(runtime)
    assert kinds(report) == Counter({"missing_record": 1, "dangling_reference": 1})
    dangling = next(d for d in report.discrepancies if d.kind == "dangling_reference")
    assert (dangling.record_hash, dangling.batch_id) == (hashes[3], 99)
    assert dangling.detail == "entered in batch 99, which is not in the database"


def test_queued_record_deleted(ledger: Any) -> None:
    runtime, hashes = ledger
    with runtime.session_factory() as session:
        record_id = session.scalar(select(Record.id).where(Record.hash == hashes[31]))
    change(runtime, delete(Record).where(Record.id == record_id))
    report = audit(runtime)
    assert kinds(report) == Counter({"dangling_reference": 1})
    assert report.discrepancies[0].record_id == record_id
    assert report.discrepancies[0].detail == (
        f"record id {record_id} is queued for a batch but is not in the database:"
        " sealing stops on it"
    )
    # Scoped runs cannot place a queue row with no record: not reported there.
    assert audit(runtime, AuditScope(buyer=BUYER_RUC)).ok


def test_record_naming_an_agency_that_does_not_exist(ledger: Any) -> None:
    runtime, hashes = ledger
    change(runtime, update(Record).where(Record.hash == hashes[8]).values(agency_id=4242))
    report = audit(runtime)
    assert kinds(report) == Counter({"dangling_reference": 1})
    assert report.discrepancies[0].record_hash == hashes[8]
    assert report.discrepancies[0].detail == (
        "recorded by agency id 4242, which is not in the database"
    )


def test_record_moved_to_another_batch(ledger: Any) -> None:
    runtime, hashes = ledger
    record_id = select(Record.id).where(Record.hash == hashes[0]).scalar_subquery()
    # To a position batch 3 does not have (10 records: positions 0-9).
    change(
        runtime,
        update(BatchEntry).where(BatchEntry.record_id == record_id).values(batch_id=3, position=10),
    )
    report = audit(runtime)
    assert kinds(report) == Counter({"missing_record": 1, "extra_record": 1})
    assert {d.kind: d.batch_id for d in report.discrepancies} == {
        "missing_record": 1,
        "extra_record": 3,
    }


def test_changed_stored_root(ledger: Any) -> None:
    runtime, _ = ledger
    change(runtime, update(Batch).where(Batch.id == 2).values(root="0x" + "11" * 32))
    report = audit(runtime)
    assert set(kinds(report)) == {"root_mismatch"}
    assert {d.batch_id for d in report.discrepancies} == {2}


def test_record_hash_overwritten_with_what_is_not_a_hash(ledger: Any) -> None:
    """The column holds whatever is written outside Ancla: on SQLite the hash's
    text form (as stored before migration 0008), on PostgreSQL 31 bytes. The
    audit names the record and its batch instead of failing."""
    runtime, hashes = ledger
    with runtime.session_factory() as session:
        record_id = session.scalar(select(Record.id).where(Record.hash == hashes[5]))
        sqlite = session.get_bind().dialect.name == "sqlite"
        forged: str | bytes = hashes[5] if sqlite else bytes.fromhex(hashes[5][2:])[:31]
        session.execute(
            text("UPDATE records SET hash = :forged WHERE id = :id"),
            {"forged": forged, "id": record_id},
        )
        session.commit()
    report = audit(runtime)
    shown = f"text {hashes[5]!r}" if sqlite else hashes[5][:-2]
    # The record; its batch's root, which cannot be rebuilt; the record again,
    # as the one whose proof does not lead to that root.
    assert kinds(report) == Counter({"tampered_record": 1, "root_mismatch": 2})
    tampered = next(d for d in report.discrepancies if d.kind == "tampered_record")
    assert (tampered.record_id, tampered.record_hash) == (record_id, shown)
    assert {d.record_hash for d in report.discrepancies if d.kind == "root_mismatch"} == {
        None,
        shown,
    }


def test_record_hash_rewritten_with_its_bytes(ledger: Any) -> None:
    """A forger who rewrites bytes *and* hash: the rebuilt root betrays the batch, the
    stored proof names the record."""
    runtime, hashes = ledger
    from ledger import record_hash
    from ledger.canonical import canonical_bytes, parse_record

    with runtime.session_factory() as session:
        canonical = session.scalar(select(Record.canonical).where(Record.hash == hashes[15]))
    assert canonical is not None
    record = parse_record(canonical)
    record["purchase_order"]["supplier"]["name"] = "OTRO PROVEEDOR"
    change(
        runtime,
        update(Record)
        .where(Record.hash == hashes[15])
        .values(
            canonical=canonical_bytes(record),
            hash=record_hash(record),
            supplier_name="OTRO PROVEEDOR",
        ),
    )
    report = audit(runtime)
    assert set(kinds(report)) == {"root_mismatch"}
    assert record_hash(record) in {d.record_hash for d in report.discrepancies}


def test_chain_reverted_under_the_ledger(ledger: Any, chain: ChainClient) -> None:
    runtime, _ = ledger
    provider = chain.w3.provider
    snapshot = provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    more = ingest(runtime.session_factory, range(40, 45))
    runtime.make_worker().tick(force_seal=True)
    assert audit(runtime).ok
    provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    for _ in range(3):
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    report = audit(runtime)
    assert kinds(report) == Counter({"anchor_reorged": 1})
    assert report.discrepancies[0].batch_id == 4
    assert more


def test_stored_anchor_differs_from_the_chain(ledger: Any) -> None:
    runtime, _ = ledger
    change(runtime, update(Batch).where(Batch.id == 1).values(tx_hash="0x" + "ab" * 32))
    report = audit(runtime)
    assert kinds(report) == Counter({"anchor_mismatch": 1})


def anchor_block(runtime: Runtime, batch_id: int) -> int:
    with runtime.session_factory() as session:
        block = session.scalar(select(Batch.block_number).where(Batch.id == batch_id))
    assert block is not None
    return int(block)


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first block of each read of the registry's events (the reads are real)."""
    starts: list[int] = []
    real = Registry.find_anchor_events

    def find_anchor_events(self: Registry, **kwargs: Any) -> Any:
        starts.append(kwargs.get("from_block", 0))
        return real(self, **kwargs)

    monkeypatch.setattr(Registry, "find_anchor_events", find_anchor_events)
    return starts


def test_the_chain_is_read_from_batch_ones_block_not_from_genesis(
    ledger: Any, chain: ChainClient, scans: list[int]
) -> None:
    # Batch ids are anchored in order from 1, so no event of the registry is older
    # than batch 1's: on a long chain with capped eth_getLogs ranges, reading from
    # block 0 cost a request per range of every block before the contract.
    runtime, _ = ledger
    report = audit(runtime)
    assert report.ok, report.to_dict()
    assert report.anchors_checked == 3
    assert scans == [anchor_block(runtime, 1)]
    assert 0 < scans[0] < chain.head()


def test_a_stored_block_number_that_is_not_the_anchors_is_a_mismatch(ledger: Any) -> None:
    # Receipts carry the block number and verifiers look the block up by it.
    runtime, _ = ledger
    change(
        runtime,
        update(Batch).where(Batch.id == 2).values(block_number=anchor_block(runtime, 2) + 1),
    )
    report = audit(runtime)
    assert kinds(report) == Counter({"anchor_mismatch": 1})
    assert report.discrepancies[0].batch_id == 2


def test_batch_one_stored_in_a_later_block_reads_the_chain_from_its_start(
    ledger: Any, scans: list[int]
) -> None:
    # The database names where to start reading; a wrong start hides nothing.
    runtime, _ = ledger
    later = anchor_block(runtime, 3)
    change(runtime, update(Batch).where(Batch.id == 1).values(block_number=later))
    report = audit(runtime)
    assert kinds(report) == Counter({"anchor_mismatch": 1})
    assert report.discrepancies[0].batch_id == 1
    assert scans == [later, 0]


def test_unanchored_too_long(ledger: Any) -> None:
    runtime, hashes = ledger
    report = audit(runtime, window=0)
    assert kinds(report) == Counter({"unanchored_too_long": 2})
    assert {d.record_hash for d in report.discrepancies} == set(hashes[30:])


def test_record_queued_again_after_its_batch(ledger: Any) -> None:
    runtime, hashes = ledger
    record_id = select(Record.id).where(Record.hash == hashes[5]).scalar_subquery()
    change(runtime, insert(PendingRecord).from_select(["record_id"], select(record_id)))
    report = audit(runtime)
    assert kinds(report) == Counter({"queued_in_batch": 1})
    found = report.discrepancies[0]
    assert (found.record_hash, found.batch_id) == (hashes[5], 1)
    assert found.detail == "in batch 1 and still queued for one: sealing stops on it"
    with runtime.session_factory() as session, pytest.raises(IntegrityError):
        seal_batches(session=session, max_size=10, max_age_seconds=5, force=True)


def test_record_taken_off_the_queue_without_a_batch(ledger: Any) -> None:
    # It would never be sealed, so never anchored: found at once, not after the window.
    runtime, hashes = ledger
    record_id = select(Record.id).where(Record.hash == hashes[31]).scalar_subquery()
    change(runtime, delete(PendingRecord).where(PendingRecord.record_id == record_id))
    report = audit(runtime)
    assert kinds(report) == Counter({"unqueued_record": 1})
    assert report.discrepancies[0].record_hash == hashes[31]
    assert report.discrepancies[0].detail == (
        "in no batch and not queued for one: it would never be anchored"
    )


def test_scoped_runs(ledger: Any) -> None:
    runtime, hashes = ledger
    delete_record(runtime, hashes[25])
    only_batch_1 = audit(runtime, AuditScope(batch_id=1))
    assert only_batch_1.ok and only_batch_1.records_checked == 10
    only_batch_3 = audit(runtime, AuditScope(batch_id=3))
    assert kinds(only_batch_3) == Counter({"missing_record": 1})


def test_cli_exit_codes_and_json(ledger: Any) -> None:
    runtime, hashes = ledger
    env = settings_env(runtime.settings)
    clean = ancla("verify", "--json", env=env)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["records_checked"] == 32
    change(runtime, update(Record).where(Record.hash == hashes[3]).values(buyer_name="X"))
    dirty = ancla("verify", "--json", env=env)
    assert dirty.returncode == 1
    assert json.loads(dirty.stdout)["discrepancies_by_kind"] == {"derived_mismatch": 1}
    # Worker processes forked from the server the command starts first
    # (app.processes): the same report.
    jobs = ancla("verify", "--json", "--jobs", "2", env=env)
    assert jobs.returncode == 1, jobs.stderr
    assert json.loads(jobs.stdout) == json.loads(dirty.stdout)
    human = ancla("verify", env=env)
    assert human.returncode == 1 and "derived_mismatch" in human.stdout
    down = ancla("verify", env={**env, "ANCLA_RPC_URL": "http://127.0.0.1:9"})
    assert down.returncode == 2 and "could not check against the chain" in down.stderr
    bad = ancla("verify", "--buyer", "123", env=env)
    assert bad.returncode == 2 and "--buyer must be an 11-digit RUC" in bad.stderr


def test_discrepancies_found_in_worker_processes_are_reported_as_in_process(
    ledger: Any,
) -> None:
    """`ancla verify --jobs N`: each process checks a range of batches; the merged report
    is the one a single process makes, discrepancy for discrepancy, in batch order.

    The first range (batch 1, with the tampered record) is always a worker
    process's; the calling process takes ranges from the back."""
    from datetime import timedelta

    from app.services.audit import Auditor, WorkerSetup

    runtime, hashes = ledger
    with runtime.session_factory() as session:
        canonical = session.scalar(select(Record.canonical).where(Record.hash == hashes[4]))
    assert canonical is not None
    change(
        runtime,
        update(Record)
        .where(Record.hash == hashes[4])
        .values(canonical=canonical.replace(b'"total":"', b'"total":"9')),
    )
    change(runtime, update(Record).where(Record.hash == hashes[17]).values(total=1))
    change(runtime, update(Batch).where(Batch.id == 3).values(root="0x" + "00" * 32))
    # And what the calling process checks meanwhile (with no parallel plans on
    # PostgreSQL): a record in no batch and not queued, one of no agency.
    lone = select(Record.id).where(Record.hash == hashes[31]).scalar_subquery()
    change(runtime, delete(PendingRecord).where(PendingRecord.record_id == lone))
    change(runtime, update(Record).where(Record.hash == hashes[8]).values(agency_id=4242))
    registry = runtime.registry()
    assert registry is not None
    settings = runtime.settings
    worker = WorkerSetup(
        database_url=settings.database_url,
        rpc_url=settings.rpc_url,
        contract=registry.address,
    )
    seen: list[int] = []

    def auditor() -> Auditor:
        return Auditor(
            session_factory=runtime.session_factory,
            client=runtime.client,
            registry=registry,
            confirmations=1,
            pending_window=timedelta(seconds=3600),
            progress=seen.append,
        )

    alone = auditor().run()
    together = auditor().run(jobs=2, worker=worker)
    assert together.to_dict() == alone.to_dict()
    assert kinds(together) == Counter(
        # Batch 3: rebuilt vs stored, chain vs stored, and each of its 10 proofs.
        {
            "tampered_record": 1,
            "derived_mismatch": 1,
            "root_mismatch": 12,
            "unqueued_record": 1,
            "dangling_reference": 1,
        }
    )
    assert sum(seen) == 2 * together.records_checked == 64
