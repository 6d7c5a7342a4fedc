"""The monitor (app.services.monitor) against a real service and a real chain: a clean
catch-up, then each finding produced for real (the service's database changed as an
intruder would, roots anchored on chain that the service never serves) and asserted by
kind and message. The service is the real app in process (TestClient is an httpx
client); tests/e2e/test_monitor_cli.py drives `ancla monitor` against `ancla serve`."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update

from app.db import make_engine, make_session_factory
from app.main import create_app
from app.models import FLAWED, SEEN, VERIFIED, BatchEntry, MonitorFinding, Record
from app.runtime import Runtime
from app.services import monitor as mon
from app.services.agencies import add_agency
from app.services.batching import seal_batches
from app.services.mirror import MirrorRefused
from app.settings import Settings
from ledger.chain import Registry
from tests.app.test_audit_histories import event, forge
from tests.support.database import fresh_database
from tests.support.mirrors import entries_by_batch, verdicts
from tests.support.orders import BUYER_RUC, order
from tests.support.services import ingest

pytestmark = [pytest.mark.db, pytest.mark.chain]

BATCH_SIZE = 4


@pytest.fixture
def service(make_settings: Callable[..., Settings]) -> Iterator[Runtime]:
    runtime = Runtime.create(make_settings(batch_max_size=BATCH_SIZE))
    yield runtime
    runtime.stop()


@pytest.fixture
def api(service: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=service)) as client:
        yield client


@pytest.fixture
def mirror_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path / "mirror") as url:
        yield url


Watch = Callable[..., mon.Monitor]


@pytest.fixture
def watch(mirror_url: str, api: TestClient, registry: Registry) -> Iterator[Watch]:
    started: list[mon.Monitor] = []

    def make(**options: Any) -> mon.Monitor:
        monitor = mon.Monitor(
            engine=make_engine(mirror_url),
            service=mon.ServiceClient("http://testserver", http=api),
            chain=registry.client,
            registry=registry,
            retry=mon.RetryPolicy(attempts=2, first_delay=0.01),
            **options,
        )
        monitor.start()
        started.append(monitor)
        return monitor

    yield make
    for monitor in started:
        monitor.close()


def anchor(service: Runtime, numbers: range) -> list[str]:
    """Record orders ``numbers`` and anchor them all, in batches of BATCH_SIZE."""
    hashes = ingest(service.session_factory, numbers)
    service.make_worker().tick(force_seal=True)
    return hashes


def found(report: mon.PassReport) -> list[tuple[str, int | None, str | None]]:
    return sorted(
        (r.finding.kind, r.finding.batch_id, r.finding.record_hash) for r in report.findings
    )


def only(report: mon.PassReport, kind: str) -> mon.Finding:
    (finding,) = [r.finding for r in report.findings if r.finding.kind == kind]
    return finding


def mirrored(mirror_url: str) -> dict[str, bytes]:
    engine = make_engine(mirror_url)
    try:
        with make_session_factory(engine)() as session:
            rows = session.execute(select(Record.hash, Record.canonical)).all()
            return {row[0]: row[1] for row in rows}
    finally:
        engine.dispose()


def alter(service: Runtime, record_hash: str) -> bytes:
    """Change a stored record's bytes (the amounts), as an intruder with database access would."""
    with service.session_factory() as session:
        canonical = session.scalar(select(Record.canonical).where(Record.hash == record_hash))
        assert canonical is not None
        altered = canonical.replace(b'"total":"', b'"total":"9', 1)
        session.execute(update(Record).where(Record.hash == record_hash).values(canonical=altered))
        session.commit()
    return altered


def delete_record(service: Runtime, record_hash: str) -> None:
    with service.session_factory() as session:
        session.execute(delete(Record).where(Record.hash == record_hash))
        session.commit()


def order_of(i: int) -> str:
    return f"{BUYER_RUC}/{order(i)['order_number']}"


# -- a clean catch-up -------------------------------------------------------------------


