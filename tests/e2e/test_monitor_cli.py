"""`ancla monitor` as a subprocess against `ancla serve` and a real Hardhat node: a clean
catch-up whose mirror `ancla export` reads like the service's database; findings and exit
codes; a monitor killed in the middle of a catch-up and started again; the service going
away in the middle of a run (--once exits 2; --follow waits and goes on); a service that
answers garbage; --follow's JSON lines and Prometheus metrics."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import select, update

from app.devchain import free_port
from app.models import VERIFIED, Record
from app.runtime import Runtime
from app.settings import Settings
from ledger.chain import Registry
from tests.support.database import fresh_database
from tests.support.hardhat import wait_until
from tests.support.load import ServiceProcess, serve
from tests.support.mirrors import entries_by_batch, verdicts
from tests.support.proxy import FaultyProxy
from tests.support.services import ancla, ingest, settings_env

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.chain]

ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "250"}


@dataclass
class Ledger:
    """A service's database with anchored batches, served by `ancla serve`."""

    settings: Settings
    runtime: Runtime
    hashes: list[str]
    log: Path
    service: ServiceProcess | None = None
    base: str = ""

    def start(self, port: int | None = None) -> str:
        self.service, self.base = serve(
            settings_env(self.settings), self.log, anchor=False, port=port
        )
        return self.base

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None


@pytest.fixture
def make_ledger(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[Callable[..., Ledger]]:
    made: list[Ledger] = []

    def make(orders: int, batch_size: int) -> Ledger:
        settings = make_settings(batch_max_size=batch_size)
        runtime = Runtime.create(settings)
        hashes = ingest(runtime.session_factory, range(orders))
        runtime.make_worker().tick(force_seal=True)
        ledger = Ledger(settings, runtime, hashes, tmp_path / "serve.log")
        ledger.start()
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        ledger.stop()
        ledger.runtime.stop()


@pytest.fixture
def mirror_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path / "mirror") as url:
        yield url


def monitor_args(ledger: Ledger, registry: Registry, rpc_url: str, mirror: str) -> list[str]:
    return [
        "monitor",
        "--api",
        ledger.base,
        "--rpc",
        rpc_url,
        "--contract",
        registry.address,
        "--mirror",
        mirror,
    ]


def spawn(args: list[str], log: Path, out: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        env=ENV,
        stdout=(out or log).open("ab"),
        stderr=log.open("ab"),
        start_new_session=True,
    )


def verified(mirror: str) -> int:
    return sum(
        1 for status, _ in verdicts(mirror, unmigrated_ok=True).values() if status == VERIFIED
    )


def assert_only_verified_batches_are_mirrored(mirror: str, batch_size: int) -> None:
    """What a killed or stopped monitor leaves: each verified batch whole, nothing of the rest."""
    entries = entries_by_batch(mirror)
    for batch_id, (status, checks) in verdicts(mirror).items():
        if status == VERIFIED:
            assert entries.get(batch_id) == batch_size and checks == 1, (batch_id, entries)
        else:
            assert batch_id not in entries and checks == 0, (batch_id, status, entries)


def csv_rows(text: str) -> list[dict[str, str]]:
    return sorted(csv.DictReader(io.StringIO(text)), key=lambda row: row["hash"])


# -- a clean catch-up, and the mirror's open data ---------------------------------------


def test_a_clean_catch_up_and_export_reads_the_mirror(
    make_ledger: Callable[..., Ledger], registry: Registry, rpc_url: str, mirror_url: str
) -> None:
    ledger = make_ledger(10, 4)
    args = monitor_args(ledger, registry, rpc_url, mirror_url)
    result = ancla(*args, "--once", "--json", env=ENV)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["clean"] is True and report["findings"] == [] and report["error"] is None
    assert (report["batches_checked"], report["batches_verified"]) == (3, 3)
    assert report["mirror"] | {"url": ""} == {
        "url": "",
        "seen": 0,
        "verified": 3,
        "flawed": 0,
        "records": 10,
    }
    # Run again: nothing new, the three batches fetched again and compared, in words.
    again = ancla(*args, "--once", env=ENV)
    assert again.returncode == 0, again.stderr
    assert "0 batches checked, 3 checked again" in again.stdout
    assert "3 verified batches, 0 with findings, 0 not checked yet, 10 records" in again.stdout
    assert "0 findings (0 new)" in again.stdout
    # `ancla export` reads the mirror as it reads the service's own database: the same
    # orders, hashes and anchors (the mirror says anchored; the service, final).
    env = settings_env(ledger.settings)
    served = ancla("export", "--format", "csv", env=env)
    copied = ancla("export", "--format", "csv", "--database-url", mirror_url, env=env)
    assert served.returncode == 0 and copied.returncode == 0, copied.stderr
    served_rows, copied_rows = csv_rows(served.stdout), csv_rows(copied.stdout)
    assert [row["hash"] for row in copied_rows] == sorted(ledger.hashes)
    assert {row["status"] for row in copied_rows} == {"anchored"}
    for row in (*served_rows, *copied_rows):
        del row["status"]
    assert copied_rows == served_rows


