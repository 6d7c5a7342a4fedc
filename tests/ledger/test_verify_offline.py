"""The offline steps of verification (DESIGN §2, steps 1-3) against a reference.

``check_leaf`` and ``check_proof`` decide receipts as Receipt.from_json makes
them by one hex decode and a fold of their own (issue 19); anything else takes
the checking path. The reference below is those steps written the obvious way
(the code before the fast paths, digit for digit): for valid receipts, broken
ones, and receipts made without validation (``model_construct``), both must
return the same step or raise the same error with the same expected/actual.
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from ledger import (
    LeafMismatch,
    MerkleTree,
    ProofMismatch,
    Receipt,
    RecordMismatch,
    leaf_of,
    record_hash,
    root_from_proof,
)
from ledger.anchors import Anchor
from ledger.hashing import from_hex32, to_hex
from ledger.merkle import leaf_bytes
from ledger.receipt import BatchRef, MerkleSection
from ledger.verify import StepResult, _anchored, check_leaf, check_proof, check_record

pytestmark = pytest.mark.unit


# -- the reference: each step the obvious way ------------------------------------------


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def ref_record(receipt: Receipt, record: Mapping[str, Any]) -> StepResult:
    actual = record_hash(record)
    if not _equal(actual, receipt.hash):
        raise RecordMismatch(
            "the record does not hash to the receipt's hash (it is another record, or was changed)",
            expected=receipt.hash,
            actual=actual,
        )
    return StepResult(
        "record", True, "keccak256(JCS(record)) equals the receipt's hash", receipt.hash, actual
    )


def ref_leaf(receipt: Receipt) -> StepResult:
    merkle, _, _ = _anchored(receipt)
    actual = to_hex(leaf_bytes(from_hex32(receipt.hash)))
    if not _equal(actual, merkle.leaf):
        raise LeafMismatch(
            "keccak256(keccak256(hash)) is not the receipt's leaf",
            expected=merkle.leaf,
            actual=actual,
        )
    return StepResult("leaf", True, "leaf recomputed from the hash", merkle.leaf, actual)


def ref_proof(receipt: Receipt) -> StepResult:
    merkle, batch, _ = _anchored(receipt)
    deepest = (2 * batch.size - 1).bit_length() - 1
    shallowest = batch.size.bit_length() - 1
    lengths = {shallowest, deepest}
    if len(merkle.proof) not in lengths:
        raise ProofMismatch(
            f"a proof in a batch of {batch.size} has "
            f"{' or '.join(str(n) for n in sorted(lengths))} elements",
            expected=sorted(lengths),
            actual=len(merkle.proof),
        )
    computed = root_from_proof(from_hex32(merkle.leaf), [from_hex32(node) for node in merkle.proof])
    actual = to_hex(computed)
    if not _equal(actual, merkle.root):
        raise ProofMismatch(
            "folding the proof over the leaf does not give the receipt's root",
            expected=merkle.root,
            actual=actual,
        )
    return StepResult(
        "proof", True, f"{len(merkle.proof)}-step proof leads to the root", merkle.root, actual
    )


def outcome(step: Callable[[], StepResult]) -> tuple[str, Any]:
    """What a step did: its result, or its error's class, text and fields."""
    try:
        return "passed", step()
    except Exception as exc:  # noqa: BLE001 - any error must be the reference's
        fields = (getattr(exc, "step", None), getattr(exc, "expected", None))
        return "raised", (type(exc), str(exc), fields, getattr(exc, "actual", None))


def assert_same(receipt: Receipt, record: Mapping[str, Any] | None = None) -> None:
    assert outcome(lambda: check_leaf(receipt)) == outcome(lambda: ref_leaf(receipt))
    assert outcome(lambda: check_proof(receipt)) == outcome(lambda: ref_proof(receipt))
    if record is not None:
        assert outcome(lambda: check_record(receipt, record)) == outcome(
            lambda: ref_record(receipt, record)
        )


# -- receipts ---------------------------------------------------------------------------


def record_of(i: int) -> dict[str, Any]:
    return {"schema": "ancla/test/1", "n": str(i), "note": "ü" * (i % 3)}


def batch_receipts(size: int, seed: int) -> list[tuple[Receipt, dict[str, Any]]]:
    records = [record_of(seed * 10_000 + i) for i in range(size)]
    hashes = [record_hash(r) for r in records]
    tree = MerkleTree.of(hashes)
    anchor = Anchor(
        chain_id=31337,
        contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        batch_id=seed,
        root=tree.root,
        leaf_count=size,
        tx_hash="0x" + "44" * 32,
        block_number=7,
        block_hash="0x" + "55" * 32,
        log_index=0,
        timestamp=1_700_000_000,
    )
    return [
        (Receipt.anchored(record_hash=h, proof=p, anchor=anchor), r)
        for h, p, r in zip(hashes, tree.proofs(), records, strict=True)
    ]


def construct(receipt: Receipt, **merkle: Any) -> Receipt:
    """The receipt with merkle fields replaced, or ``hash``/``size``, without validation."""
    assert receipt.merkle is not None and receipt.batch is not None
    fields = {
        "leaf": receipt.merkle.leaf,
        "proof": receipt.merkle.proof,
        "root": receipt.merkle.root,
        "format": receipt.merkle.format,
        "leaf_encoding": receipt.merkle.leaf_encoding,
    }
    hash_ = merkle.pop("hash", receipt.hash)
    size = merkle.pop("size", receipt.batch.size)
    fields.update(merkle)
    return Receipt.model_construct(
        receipt_version=1,
        hash=hash_,
        status=receipt.status,
        merkle=MerkleSection.model_construct(**fields),
        batch=BatchRef.model_construct(id=receipt.batch.id, size=size),
        anchor=receipt.anchor,
    )


SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100, 1000]


@pytest.mark.parametrize("size", SIZES)
def test_valid_receipts_pass_as_the_reference_passes_them(size: int) -> None:
    for receipt, record in batch_receipts(size, seed=size):
        passed = check_proof(receipt)
        assert passed.ok and passed == ref_proof(receipt)
        assert check_leaf(receipt) == ref_leaf(receipt)
        assert check_record(receipt, record) == ref_record(receipt, record)
        # A parsed copy, as a verifier gets it.
        assert_same(Receipt.from_json(receipt.to_json()), record)


class Text(str):
    """A str subclass: the checking path reads it as the string it is."""


class Liar(str):
    """A str subclass that claims to equal anything; only its bytes may count."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


def flip(digest: str, at: int = -1) -> str:
    at %= len(digest)
    return digest[:at] + ("0" if digest[at] != "0" else "1") + digest[at + 1 :]


def broken(receipt: Receipt, rng: random.Random) -> list[Receipt]:
    """Receipts that are wrong in one place each; most only constructed, not validated."""
    assert receipt.merkle is not None
    m = receipt.merkle
    proof = list(m.proof)
    cases = [
        construct(receipt, root=flip(m.root)),
        construct(receipt, leaf=flip(m.leaf)),
        construct(receipt, hash=flip(receipt.hash, 5)),
        construct(receipt, root=m.root.upper().replace("0X", "0x")),
        construct(receipt, root=Text(m.root)),
        construct(receipt, leaf=Text(m.leaf)),
        construct(receipt, hash=Text(receipt.hash)),
        construct(receipt, root=Liar("0x" + "00" * 32)),
        construct(receipt, leaf=Liar("0x" + "00" * 32)),
        construct(receipt, hash=Liar(flip(receipt.hash))),
        construct(receipt, hash=receipt.hash.upper()),
        construct(receipt, hash="0x" + receipt.hash[2:].upper()),
        construct(receipt, hash=receipt.hash[:-2]),
        construct(receipt, hash=7),
        construct(receipt, leaf=m.leaf[:-1] + " "),
        construct(receipt, root=None),
        construct(receipt, root=7),
        construct(receipt, root="é" * 66),
        construct(receipt, proof=tuple(proof)),
        construct(receipt, size=True),
        construct(receipt, size=receipt.batch.size * 4 + 3),  # type: ignore[union-attr]
        construct(receipt, size=receipt.batch.size + 1),  # type: ignore[union-attr]
        construct(receipt, proof=proof + [m.root]),
        construct(receipt, proof=proof[:-1]),
    ]
    if proof:
        i = rng.randrange(len(proof))
        for bad in (
            flip(proof[i]),
            proof[i].upper(),
            "0x" + proof[i][2:].upper(),
            proof[i][:40] + "A" + proof[i][41:],
            proof[i][:-1],
            proof[i] + "0",
            proof[i][:-2] + "0x",
            proof[i][2:4] + "0x" + proof[i][4:],  # the prefix moved inside, same digits
            "0x" + proof[i][4:] + "0x",
            " " + proof[i][1:],
            proof[i][:10] + " " + proof[i][11:],
            proof[i][:10] + "g" + proof[i][11:],
            proof[i][:10] + "x" + proof[i][11:],
            proof[i][:10] + "é" + proof[i][11:],
            Text(proof[i]),
            None,
            7,
            bytes.fromhex(proof[i][2:]),
        ):
            cases.append(construct(receipt, proof=proof[:i] + [bad] + proof[i + 1 :]))
        if len(proof) >= 2:
            # Two elements whose lengths are wrong but add up: the first with the
            # second's prefix, the second without it.
            j = (i + 1) % len(proof)
            a, b = sorted((i, j))
            shifted = proof[:a] + [proof[a] + "0x", proof[b][2:]] + proof[b + 1 :]
            if b == a + 1:
                cases.append(construct(receipt, proof=shifted))
            cases.append(construct(receipt, proof=proof[::-1]))
    return cases


@pytest.mark.parametrize("size", [1, 2, 3, 6, 17, 100])
def test_broken_and_unvalidated_receipts_fail_as_the_reference_fails_them(size: int) -> None:
    rng = random.Random(size)
    for receipt, record in batch_receipts(size, seed=size + 50)[:12]:
        for case in broken(receipt, rng):
            assert_same(case, record)
        assert_same(receipt, record_of(-1))  # another record
        assert_same(receipt, {**record, "extra": "1"})


def test_a_pending_receipt_is_not_anchored_at_either_step() -> None:
    pending = Receipt.pending("0x" + "ab" * 32)
    assert_same(pending)
    assert outcome(lambda: check_proof(pending))[1][0].__name__ == "NotAnchored"


def test_a_proof_element_split_across_two_is_refused() -> None:
    """Lengths that are wrong one by one but right in all: the fast path's length
    check is per element, so this takes the checking path and its error."""
    receipt, _ = batch_receipts(8, seed=3)[0]
    assert receipt.merkle is not None
    p = list(receipt.merkle.proof)
    case = construct(receipt, proof=[p[0] + "0x", p[1][2:], *p[2:]])
    with pytest.raises(ValueError, match="must be 0x followed by 64 hex digits"):
        check_proof(case)
    assert_same(case)


def test_leaf_of_agrees() -> None:
    for receipt, _ in batch_receipts(5, seed=9):
        assert receipt.merkle is not None
        assert check_leaf(receipt).actual == leaf_of(receipt.hash) == receipt.merkle.leaf