def test_a_monitor_catches_up_clean_and_mirrors_every_record_as_served(
    service: Runtime, api: TestClient, watch: Watch, mirror_url: str
) -> None:
    hashes = anchor(service, range(10))
    monitor = watch()
    report = monitor.run_pass()
    assert report.error is None and report.findings == [], report.to_dict()
    assert (report.batches_checked, report.batches_verified, report.records_mirrored) == (3, 3, 10)
    assert report.scanned_from == 0 and report.blocks_scanned == report.scanned_to + 1
    # The mirror holds every record, byte for byte as the service serves it.
    copy = mirrored(mirror_url)
    assert sorted(copy) == sorted(hashes)
    for record_hash in hashes:
        assert copy[record_hash] == api.get(f"/v1/records/{record_hash}").content
    assert verdicts(mirror_url) == {1: (VERIFIED, 1), 2: (VERIFIED, 1), 3: (VERIFIED, 1)}
    # A mirror is an Ancla database: the service's own reads work on it.
    mirror_runtime = Runtime.create(
        service.settings.model_copy(update={"database_url": mirror_url})
    )
    try:
        with TestClient(create_app(runtime=mirror_runtime)) as mirror_api:
            receipt = mirror_api.get(f"/v1/receipts/{hashes[0]}").json()
            assert receipt == api.get(f"/v1/receipts/{hashes[0]}").json() | {"status": "anchored"}
            assert (
                mirror_api.get("/v1/batches/2/tree").json() == api.get("/v1/batches/2/tree").json()
            )
    finally:
        mirror_runtime.stop()
    # The next pass reads on from the last block: nothing new, the verified batches
    # fetched again and compared, none checked as new.
    again = monitor.run_pass()
    assert again.findings == [] and again.error is None
    assert (again.blocks_scanned, again.batches_checked, again.batches_rechecked) == (0, 0, 3)
    anchor(service, range(10, 13))
    later = monitor.run_pass(stop=None)
    assert (later.batches_checked, later.batches_verified, later.records_mirrored) == (1, 1, 3)
    metrics = monitor.metrics
    assert metrics.batches_verified._value.get() == 4
    assert metrics.records_mirrored._value.get() == 13


def test_order_histories_are_mirrored_and_checked_across_batches(
    service: Runtime, api: TestClient, watch: Watch
) -> None:
    with service.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MP").api_key
    headers = {"Authorization": f"Bearer {key}"}
    posted = order(1)
    head = api.post("/v1/purchase-orders", json=posted, headers=headers).json()["hash"]
    service.make_worker().tick(force_seal=True)  # batch 1: the order alone
    url = f"/v1/purchase-orders/{BUYER_RUC}/{posted['order_number']}/events"
    for kind, members in (
        ("accepted", {}),
        ("paid", {"payment": {"amount": "1000.00", "currency": "PEN"}}),
    ):
        body = {"prev": head, "type": kind, "occurred_at": "2026-02-01T10:00:00-05:00"}
        answer = api.post(url, json=body | members, headers=headers)
        assert answer.status_code == 202, answer.text
        head = answer.json()["hash"]
    service.make_worker().tick(force_seal=True)  # batch 2: its events
    report = watch().run_pass()
    assert report.findings == [] and report.batches_verified == 2, report.to_dict()


# -- findings, each produced for real ------------------------------------------------------


def test_bytes_altered_before_the_first_check_are_a_record_mismatch(
    service: Runtime, watch: Watch, mirror_url: str
) -> None:
    hashes = anchor(service, range(8))
    altered = alter(service, hashes[5])
    report = watch().run_pass()
    assert found(report) == [("record_mismatch", 2, hashes[5])]
    finding = only(report, "record_mismatch")
    position = hashes[4:].index(hashes[5])
    assert finding.message == (
        f"line {position + 1} of batch 2's records hashes to 0x{_keccak(altered)}, "
        f"not to its leaf's record {hashes[5]}"
    )
    # The others of its batch are verified and mirrored; the batch is not verified.
    assert sorted(mirrored(mirror_url)) == sorted(h for h in hashes if h != hashes[5])
    assert verdicts(mirror_url) == {1: (VERIFIED, 1), 2: (FLAWED, 1)}