def test_findings_exit_1_and_name_kind_batch_record_and_order(
    make_ledger: Callable[..., Ledger],
    registry: Registry,
    rpc_url: str,
    mirror_url: str,
    signer: LocalAccount,
) -> None:
    ledger = make_ledger(8, 4)
    with ledger.runtime.session_factory() as session:
        canonical = session.scalar(select(Record.canonical).where(Record.hash == ledger.hashes[1]))
        assert canonical is not None
        session.execute(
            update(Record)
            .where(Record.hash == ledger.hashes[1])
            .values(canonical=canonical.replace(b'"total":"', b'"total":"9', 1))
        )
        session.commit()
    root = "0x" + secrets.token_hex(32)
    registry.anchor(signer, batch_id=3, root=root, leaf_count=5)
    args = monitor_args(ledger, registry, rpc_url, mirror_url)
    result = ancla(*args, "--once", "--json", env=ENV)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["clean"] is False
    assert sorted((f["kind"], f["batch_id"], f["record_hash"]) for f in report["findings"]) == [
        ("record_mismatch", 1, ledger.hashes[1]),
        ("unpublished_batch", 3, None),
    ]
    assert all(f["new"] for f in report["findings"])
    text = ancla(*args, "--once", "--recheck", "0", env=ENV)
    assert text.returncode == 1
    assert (
        "unpublished_batch (seen before): batch 3 is anchored on chain (root "
        f"{root}, block " in text.stdout
    )
    assert "GET /v1/batches/3/tree answers 404: no batch 3" in text.stdout


# -- killed, stopped, garbage --------------------------------------------------------------


def test_a_monitor_killed_mid_catch_up_resumes_without_checking_a_batch_twice(
    make_ledger: Callable[..., Ledger],
    registry: Registry,
    rpc_url: str,
    mirror_url: str,
    tmp_path: Path,
) -> None:
    ledger = make_ledger(120, 2)  # 60 batches
    args = monitor_args(ledger, registry, rpc_url, mirror_url)
    first = spawn([*args, "--once", "--recheck", "0"], tmp_path / "first.log")
    try:
        wait_until(lambda: verified(mirror_url) >= 5, timeout=60, interval=0.02)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_at = verified(mirror_url)
    assert 5 <= killed_at < 60, (tmp_path / "first.log").read_text()[-2000:]
    assert_only_verified_batches_are_mirrored(mirror_url, 2)
    second = ancla(*args, "--once", "--recheck", "0", "--json", env=ENV)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["batches_verified"] == report["batches_checked"] == 60 - killed_at
    assert report["records_mirrored"] == 120 - 2 * killed_at
    # No batch verified twice, nothing verified that was not whole.
    assert verdicts(mirror_url) == dict.fromkeys(range(1, 61), (VERIFIED, 1))
    assert entries_by_batch(mirror_url) == dict.fromkeys(range(1, 61), 2)


