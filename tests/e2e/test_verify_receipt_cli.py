"""End to end: anchor on a real Hardhat node, write receipts, verify with the `ancla` CLI.

Then tamper with each part a receipt claims and check the CLI names the step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from ledger import verify_receipt
from ledger.chain import ChainClient, Registry
from ledger.errors import AnchorMismatch
from tests.support.anchoring import AnchoredBatch, anchor_records, sample_record
from tests.support.hardhat import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.chain]


def ancla(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def batch(registry: Registry, signer: LocalAccount) -> AnchoredBatch:
    return anchor_records(registry, signer, [sample_record(i) for i in range(7)], batch_id=1)


def verify_json(
    tmp_path: Path, receipt: dict[str, Any], rpc_url: str, *extra: str, record: Any = None
) -> tuple[int, dict[str, Any]]:
    args = [str(write(tmp_path / "receipt.json", receipt)), "--rpc", rpc_url, "--json", *extra]
    if record is not None:
        args += ["--record", str(write(tmp_path / "record.json", record))]
    result = ancla("verify-receipt", *args)
    return result.returncode, json.loads(result.stdout)


def test_every_receipt_of_a_batch_verifies(
    tmp_path: Path, batch: AnchoredBatch, rpc_url: str
) -> None:
    for receipt, record in zip(batch.receipts, batch.records, strict=True):
        assert verify_receipt(receipt, record, rpc_url=rpc_url).ok
    code, report = verify_json(
        tmp_path, batch.receipts[3].to_dict(), rpc_url, record=batch.records[3]
    )
    assert code == 0, report
    assert report["valid"] is True and report["error"] is None
    assert [s["step"] for s in report["steps"]] == [
        "record",
        "leaf",
        "proof",
        "anchor.chain",
        "anchor.contract",
        "anchor.block",
        "anchor.transaction",
        "anchor.event",
        "anchor.root",
        "anchor.confirmations",
    ]


def test_human_output_says_valid(tmp_path: Path, batch: AnchoredBatch, rpc_url: str) -> None:
    path = write(tmp_path / "r.json", batch.receipts[0].to_dict())
    result = ancla("verify-receipt", str(path), "--rpc", rpc_url)
    assert result.returncode == 0
    assert "valid: the record is anchored as the receipt says" in result.stdout


def tampered(batch: AnchoredBatch, index: int = 2) -> dict[str, Any]:
    return json.loads(batch.receipts[index].to_json())


def test_another_record_fails_the_record_step(
    tmp_path: Path, batch: AnchoredBatch, rpc_url: str
) -> None:
    code, report = verify_json(tmp_path, tampered(batch), rpc_url, record=batch.records[3])
    assert code == 1
    assert report["failed_step"] == "record"
    assert report["error"].startswith("record: the record does not hash to the receipt's hash")


def test_flipped_proof_byte_fails_the_proof_step(
    tmp_path: Path, batch: AnchoredBatch, rpc_url: str
) -> None:
    receipt = tampered(batch)
    node = receipt["merkle"]["proof"][0]
    receipt["merkle"]["proof"][0] = node[:-1] + ("0" if node[-1] != "0" else "1")
    code, report = verify_json(tmp_path, receipt, rpc_url)
    assert code == 1
    assert report["failed_step"] == "proof"
    assert report["steps"][-1]["expected"] == receipt["merkle"]["root"]


def test_truncated_proof_fails_the_proof_step(
    tmp_path: Path, batch: AnchoredBatch, rpc_url: str
) -> None:
    receipt = tampered(batch)
    receipt["merkle"]["proof"] = receipt["merkle"]["proof"][:-1]
    code, report = verify_json(tmp_path, receipt, rpc_url)
    assert (code, report["failed_step"]) == (1, "proof")
    assert "a proof in a batch of 7 has 2 or 3 elements" in report["error"]


def test_wrong_leaf_fails_the_leaf_step(tmp_path: Path, batch: AnchoredBatch, rpc_url: str) -> None:
    receipt = tampered(batch)
    receipt["merkle"]["leaf"] = tampered(batch, 3)["merkle"]["leaf"]
    code, report = verify_json(tmp_path, receipt, rpc_url)
    assert (code, report["failed_step"]) == (1, "leaf")


def test_wrong_batch_id_fails_the_event_step(
    tmp_path: Path, batch: AnchoredBatch, registry: Registry, signer: LocalAccount, rpc_url: str
) -> None:
    anchor_records(registry, signer, [sample_record(100)], batch_id=2)
    receipt = tampered(batch)
    receipt["batch"]["id"] = 2
    code, report = verify_json(tmp_path, receipt, rpc_url)
    assert (code, report["failed_step"]) == (1, "anchor.event")
    assert "BatchAnchored(2," in report["steps"][-1]["expected"]
    assert "BatchAnchored(1," in report["steps"][-1]["actual"]


def test_wrong_contract_fails(
    tmp_path: Path, batch: AnchoredBatch, chain: ChainClient, signer: LocalAccount, rpc_url: str
) -> None:
    other, _ = chain.deploy_registry(signer)
    receipt = tampered(batch)
    receipt["anchor"]["contract"] = other
    code, report = verify_json(tmp_path, receipt, rpc_url)
    assert (code, report["failed_step"]) == (1, "anchor.transaction")
    assert "sent to another address" in report["error"]
    # An address with no contract at all is named as such.
    receipt["anchor"]["contract"] = "0x" + "12" * 20
    code, report = verify_json(tmp_path, receipt, rpc_url)
    assert (code, report["failed_step"]) == (1, "anchor.contract")


def test_reorged_anchor_fails_the_block_step(
    tmp_path: Path, registry: Registry, signer: LocalAccount, chain: ChainClient, rpc_url: str
) -> None:
    provider = chain.w3.provider
    snapshot = provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    batch = anchor_records(registry, signer, [sample_record(i) for i in range(3)], batch_id=1)
    assert verify_receipt(batch.receipts[0], rpc_url=rpc_url).ok
    # Take the chain back before the anchor and grow a different branch over it.
    assert provider.make_request("evm_revert", [snapshot])["result"] is True  # type: ignore[arg-type]
    for _ in range(3):
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    code, report = verify_json(tmp_path, batch.receipts[0].to_dict(), rpc_url)
    assert (code, report["failed_step"]) == (1, "anchor.block")
    assert "reorged away" in report["error"]
    with pytest.raises(AnchorMismatch) as failure:
        verify_receipt(batch.receipts[0], rpc_url=rpc_url)
    assert failure.value.step == "anchor.block"
    assert failure.value.expected == batch.result.block_hash


def test_too_few_confirmations(tmp_path: Path, batch: AnchoredBatch, rpc_url: str) -> None:
    code, report = verify_json(
        tmp_path, batch.receipts[0].to_dict(), rpc_url, "--confirmations", "1000"
    )
    assert (code, report["failed_step"]) == (1, "anchor.confirmations")


def test_pending_receipt_is_not_yet_verifiable(tmp_path: Path, rpc_url: str) -> None:
    pending = {
        "receipt_version": 1,
        "hash": "0x" + "ab" * 32,
        "status": "pending",
        "merkle": None,
        "batch": None,
        "anchor": None,
    }
    code, report = verify_json(tmp_path, pending, rpc_url)
    assert (code, report["failed_step"]) == (1, "anchor")
    assert "the receipt is pending" in report["error"]


def test_unreachable_chain_is_exit_2(tmp_path: Path, batch: AnchoredBatch) -> None:
    path = write(tmp_path / "r.json", batch.receipts[0].to_dict())
    result = ancla("verify-receipt", str(path), "--rpc", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert "could not check against the chain: RPC endpoint unreachable" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "receipt is not valid JSON: invalid JSON"),
        (b'{"receipt_version": 2}', "unsupported receipt_version 2"),
        (
            b'{"receipt_version": 1, "hash": "0x12", "status": "pending", "merkle": null, '
            b'"batch": null, "anchor": null}',
            "hash: digest must be 0x followed by 64 hex",
        ),
    ],
)
def test_malformed_receipt_is_exit_2_with_one_line(
    tmp_path: Path, content: bytes, message: str, rpc_url: str
) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    result = ancla("verify-receipt", str(path), "--rpc", rpc_url)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_file_is_exit_2(tmp_path: Path, rpc_url: str) -> None:
    result = ancla("verify-receipt", str(tmp_path / "nope.json"), "--rpc", rpc_url)
    assert result.returncode == 2
    assert "cannot read receipt" in result.stderr and "No such file" in result.stderr