def test_bytes_altered_after_mirroring_are_an_altered_record(
    service: Runtime, watch: Watch, mirror_url: str
) -> None:
    hashes = anchor(service, range(8))
    monitor = watch()
    assert monitor.run_pass().findings == []
    original = mirrored(mirror_url)[hashes[2]]
    altered = alter(service, hashes[2])
    report = monitor.run_pass()
    assert found(report) == [("altered_record", 1, hashes[2])]
    finding = only(report, "altered_record")
    assert finding.order == order_of(2)
    assert finding.message.startswith(f"record {hashes[2]} (leaf ")
    assert finding.message.endswith(
        f"of batch 1), mirrored when it was served, is now served as bytes that hash to "
        f"0x{_keccak(altered)}"
    )
    # The mirror keeps what was served and verified.
    assert mirrored(mirror_url)[hashes[2]] == original
    # Seen again on the next pass: reported, no longer new.
    assert [(r.finding.kind, r.new) for r in monitor.run_pass().findings] == [
        ("altered_record", False)
    ]


def test_a_record_row_deleted_before_the_first_check_leaves_its_batch_unpublished(
    service: Runtime, watch: Watch, mirror_url: str
) -> None:
    hashes = anchor(service, range(8))
    delete_record(service, hashes[6])
    report = watch().run_pass()
    assert found(report) == [("unpublished_batch", 2, None)]
    message = only(report, "unpublished_batch").message
    assert message.startswith("batch 2 is anchored on chain (root 0x")
    assert message.endswith(
        "but the service serves no tree for it: GET /v1/batches/2/tree answered 500: "
        "batch 2's records do not rebuild its root; run `ancla verify`"
    )
    assert verdicts(mirror_url) == {1: (VERIFIED, 1), 2: (FLAWED, 1)}
    assert sorted(mirrored(mirror_url)) == sorted(hashes[:4])


def test_a_record_row_deleted_after_mirroring_is_withdrawn(service: Runtime, watch: Watch) -> None:
    hashes = anchor(service, range(8))
    monitor = watch()
    assert monitor.run_pass().findings == []
    delete_record(service, hashes[6])
    report = monitor.run_pass()
    assert found(report) == [("tree_changed", 2, None), ("withdrawn_record", 2, hashes[6])]
    assert only(report, "tree_changed").message == (
        "batch 2's tree, verified before, is no longer served: GET /v1/batches/2/tree "
        "answered 500: batch 2's records do not rebuild its root; run `ancla verify`"
    )
    withdrawn = only(report, "withdrawn_record")
    assert withdrawn.order == order_of(6)
    assert withdrawn.message.endswith(
        "of batch 2), mirrored when it was served, is no longer served"
    )