def test_the_service_going_away_mid_run_is_exit_2_and_the_next_run_goes_on(
    make_ledger: Callable[..., Ledger],
    registry: Registry,
    rpc_url: str,
    mirror_url: str,
    tmp_path: Path,
) -> None:
    ledger = make_ledger(120, 2)
    port = int(ledger.base.rsplit(":", 1)[1])
    args = monitor_args(ledger, registry, rpc_url, mirror_url)
    log = tmp_path / "monitor.log"
    run = spawn([*args, "--once", "--recheck", "0", "--retries", "3"], log, tmp_path / "out")
    wait_until(lambda: verified(mirror_url) >= 3, timeout=60, interval=0.02)
    assert ledger.service is not None
    ledger.service.kill()  # the service goes away, mid-run
    assert run.wait(timeout=60) == 2
    stderr = log.read_text()
    assert "error: the pass stopped: the service at " in stderr
    assert " does not answer (3 attempts): GET /v1/batches/" in stderr
    assert "ConnectError" in stderr
    assert "asking again in 0.5 s (attempt 2 of 3)" in stderr  # backed off, logged
    stopped_at = verified(mirror_url)
    assert stopped_at < 60
    assert_only_verified_batches_are_mirrored(mirror_url, 2)
    ledger.start(port=port)
    rerun = ancla(*args, "--once", "--recheck", "0", "--json", env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["batches_verified"] == 60 - stopped_at
    assert verdicts(mirror_url) == dict.fromkeys(range(1, 61), (VERIFIED, 1))


def test_a_service_that_answers_garbage_is_retried_then_exit_2(
    make_ledger: Callable[..., Ledger], registry: Registry, rpc_url: str, mirror_url: str
) -> None:
    ledger = make_ledger(4, 4)
    host, port = ledger.base.removeprefix("http://").split(":")
    proxy = FaultyProxy(host, int(port))
    try:
        proxy.set_mode("garbage")
        args = monitor_args(ledger, registry, rpc_url, mirror_url)
        args[args.index("--api") + 1] = proxy.url
        result = ancla(*args, "--once", "--retries", "2", env=ENV)
        assert result.returncode == 2
        assert (
            f"the service at {proxy.url} does not answer (2 attempts): GET /v1/batches/1/tree "
            "answered 200 with no JSON" in result.stderr
        )
        assert verdicts(mirror_url) == {1: ("seen", 0)}
        proxy.set_mode("up")
        again = ancla(*args, "--once", env=ENV)
        assert again.returncode == 0, again.stderr
    finally:
        proxy.close()


def test_follow_prints_findings_as_json_lines_serves_metrics_and_outlasts_the_service(
    make_ledger: Callable[..., Ledger],
    registry: Registry,
    rpc_url: str,
    mirror_url: str,
    signer: LocalAccount,
    tmp_path: Path,
) -> None:
    ledger = make_ledger(10, 4)
    port = int(ledger.base.rsplit(":", 1)[1])
    metrics_port = free_port()
    args = monitor_args(ledger, registry, rpc_url, mirror_url)
    out, log = tmp_path / "findings.jsonl", tmp_path / "monitor.log"
    follow = spawn(
        [
            *args,
            "--follow",
            "--interval",
            "0.3",
            "--retries",
            "2",
            "--metrics-port",
            str(metrics_port),
        ],
        log,
        out,
    )

    def metric(name: str) -> float | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    try:
        wait_until(lambda: metric("ancla_monitor_batches_verified_total") == 3, timeout=60)
        assert metric("ancla_monitor_records_mirrored_total") == 10
        assert (metric("ancla_monitor_blocks_scanned_total") or 0) > 0
        # A new anchor the service never serves: one JSON line, once.
        registry.anchor(signer, batch_id=4, root="0x" + secrets.token_hex(32), leaf_count=3)
        wait_until(lambda: out.read_text().strip() != "", timeout=60)
        assert metric('ancla_monitor_findings_total{kind="unpublished_batch"}') == 1
        # The service goes away: logged, retried, not a crash; back, the watch goes on.
        assert ledger.service is not None
        ledger.service.kill()
        wait_until(lambda: "pass stopped: the service at " in log.read_text(), timeout=60)
        assert follow.poll() is None
        ledger.start(port=port)
        checked = metric("ancla_monitor_batches_checked_total") or 0
        wait_until(
            lambda: (metric("ancla_monitor_batches_checked_total") or 0) > checked + 4,
            timeout=60,
        )
        os.killpg(follow.pid, signal.SIGTERM)
        assert follow.wait(timeout=30) == 0
    finally:
        if follow.poll() is None:
            os.killpg(follow.pid, signal.SIGKILL)
            follow.wait()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(f["kind"], f["batch_id"], f["new"]) for f in lines] == [("unpublished_batch", 4, True)]
    assert lines[0]["message"].endswith("GET /v1/batches/4/tree answers 404: no batch 4")
    # Its logs are JSON lines too, on stderr.
    logged = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(entry["logger"] == "ancla.monitor" for entry in logged)


def test_bad_arguments_exit_2(registry: Registry, rpc_url: str, tmp_path: Path) -> None:
    mirror = str(tmp_path / "m.db")
    missing = ancla("monitor", "--rpc", rpc_url, "--contract", registry.address, env=ENV)
    assert missing.returncode == 2
    assert "monitor needs --api URL of the service to watch" in missing.stderr
    bad = ancla(
        "monitor",
        "--api",
        "ftp://x",
        "--rpc",
        rpc_url,
        "--contract",
        registry.address,
        "--mirror",
        mirror,
        env=ENV,
    )
    assert bad.returncode == 2 and "--api must be an http:// or https:// URL" in bad.stderr
    nothing = ancla(
        "monitor",
        "--api",
        "http://127.0.0.1:9",
        "--rpc",
        rpc_url,
        "--contract",
        "0x" + "12" * 20,
        "--mirror",
        mirror,
        env=ENV,
    )
    assert nothing.returncode == 2
    assert "there is no contract at 0x1212121212121212121212121212121212121212" in nothing.stderr
    chain_down = ancla(
        "monitor",
        "--api",
        "http://127.0.0.1:9",
        "--rpc",
        f"http://127.0.0.1:{free_port()}",
        "--contract",
        registry.address,
        "--mirror",
        mirror,
        env=ENV,
    )
    assert chain_down.returncode == 2 and "cannot read the chain at" in chain_down.stderr
