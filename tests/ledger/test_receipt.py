"""Receipt v1: strict parsing and exact serialisation (DESIGN §2)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from ledger import Receipt, ReceiptFormatError

pytestmark = pytest.mark.unit

ANCHORED: dict[str, Any] = {
    "receipt_version": 1,
    "hash": "0x" + "ab" * 32,
    "status": "anchored",
    "merkle": {
        "format": "openzeppelin-standard-v1",
        "leaf_encoding": ["bytes32"],
        "leaf": "0x" + "11" * 32,
        "proof": ["0x" + "22" * 32, "0x" + "23" * 32],
        "root": "0x" + "33" * 32,
    },
    "batch": {"id": 42, "size": 3},
    "anchor": {
        "chain_id": 31337,
        "contract": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "tx_hash": "0x" + "44" * 32,
        "block_number": 123,
        "block_hash": "0x" + "55" * 32,
        "log_index": 0,
        "timestamp": 1700000000,
    },
}
PENDING: dict[str, Any] = {
    "receipt_version": 1,
    "hash": "0x" + "ab" * 32,
    "status": "pending",
    "merkle": None,
    "batch": None,
    "anchor": None,
}


@pytest.mark.parametrize("document", [ANCHORED, PENDING], ids=["anchored", "pending"])
def test_round_trip_is_exact(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    receipt = Receipt.from_json(text)
    assert receipt.to_dict() == document
    assert list(receipt.to_dict()) == list(document)  # member order of DESIGN §2
    assert Receipt.from_json(receipt.to_json()) == receipt
    assert Receipt.from_json(text.encode()) == Receipt.from_json(document)


def test_lowercase_contract_is_written_checksummed() -> None:
    doc = copy.deepcopy(ANCHORED)
    doc["anchor"]["contract"] = doc["anchor"]["contract"].lower()
    assert Receipt.from_json(doc).to_dict()["anchor"]["contract"] == (
        "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    )


def mutate(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return apply


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (mutate("receipt_version", True), "receipt_version must be the integer 1"),
        (mutate("receipt_version", "1"), "receipt_version must be the integer 1"),
        (mutate("receipt_version", 2), "unsupported receipt_version 2"),
        (mutate("hash", "0x" + "AB" * 32), "hash: digest must be lowercase hex"),
        (mutate("hash", "0x" + "ab" * 31), "hash: digest must be 0x followed by 64 hex"),
        (mutate("hash", 5), "hash: Input should be a valid string"),
        (mutate("status", "final!"), "status: Input should be 'pending', 'anchored' or 'final'"),
        (mutate("extra", 1), "extra: Extra inputs are not permitted"),
        (mutate("batch", KeyError), "batch: Field required"),
        (mutate("batch.id", "42"), "batch.id: Input should be a valid integer"),
        (mutate("batch.id", 0), "batch.id: Input should be greater than or equal to 1"),
        (mutate("batch.id", 2**64), "batch.id: Input should be less than or equal to"),
        (mutate("batch.size", 2**40), "batch.size: Input should be less than or equal to"),
        (mutate("batch.size", 1.0), "batch.size: Input should be a valid integer"),
        (mutate("merkle.proof", ["0x" + "22" * 32] * 65), "merkle.proof: List should have at most"),
        (mutate("merkle.proof", "0x" + "22" * 32), "merkle.proof: Input should be a valid list"),
        (mutate("merkle.format", "simple-v1"), "merkle.format: Input should be"),
        (mutate("merkle.leaf_encoding", ["address"]), "merkle.leaf_encoding.0"),
        (mutate("anchor.contract", "0x123"), "anchor.contract: must be 0x followed by 40 hex"),
        (
            mutate("anchor.contract", "0x5FbDB2315678afecb367f032d93F642f64180aA3"),
            "anchor.contract: mixed-case address with a wrong EIP-55 checksum",
        ),
        (mutate("anchor.block_number", -1), "anchor.block_number: Input should be greater"),
        (mutate("anchor.tx_hash", "0x" + "zz" * 32), "anchor.tx_hash: digest must be lowercase"),
        (mutate("status", "pending"), "a pending receipt must have null merkle, batch, anchor"),
        (mutate("anchor", None), "an anchored receipt needs anchor"),
    ],
)
def test_malformed_receipts_are_refused_naming_the_field(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    doc = copy.deepcopy(ANCHORED)
    change(doc)
    with pytest.raises(ReceiptFormatError) as failure:
        Receipt.from_json(doc)
    assert message in str(failure.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"receipt_version": 1, "receipt_version": 1}', "duplicate key 'receipt_version'"),
        ("[1]", "a receipt must be a JSON object, got list"),
        (b"\xff", "not valid UTF-8"),
        ("", "invalid JSON"),
    ],
)
def test_receipt_text_is_parsed_strictly(text: str | bytes, message: str) -> None:
    with pytest.raises(ReceiptFormatError, match=message):
        Receipt.from_json(text)


def test_anchored_builder_computes_the_leaf() -> None:
    from ledger import leaf_of
    from ledger.anchors import Anchor

    anchor = Anchor(
        chain_id=1,
        contract="0x" + "12" * 20,
        batch_id=1,
        root=leaf_of("0x" + "ab" * 32),
        leaf_count=1,
        tx_hash="0x" + "44" * 32,
        block_number=1,
        block_hash="0x" + "55" * 32,
        log_index=0,
        timestamp=1,
    )
    receipt = Receipt.anchored(record_hash="0x" + "ab" * 32, proof=[], anchor=anchor, final=True)
    assert receipt.status == "final"
    assert receipt.merkle is not None and receipt.merkle.leaf == leaf_of("0x" + "ab" * 32)