def test_a_batchs_entries_deleted(service: Runtime, watch: Watch, mirror_url: str) -> None:
    hashes = anchor(service, range(12))
    monitor = watch()
    assert monitor.run_pass().findings == []
    with service.session_factory() as session:
        session.execute(delete(BatchEntry).where(BatchEntry.batch_id.in_([2, 3])))
        session.commit()
    report = monitor.run_pass()
    assert found(report) == sorted(
        [("tree_changed", 2, None), ("tree_changed", 3, None)]
        + [("withdrawn_record", 2 + i // 4, h) for i, h in enumerate(hashes[4:])]
    )
    changed = [r.finding.message for r in report.findings if r.finding.kind == "tree_changed"]
    assert changed[0] == (
        "batch 2's tree, verified before, is no longer served: GET /v1/batches/2/tree "
        "answers 422: a Merkle tree needs at least one hash"
    )
    # The mirror keeps what was verified: every record, and the batches still verified.
    assert sorted(mirrored(mirror_url)) == sorted(hashes)
    assert verdicts(mirror_url) == {1: (VERIFIED, 2), 2: (VERIFIED, 2), 3: (VERIFIED, 2)}


def test_a_batchs_entries_deleted_before_the_first_check(service: Runtime, watch: Watch) -> None:
    anchor(service, range(8))
    with service.session_factory() as session:
        session.execute(delete(BatchEntry).where(BatchEntry.batch_id == 2))
        session.commit()
    report = watch().run_pass()
    assert found(report) == [("unpublished_batch", 2, None)]
    assert only(report, "unpublished_batch").message.endswith(
        "but the service serves no tree for it: GET /v1/batches/2/tree answers 422: "
        "a Merkle tree needs at least one hash"
    )


def test_a_root_anchored_on_chain_that_the_service_never_serves(
    service: Runtime, watch: Watch, registry: Registry, signer: LocalAccount
) -> None:
    anchor(service, range(4))
    root = "0x" + secrets.token_hex(32)
    registry.anchor(signer, batch_id=2, root=root, leaf_count=7)
    report = watch().run_pass()
    assert found(report) == [("unpublished_batch", 2, None)]
    message = only(report, "unpublished_batch").message
    assert message.startswith(f"batch 2 is anchored on chain (root {root}, block ")
    assert message.endswith(
        "but the service serves no tree for it: GET /v1/batches/2/tree answers 404: no batch 2"
    )


def _seal(service: Runtime) -> tuple[str, int]:
    """Seal what is pending into the service's next batch, without anchoring it."""
    with service.session_factory() as session:
        (batch,) = seal_batches(session=session, max_size=BATCH_SIZE, max_age_seconds=0, force=True)
        return batch.root, batch.size


def test_a_root_on_chain_other_than_the_served_one_is_a_tree_mismatch(
    service: Runtime, watch: Watch, registry: Registry, signer: LocalAccount
) -> None:
    anchor(service, range(4))
    ingest(service.session_factory, range(4, 7))
    served_root, size = _seal(service)
    chain_root = "0x" + secrets.token_hex(32)
    registry.anchor(signer, batch_id=2, root=chain_root, leaf_count=size)
    report = watch().run_pass()
    assert found(report) == [("tree_mismatch", 2, None)]
    assert only(report, "tree_mismatch").message.startswith(
        f"batch 2: the service's tree has root {served_root}, the chain anchored {chain_root} "
        "(block "
    )


def test_a_leaf_count_other_than_the_trees_is_a_finding_and_the_records_are_mirrored(
    service: Runtime, watch: Watch, registry: Registry, signer: LocalAccount, mirror_url: str
) -> None:
    ingest(service.session_factory, range(3))
    root, size = _seal(service)
    registry.anchor(signer, batch_id=1, root=root, leaf_count=size + 1)
    report = watch().run_pass()
    assert found(report) == [("leaf_count_mismatch", 1, None)]
    assert only(report, "leaf_count_mismatch").message == (
        "batch 1: the service's tree has 3 leaves, the chain's event says 4"
    )
    assert len(mirrored(mirror_url)) == 3
    assert verdicts(mirror_url) == {1: (FLAWED, 1)}


def test_a_record_gone_between_the_tree_and_the_records_is_unpublished(
    service: Runtime, watch: Watch, mirror_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's tree is fetched, then the record's row is deleted before its
    # records are: a race produced for real, at that moment.
    hashes = anchor(service, range(4))
    monitor = watch()
    fetch = monitor.service.records

    def records_after_a_deletion(batch_id: int) -> Any:
        delete_record(service, hashes[1])
        return fetch(batch_id)

    monkeypatch.setattr(monitor.service, "records", records_after_a_deletion)
    report = monitor.run_pass()
    assert found(report) == [("unpublished_record", 1, hashes[1])]
    assert only(report, "unpublished_record").message.endswith(
        "of batch 1) is anchored but not served among the batch's records"
    )
    assert hashes[1] not in mirrored(mirror_url)
    assert verdicts(mirror_url) == {1: (FLAWED, 1)}


def test_a_tree_served_in_another_order_is_a_changed_tree(service: Runtime, watch: Watch) -> None:
    anchor(service, range(4))
    monitor = watch()
    assert monitor.run_pass().findings == []
    with service.session_factory() as session:
        first, second = session.scalars(
            select(BatchEntry).where(BatchEntry.batch_id == 1).order_by(BatchEntry.position)
        ).all()[:2]
        first.position, second.position = -1, 0
        session.flush()
        first.position = 1
        session.commit()
    report = monitor.run_pass()
    # Same records, same root: only the order changed, so no record is altered.
    assert found(report) == [("tree_changed", 1, None)]
    assert only(report, "tree_changed").message == (
        "batch 1's tree lists its 4 records in another order than when verified"
    )


def test_a_gap_in_the_chains_logs_is_a_chain_gap(
    service: Runtime, watch: Watch, monkeypatch: pytest.MonkeyPatch, registry: Registry
) -> None:
    # The registry refuses ids out of sequence, so a gap cannot be anchored: an RPC
    # endpoint whose logs lack some events is the fault, produced by dropping them.
    anchor(service, range(16))
    real = Registry.find_anchor_events

    def without(*dropped: int) -> Any:
        def find(self: Registry, **kwargs: Any) -> Any:
            return [e for e in real(self, **kwargs) if e.batch_id not in dropped]

        return find

    monkeypatch.setattr(Registry, "find_anchor_events", without(2, 4))
    report = watch().run_pass()
    assert found(report) == [("chain_gap", 2, None), ("chain_gap", 4, None)]
    gaps = [r.finding.message for r in report.findings]
    assert gaps[0].startswith(
        "batch 2: no BatchAnchored event is on chain for them before batch 3 (block "
    )
    assert gaps[1] == (
        f"batch 4: the registry counts 4 batches anchored by block {report.scanned_to}, but "
        "the chain's logs showed events up to batch 3 only; the registry anchors ids in "
        "sequence, so these batches cannot be checked (the RPC endpoint's logs are "
        "incomplete, or the contract is no AnchorRegistry)"
    )
    assert report.batches_verified == 2


def test_broken_histories_are_found_across_batches(
    service: Runtime, api: TestClient, watch: Watch, mirror_url: str
) -> None:
    with service.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MP").api_key
    headers = {"Authorization": f"Bearer {key}"}
    posted = order(1)
    number = posted["order_number"]
    root = api.post("/v1/purchase-orders", json=posted, headers=headers).json()["hash"]
    service.make_worker().tick(force_seal=True)  # batch 1: the order (total 1180.01)
    monitor = watch()
    assert monitor.run_pass().findings == []
    # Anchored records the service's rules would refuse, written past them: a payment
    # above the total, an event whose prev is no record, a second event after the order.
    paid = forge(
        service, event(number, root, "paid", payment={"amount": "5000.00", "currency": "PEN"})
    )
    dangling = forge(service, event(number, "0x" + "ab" * 32))
    forked = forge(service, event(number, root, "status", status="OTRO"), identity="0x" + "00" * 32)
    service.make_worker().tick(force_seal=True)  # batch 2: the forged events
    report = monitor.run_pass()
    where = f"{BUYER_RUC}/{number}"
    histories = sorted(
        (r.finding.subject, r.finding.record_hash, r.finding.order, r.finding.batch_id)
        for r in report.findings
        if r.finding.kind == "broken_history"
    )
    assert histories == sorted(
        [
            ("rule_violation", paid, where, 2),
            ("broken_link", dangling, where, 2),
            ("fork", forked, where, 2),
        ]
    ), report.to_dict()
    rule = next(r.finding for r in report.findings if r.finding.subject == "rule_violation")
    assert rule.message == (
        f"order {where}: rule_violation: the history of {where} breaks its rules here: "
        "payments would total 5000.00, above the order's total 1180.01 PEN (already paid: 0.00)"
    )
    # The forged records are anchored: they are mirrored as recorded, findings and all.
    assert {paid, dangling, forked} <= set(mirrored(mirror_url))


def test_findings_are_kept_in_the_mirror_once_each(
    service: Runtime, watch: Watch, mirror_url: str
) -> None:
    hashes = anchor(service, range(4))
    alter(service, hashes[0])
    monitor = watch(recheck=5)
    assert [r.new for r in monitor.run_pass().findings] == [True]
    assert [r.new for r in monitor.run_pass().findings] == [False]
    engine = make_engine(mirror_url)
    try:
        with make_session_factory(engine)() as session:
            (row,) = session.scalars(select(MonitorFinding)).all()
            assert (row.kind, row.batch_id, row.record_hash, row.times_seen) == (
                "record_mismatch",
                1,
                hashes[0],
                2,
            )
            assert session.scalar(select(func.count()).select_from(Record)) == 3
    finally:
        engine.dispose()


# -- what the monitor refuses, and a service that does not answer ---------------------------


def test_a_mirror_follows_one_contract(
    service: Runtime, watch: Watch, mirror_url: str, api: TestClient, signer: LocalAccount
) -> None:
    first = watch()
    first.close()
    other_address, _ = first.chain.deploy_registry(signer)
    other = mon.Monitor(
        engine=make_engine(mirror_url),
        service=mon.ServiceClient("http://testserver", http=api),
        chain=first.chain,
        registry=first.chain.registry(other_address),
    )
    with pytest.raises(
        MirrorRefused, match=f"this mirror follows contract {first.registry.address}"
    ):
        other.start()
    other.engine.dispose()


def test_a_services_database_is_no_mirror(
    service: Runtime, api: TestClient, registry: Registry
) -> None:
    anchor(service, range(2))
    monitor = mon.Monitor(
        engine=make_engine(service.settings.database_url),
        service=mon.ServiceClient("http://testserver", http=api),
        chain=registry.client,
        registry=registry,
    )
    with pytest.raises(MirrorRefused, match="it is a service's database, not a mirror"):
        monitor.start()
    monitor.engine.dispose()


def test_a_second_monitor_on_one_mirror_is_refused(watch: Watch) -> None:
    watch()
    with pytest.raises(MirrorRefused, match="another monitor is running on the mirror"):
        watch()


def test_a_service_that_does_not_answer_stops_the_pass_and_nothing_is_verified(
    service: Runtime, registry: Registry, mirror_url: str
) -> None:
    from tests.support.hardhat import free_port

    anchor(service, range(4))
    waits: list[float] = []
    monitor = mon.Monitor(
        engine=make_engine(mirror_url),
        service=mon.ServiceClient(f"http://127.0.0.1:{free_port()}"),
        chain=registry.client,
        registry=registry,
        retry=mon.RetryPolicy(attempts=3, first_delay=0.25),
        sleep=waits.append,
    )
    monitor.start()
    try:
        report = monitor.run_pass()
    finally:
        monitor.close()
    assert report.error is not None
    assert (
        report.error.startswith("the service at http://127.0.0.1:")
        and " does not answer (3 attempts): GET /v1/batches/1/tree: ConnectError: " in report.error
    )
    assert waits == [0.25, 0.5]  # backed off before each retry
    assert report.findings == [] and verdicts(mirror_url) == {1: ("seen", 0)}
    assert monitor.metrics.service_errors._value.get() == 3


class _CutOff(httpx.SyncByteStream):
    """A body whose connection drops halfway through."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body[: len(self.body) // 2]
        raise httpx.ReadError("connection reset by peer")


def test_a_stream_cut_off_mid_group_rolls_the_group_back_and_checks_each_batch_once(
    service: Runtime,
    api: TestClient,
    registry: Registry,
    mirror_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # New batches are checked a group per transaction of the mirror; the third
    # batch's records are cut off halfway, after the first two batches and half the
    # third were written into that transaction. The group is rolled back whole and
    # its batches checked one by one: each verified once, every record mirrored once.
    hashes = anchor(service, range(5 * BATCH_SIZE))
    cut: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        answer = api.get(request.url.path, params=request.url.params)
        headers = {"content-type": answer.headers["content-type"]}
        if request.url.path == "/v1/batches/3/records" and not cut:
            cut.append(request.url.path)
            return httpx.Response(200, headers=headers, stream=_CutOff(answer.content))
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)

    waits: list[float] = []
    monitor = mon.Monitor(
        engine=make_engine(mirror_url),
        service=mon.ServiceClient(
            "http://flaky", http=httpx.Client(transport=httpx.MockTransport(flaky))
        ),
        chain=registry.client,
        registry=registry,
        retry=mon.RetryPolicy(attempts=2, first_delay=0.01),
        sleep=waits.append,
    )
    monitor.start()
    try:
        with caplog.at_level("WARNING", logger="ancla.monitor"):
            report = monitor.run_pass()
    finally:
        monitor.close()
    assert cut == ["/v1/batches/3/records"]
    assert [r.getMessage() for r in caplog.records] == [
        "batches 1-5: GET /v1/batches/3/records: ReadError: connection reset by peer; "
        "checking them one by one"
    ]
    assert report.error is None and report.findings == [], report.to_dict()
    assert (report.batches_checked, report.batches_verified, report.records_mirrored) == (
        5,
        5,
        5 * BATCH_SIZE,
    )
    assert verdicts(mirror_url) == dict.fromkeys(range(1, 6), (VERIFIED, 1))
    copy = mirrored(mirror_url)
    assert sorted(copy) == sorted(hashes) and len(copy) == len(hashes)
    assert entries_by_batch(mirror_url) == dict.fromkeys(range(1, 6), BATCH_SIZE)
    assert monitor.metrics.service_errors._value.get() == 1
    assert monitor.metrics.batches_verified._value.get() == 5
    assert waits == []  # asked again at once, one batch at a time: none failed twice


def test_a_pass_stopped_while_the_next_batch_is_read_ahead_leaves_it_unchecked(
    service: Runtime, watch: Watch, mirror_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches 1-8 are one group (BATCHES_PER_TRANSACTION); once batch 8's records
    # were all read, batch 9's are read ahead, in a thread of their own, while batch
    # 8's last ones are written. The pass is stopped at that moment: the group
    # commits, batch 9's reading is dropped unused, no reading thread outlives the
    # pass, batch 9 is left unchecked, and the next pass reads it again and verifies it.
    assert mon.BATCHES_PER_TRANSACTION == 8
    hashes = anchor(service, range(10 * BATCH_SIZE))
    monitor = watch(recheck=0)
    stop = threading.Event()
    fetch = monitor.service.records
    asked: list[tuple[int, str]] = []

    def records(batch_id: int) -> Any:
        asked.append((batch_id, threading.current_thread().name))
        if batch_id == 9:
            stop.set()
        return fetch(batch_id)

    monkeypatch.setattr(monitor.service, "records", records)
    report = monitor.run_pass(stop=stop)
    assert asked == [(batch, f"monitor-read-{batch}") for batch in range(1, 10)]
    assert (report.batches_checked, report.batches_verified, report.error) == (8, 8, None)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("monitor-read")]
    assert verdicts(mirror_url) == {
        **dict.fromkeys(range(1, 9), (VERIFIED, 1)),
        9: (SEEN, 0),
        10: (SEEN, 0),
    }
    assert entries_by_batch(mirror_url) == dict.fromkeys(range(1, 9), BATCH_SIZE)

    report = monitor.run_pass()
    assert (report.batches_checked, report.batches_verified, report.findings) == (2, 2, [])
    assert [batch for batch, _ in asked[9:]] == [9, 10]
    assert verdicts(mirror_url) == dict.fromkeys(range(1, 11), (VERIFIED, 1))
    assert sorted(mirrored(mirror_url)) == sorted(hashes)


def _keccak(data: bytes) -> str:
    from ledger.hashing import keccak256

    return keccak256(data).hex()


def test_a_record_in_two_batches_is_a_duplicate_record(
    registry: Registry, signer: LocalAccount, mirror_url: str
) -> None:
    # No Ancla service can serve this (a record is in one batch at most, by its
    # primary key): a hostile service is played by a mock transport, over batches
    # anchored on chain for real.
    from ledger import MerkleTree, record_hash
    from ledger.canonical import canonical_bytes
    from tests.support.anchoring import sample_record

    records = [canonical_bytes(sample_record(i)) for i in range(3)]
    hashes = [record_hash(sample_record(i)) for i in range(3)]
    batches = {1: [0, 1], 2: [1, 2]}
    trees = {b: MerkleTree.of([hashes[i] for i in members]) for b, members in batches.items()}
    for batch_id, tree in trees.items():
        registry.anchor(signer, batch_id=batch_id, root=tree.root, leaf_count=len(tree))

    def hostile(request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if parts == ["v1", "batches"]:
            return httpx.Response(200, json={"items": []})
        batch_id, what = int(parts[2]), parts[3]
        if what == "tree":
            return httpx.Response(200, json=trees[batch_id].dump())
        body = b"".join(records[i] + b"\n" for i in batches[batch_id])
        return httpx.Response(200, content=body, headers={"content-type": "application/x-ndjson"})

    monitor = mon.Monitor(
        engine=make_engine(mirror_url),
        service=mon.ServiceClient(
            "http://hostile", http=httpx.Client(transport=httpx.MockTransport(hostile))
        ),
        chain=registry.client,
        registry=registry,
    )
    monitor.start()
    try:
        report = monitor.run_pass()
    finally:
        monitor.close()
    assert found(report) == [("duplicate_record", 2, hashes[1])]
    assert only(report, "duplicate_record").message == (
        f"record {hashes[1]} of batch 2 is mirrored in batch 1 already: a record is in one "
        "batch at most"
    )
    assert sorted(mirrored(mirror_url)) == sorted(hashes)
    assert verdicts(mirror_url) == {1: (VERIFIED, 1), 2: (FLAWED, 1)}
