"""MerkleTree's fast paths (issue 19): the level-by-level build, proof(h) from the
proofs built once, and the same errors as the checking path.

test_merkle.py holds the tree to OpenZeppelin's answers; here every node of the
array is compared with a naive build, and proof(h) with proofs() and with a walk
up the array, in any order of calls, on trees made every way (of, of_digests, load).
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import MerkleError, MerkleTree
from ledger.hashing import from_hex32, keccak256, to_hex

pytestmark = pytest.mark.unit


def naive_tree(values: list[bytes]) -> list[bytes]:
    """Every node of the OZ array, the obvious way: node i from 2i+1 and 2i+2, one at a time."""
    leaves = sorted(keccak256(keccak256(v)) for v in values)
    tree: list[bytes] = [b""] * (2 * len(leaves) - 1)
    for rank, leaf in enumerate(leaves):
        tree[len(tree) - 1 - rank] = leaf
    for i in range(len(tree) - 1 - len(leaves), -1, -1):
        left, right = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = keccak256(min(left, right) + max(left, right))
    return tree


def walked_proofs(tree: MerkleTree) -> dict[str, list[str]]:
    """OZ's getProof for every hash: from the leaf's index up, the sibling of each node."""
    dump = tree.dump()
    proofs = {}
    for entry in dump["values"]:
        index, proof = entry["treeIndex"], []
        while index > 0:
            proof.append(dump["tree"][index - 1 if index % 2 == 0 else index + 1])
            index = (index - 1) // 2
        proofs[entry["value"][0]] = proof
    return proofs


def random_hashes(rng: random.Random, count: int) -> list[str]:
    return [to_hex(rng.randbytes(32)) for _ in range(count)]


SIZES = [*range(1, 70), 127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 4097]


@pytest.mark.parametrize("size", SIZES)
def test_every_node_equals_the_naive_build(size: int) -> None:
    rng = random.Random(size)
    values = [rng.randbytes(32) for _ in range(size)]
    expected = [to_hex(node) for node in naive_tree(values)]
    assert MerkleTree.of_digests(values).dump()["tree"] == expected
    assert MerkleTree.of([to_hex(v) for v in values]).dump()["tree"] == expected


@pytest.mark.parametrize("size", SIZES)
def test_proof_of_each_hash_equals_proofs_and_the_walk(size: int) -> None:
    rng = random.Random(1000 + size)
    hashes = random_hashes(rng, size)
    expected = MerkleTree.of(hashes).proofs()  # before any proof() call: nothing kept
    walked = walked_proofs(MerkleTree.of(hashes))
    assert expected == [walked[h] for h in hashes]
    for make in (
        lambda: MerkleTree.of(hashes),
        lambda: MerkleTree.of_digests([bytes.fromhex(h[2:]) for h in hashes]),
        lambda: MerkleTree.load(MerkleTree.of(hashes).dump()),
    ):
        tree = make()
        order = list(range(size))
        rng.shuffle(order)
        for i in order:
            assert tree.proof(hashes[i]) == expected[i]
        # Again, and proofs() once proof() has kept them: the same, in the same order.
        assert [tree.proof(h) for h in hashes] == expected
        assert tree.proofs() == expected


@settings(max_examples=150, deadline=None)
@given(
    st.sets(st.binary(min_size=32, max_size=32), min_size=1, max_size=90),
    st.randoms(use_true_random=False),
)
def test_proof_equals_proofs_at_every_index(values: set[bytes], rng: random.Random) -> None:
    hashes = [to_hex(v) for v in values]
    tree = MerkleTree.of(hashes)
    walked = walked_proofs(tree)
    first = rng.choice(hashes)
    assert tree.proof(first) == walked[first]
    proofs = tree.proofs()
    for i, h in enumerate(hashes):
        assert tree.proof(h) == proofs[i] == walked[h]
        assert tree.verify(h, proofs[i])


def test_a_returned_proof_is_the_callers_own() -> None:
    hashes = random_hashes(random.Random(5), 9)
    tree = MerkleTree.of(hashes)
    proof = tree.proof(hashes[0])
    expected = list(proof)
    proof.append("0x" + "00" * 32)
    proof[0] = "changed"
    assert tree.proof(hashes[0]) == expected
    assert tree.proofs()[0] == expected
    tree.proofs()[0].clear()
    assert tree.proof(hashes[0]) == expected


class Text(str):
    """A str subclass: the checking path reads it as the string it is."""


def expected_parse_error(value: object) -> str:
    with pytest.raises(ValueError) as failure:
        from_hex32(value, what="record hash")
    return str(failure.value)


BAD: list[Any] = [
    "0x" + "AB" * 32,
    "0x" + "ab" * 31,
    "0x" + "ab" * 33,
    "ab" * 33,
    " 0x" + "ab" * 31 + "a",
    "0x" + "a b" * 21 + "a",
    "0x" + "ab" * 31 + "g0",
    "",
    7,
    None,
    b"\xab" * 32,
    ["0x" + "ab" * 32],
]


@pytest.mark.parametrize("calls_before", [0, 1])
@pytest.mark.parametrize("value", BAD, ids=repr)
def test_malformed_hashes_raise_what_they_raised(value: object, calls_before: int) -> None:
    hashes = random_hashes(random.Random(6), 12)
    tree = MerkleTree.of(hashes)
    for h in hashes[:calls_before]:
        tree.proof(h)
    with pytest.raises(MerkleError, match=f"^{re.escape(expected_parse_error(value))}$"):
        tree.proof(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("calls_before", [0, 1])
def test_unknown_hashes_and_subclasses(calls_before: int) -> None:
    hashes = random_hashes(random.Random(7), 12)
    tree = MerkleTree.of(hashes)
    for h in hashes[:calls_before]:
        tree.proof(h)
    stranger = to_hex(keccak256(b"not in the tree"))
    for value in (stranger, Text(stranger)):
        with pytest.raises(
            MerkleError, match=f"^{re.escape(stranger)} is not in this tree; there is no proof"
        ):
            tree.proof(value)
    assert tree.proof(Text(hashes[3])) == tree.proofs()[3]
    # A leaf is not a record hash: its proof is refused too.
    leaf = tree.leaf(hashes[3])
    if leaf not in hashes:
        with pytest.raises(MerkleError, match="is not in this tree"):
            tree.proof(leaf)
