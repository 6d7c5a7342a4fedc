"""Anchor a batch of records on a real chain and write their receipts (test helper)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from ledger import MerkleTree, Receipt, record_hash
from ledger.anchors import Anchor
from ledger.chain import Registry


def sample_record(i: int) -> dict[str, Any]:
    return {
        "schema": "ancla/purchase-order/1",
        "purchase_order": {
            "order_number": f"OCAM-2026-1556-{i}-0",
            "buyer": {"ruc": "20600027426", "name": "MINISTERIO PÚBLICO"},
            "total": f"{100 + i}.00",
        },
    }


@dataclass
class AnchoredBatch:
    records: list[dict[str, Any]]
    tree: MerkleTree
    result: Anchor
    receipts: list[Receipt]


def anchor_records(
    registry: Registry, signer: LocalAccount, records: list[dict[str, Any]], *, batch_id: int
) -> AnchoredBatch:
    hashes = [record_hash(r) for r in records]
    tree = MerkleTree.of(hashes)
    result = registry.anchor(signer, batch_id=batch_id, root=tree.root, leaf_count=len(tree))
    receipts = [
        Receipt.anchored(record_hash=h, proof=proof, anchor=result)
        for h, proof in zip(hashes, tree.proofs(), strict=True)
    ]
    return AnchoredBatch(records, tree, result, receipts)
