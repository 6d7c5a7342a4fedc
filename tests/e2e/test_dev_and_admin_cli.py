"""The README's first command path (`ancla dev`) and the admin commands, as real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger import Receipt, verify_receipt
from tests.support.hardhat import free_port, wait_until
from tests.support.services import ancla

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.chain]


class DevProcess:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / f"dev-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "dev", "--port", str(self.port)],
            cwd=workdir,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "COLUMNS": "250", "ANCLA_BATCH_MAX_AGE_SECONDS": "0.3"},
        )
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(self._up, timeout=90)
        text = self.log.read_text()
        match = re.search(r"API key\s+(ancla_\S+)", text)
        assert match, text
        self.api_key = match.group(1)
        chain = re.search(r"chain\s+(http://\S+)", text)
        assert chain, text
        self.rpc_url = chain.group(1)
        self.output = text

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(self.log.read_text())
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def final_receipt(base: str, record_hash: str) -> dict[str, Any]:
    def final() -> bool:
        return httpx.get(f"{base}/v1/receipts/{record_hash}").json()["status"] == "final"

    wait_until(final, timeout=60)
    receipt: dict[str, Any] = httpx.get(f"{base}/v1/receipts/{record_hash}").json()
    return receipt


def test_ancla_dev_serves_anchors_and_survives_a_restart(tmp_path: Path) -> None:
    dev = DevProcess(tmp_path)
    try:
        assert "curl -sS -X POST" in dev.output and "/v1/purchase-orders" in dev.output
        # Run the printed curl example as a user would.
        curl = dev.output[dev.output.index("curl -sS -X POST") :].split("# then")[0]
        posted = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True)
        record_hash = json.loads(posted.stdout)["hash"]
        first = final_receipt(dev.base, record_hash)
        assert verify_receipt(Receipt.from_json(first), rpc_url=dev.rpc_url).ok
    finally:
        dev.stop()

    # A new `ancla dev` runs a new Hardhat chain: the old anchor is gone from it.
    again = DevProcess(tmp_path)
    try:
        second = final_receipt(again.base, record_hash)
        assert second["anchor"]["block_hash"] != first["anchor"]["block_hash"]
        assert verify_receipt(Receipt.from_json(second), rpc_url=again.rpc_url).ok
        with pytest.raises(Exception, match="anchor"):
            verify_receipt(Receipt.from_json(first), rpc_url=again.rpc_url)
        # The order itself was kept, not recorded twice.
        listed = httpx.get(f"{again.base}/v1/purchase-orders").json()["items"]
        assert [o["hash"] for o in listed] == [record_hash]
    finally:
        again.stop()


def test_agency_admin_commands(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "ANCLA_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    assert ancla("db", "upgrade", env=env).returncode == 0
    added = ancla(
        "agency", "add", "--ruc", "20600027426", "--name", "MINISTERIO PÚBLICO", "--json", env=env
    )
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert created["ruc"] == "20600027426" and created["api_key"].startswith("ancla_")
    duplicate = ancla("agency", "add", "--ruc", "20600027426", "--name", "X", env=env)
    assert duplicate.returncode == 1
    assert "an agency with RUC 20600027426 already exists" in duplicate.stderr
    bad = ancla("agency", "add", "--ruc", "20600027427", "--name", "X", env=env)
    assert bad.returncode == 1 and "is not a valid RUC" in bad.stderr
    listed = json.loads(ancla("agency", "list", "--json", env=env).stdout)
    assert [(a["ruc"], a["revoked_at"]) for a in listed] == [("20600027426", None)]
    assert created["api_key"] not in ancla("agency", "list", env=env).stdout
    assert ancla("agency", "revoke", "--ruc", "20600027426", env=env).returncode == 0
    listed = json.loads(ancla("agency", "list", "--json", env=env).stdout)
    assert listed[0]["revoked_at"] is not None
    missing = ancla("agency", "revoke", "--ruc", "20177217043", env=env)
    assert missing.returncode == 1 and "no agency with RUC 20177217043" in missing.stderr


def test_commands_refuse_bad_settings_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "ANCLA_ENVIRONMENT": "production"}
    result = ancla("anchor", env=env)
    assert result.returncode == 2
    assert "invalid settings" in result.stderr and "ANCLA_DATABASE_URL must be set" in result.stderr
    assert "Traceback" not in result.stderr
    no_contract = ancla(
        "anchor", env={"PATH": "/usr/bin:/bin", "ANCLA_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    )
    assert no_contract.returncode == 2
    assert "ANCLA_CONTRACT_ADDRESS is not set" in no_contract.stderr
