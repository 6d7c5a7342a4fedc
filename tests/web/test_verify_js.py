"""The browser's verification module under Node: the same verdicts as the CLI's.

tests/web/verify.test.mjs runs app/web/static/verify.js (the very file the pages
serve) under ``node --test``: on OpenZeppelin's Merkle vectors, and on receipts
anchored here on the test Hardhat node, valid and tampered one way per step, each
with the report ``ledger.verify_receipt`` gives it. The JavaScript must reach the
same verdict at the same step with the same expected and actual values and the
same sentence, asking the same chain over JSON-RPC itself.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from app.web.verify_messages import MESSAGES, STEPS
from ledger import Receipt, record_hash, verify_receipt
from ledger.chain import ChainClient, Registry
from ledger.errors import VerificationError
from tests.support.anchoring import anchor_records, sample_record

pytestmark = [pytest.mark.node, pytest.mark.chain]

ROOT = Path(__file__).resolve().parents[2]
NODE_TEST = ROOT / "tests" / "web" / "verify.test.mjs"
MODULE = ROOT / "app" / "web" / "static" / "verify.js"


def python_report(receipt: dict[str, Any], record: Any, rpc_url: str, confirmations: int) -> Any:
    try:
        report = verify_receipt(receipt, record, rpc_url=rpc_url, confirmations=confirmations)
    except VerificationError as exc:
        assert exc.report is not None
        report = exc.report
    found = report.to_dict()
    del found["hash"]
    return found


def tampered(receipt: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(receipt)
    *parents, last = path.split(".")
    target = changed
    for part in parents:
        target = target[part]
    target[last] = value
    return changed


def flip(hex_text: str) -> str:
    return hex_text[:-1] + ("1" if hex_text[-1] == "0" else "0")


def test_verify_js_runs_under_node_with_the_clis_verdicts(
    chain: ChainClient, registry: Registry, signer: LocalAccount, rpc_url: str, tmp_path: Path
) -> None:
    records = [sample_record(i) for i in range(5)]
    records[3]["purchase_order"]["buyer"]["name"] = 'Ñandú "<b>" \u2028 \\ é\u0301 😀'
    anchored = anchor_records(registry, signer, records, batch_id=1)
    record, receipt = records[3], anchored.receipts[3].to_dict()
    pending = Receipt.pending(record_hash(records[0])).to_dict()
    other_registry, _ = chain.deploy_registry(signer)
    altered = copy.deepcopy(record)
    altered["purchase_order"]["total"] = "999.00"
    variants: list[tuple[str, dict[str, Any], Any, int]] = [
        ("valid, with its record", receipt, record, 1),
        ("valid, the receipt alone", receipt, None, 1),
        ("another record", receipt, altered, 1),
        ("a pending receipt", pending, records[0], 1),
        (
            "the leaf changed",
            tampered(receipt, "merkle.leaf", flip(receipt["merkle"]["leaf"])),
            record,
            1,
        ),
        (
            "the proof cut",
            tampered(receipt, "merkle.proof", receipt["merkle"]["proof"][:-1]),
            record,
            1,
        ),
        (
            "a proof node changed",
            tampered(
                receipt,
                "merkle.proof",
                [flip(receipt["merkle"]["proof"][0])] + receipt["merkle"]["proof"][1:],
            ),
            record,
            1,
        ),
        (
            "the root changed",
            tampered(receipt, "merkle.root", flip(receipt["merkle"]["root"])),
            None,
            1,
        ),
        ("another chain id", tampered(receipt, "anchor.chain_id", 1), None, 1),
        (
            "a contract that is not there",
            tampered(receipt, "anchor.contract", "0x000000000000000000000000000000000000dEaD"),
            None,
            1,
        ),
        (
            "another block hash",
            tampered(receipt, "anchor.block_hash", flip(receipt["anchor"]["block_hash"])),
            None,
            1,
        ),
        (
            "another timestamp",
            tampered(receipt, "anchor.timestamp", receipt["anchor"]["timestamp"] + 1),
            None,
            1,
        ),
        (
            "a transaction not on chain",
            tampered(receipt, "anchor.tx_hash", "0x" + "ab" * 32),
            None,
            1,
        ),
        (
            "another contract, with code",
            tampered(receipt, "anchor.contract", other_registry),
            None,
            1,
        ),
        ("another log index", tampered(receipt, "anchor.log_index", 5), None, 1),
        ("another batch id", tampered(receipt, "batch.id", 2), None, 1),
        ("more confirmations than there are", receipt, record, 1000),
    ]
    cases = []
    for name, variant, given, confirmations in variants:
        cases.append(
            {
                "name": name,
                "receipt": variant,
                "record": given,
                "confirmations": confirmations,
                "python": python_report(variant, given, rpc_url, confirmations),
            }
        )
    # The record as served: its canonical bytes, parsed by the browser.
    cases.append(
        {
            "name": "valid, the record as bytes",
            "receipt": receipt,
            "record_text": json.dumps(record, ensure_ascii=False),
            "confirmations": 1,
            "python": cases[0]["python"],
        }
    )
    # Every step of DESIGN §2 fails in at least one case, so each is compared failing too;
    # all but anchor.root, which no honest contract can be made to fail (its event and
    # its rootOf are written by the same transaction).
    failed = {c["python"]["failed_step"] for c in cases}
    assert failed == {None, "anchor", *STEPS} - {"anchor.root"}
    written = tmp_path / "receipt-cases.json"
    written.write_text(json.dumps({"rpc_url": rpc_url, "cases": cases}), "utf-8")

    result = subprocess.run(
        ["node", "--test", "--test-reporter=tap", str(NODE_TEST)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "ANCLA_RECEIPT_CASES": str(written)},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# skipped 0" in result.stdout, result.stdout[-2000:]


def test_the_pages_catalogue_has_every_sentence_verify_js_can_say() -> None:
    """app/web/verify_messages.py translates what verify.js says: the same keys and English."""
    script = (
        f"import({json.dumps(MODULE.as_uri())}).then((m) => "
        "console.log(JSON.stringify({messages: m.MESSAGES, steps: m.STEPS})))"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    found = json.loads(result.stdout)
    assert found["messages"] == MESSAGES
    assert tuple(found["steps"]) == STEPS


def test_the_vendored_javascript_is_the_pinned_npm_packages() -> None:
    """app/web/static/vendor/ is exactly what scripts/vendor_web.py copies from node_modules
    at the versions package.json pins (and verify.js imports those files)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor_web.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
