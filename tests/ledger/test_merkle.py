"""Merkle tree: byte-identical to @openzeppelin/merkle-tree's StandardMerkleTree(["bytes32"]).

Three layers (STYLE.md habit 5): known answers produced by the OZ library
(tests/vectors/merkle/, regenerate with tests/vectors/generate_merkle.py),
probe files of broken proofs, and properties against a naive reference here
and against the OZ library itself on random sets.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import MerkleError, MerkleTree, leaf_of, root_from_proof
from ledger.hashing import keccak256, to_hex

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"
ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


# -- a naive reference, only tests use it (STYLE.md: transparency-dev/testonly) --


def naive_root(hashes: list[str]) -> str:
    """Build the OZ tree the slow, obvious way: sorted leaves, array layout."""
    leaves = sorted(keccak256(keccak256(bytes.fromhex(h[2:]))) for h in hashes)
    tree: list[bytes] = [b""] * (2 * len(leaves) - 1)
    for i, leaf in enumerate(leaves):
        tree[len(tree) - 1 - i] = leaf
    for i in range(len(tree) - 1 - len(leaves), -1, -1):
        left, right = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = keccak256(min(left, right) + max(left, right))
    return to_hex(tree[0])


def random_hashes(rng: random.Random, count: int) -> list[str]:
    return [to_hex(rng.randbytes(32)) for _ in range(count)]


# -- known answers ---------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("case", load("known-answers.json")["cases"], ids=lambda c: c["name"])
def test_known_answers_from_openzeppelin(case: dict[str, Any]) -> None:
    tree = MerkleTree.of(case["hashes"])
    assert tree.root == case["root"]
    assert tree.proofs() == case["proofs"]
    assert tree.digests == [bytes.fromhex(h[2:]) for h in case["hashes"]]
    tree.digests.clear()  # a copy: the tree's values stay
    assert tree.hashes == case["hashes"]
    assert [tree.proof(h) for h in case["hashes"]] == case["proofs"]
    assert tree.proof_bytes() == [
        b"".join(bytes.fromhex(node[2:]) for node in proof) for proof in case["proofs"]
    ]
    assert tree.dump() == case["dump"]
    assert MerkleTree.load(case["dump"]).dump() == case["dump"]


@pytest.mark.unit
def test_single_leaf_tree_root_is_the_leaf_and_proof_is_empty() -> None:
    h = to_hex(keccak256(b"only"))
    tree = MerkleTree.of([h])
    assert tree.root == leaf_of(h)
    assert tree.proof(h) == []


# -- probe files -----------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("probe", load("probes.json")["probes"], ids=lambda p: p["name"])
def test_probe(probe: dict[str, Any]) -> None:
    root = load("probes.json")["root"]
    leaf = keccak256(keccak256(bytes.fromhex(probe["hash"][2:])))
    computed = to_hex(root_from_proof(leaf, [bytes.fromhex(p[2:]) for p in probe["proof"]]))
    assert (computed == root) is probe["valid"]
    seven = next(c for c in load("known-answers.json")["cases"] if c["name"] == "size-7")
    tree = MerkleTree.of(seven["hashes"])
    assert tree.root == root
    assert tree.verify(probe["hash"], probe["proof"]) is probe["valid"]


# -- errors ----------------------------------------------------------------------


@pytest.mark.unit
def test_proof_of_a_hash_not_in_the_tree_is_an_error() -> None:
    tree = MerkleTree.of(random_hashes(random.Random(1), 5))
    stranger = to_hex(keccak256(b"not in the tree"))
    with pytest.raises(MerkleError, match=f"{stranger} is not in this tree"):
        tree.proof(stranger)
    assert stranger not in tree


@pytest.mark.unit
@pytest.mark.parametrize(
    ("hashes", "message"),
    [
        ([], "at least one hash"),
        (["0x" + "ab" * 32, "0x" + "ab" * 32], "distinct"),
        (["0x" + "AB" * 32], "hash #0 must be 0x followed by 64 lowercase hex"),
        (["0x" + "ab" * 31], "hash #0 must be"),
        (["ab" * 32 + "00"], "hash #0 must be"),
        (["0x" + "ab" * 32, " 0x" + "ab" * 31 + "a"], "hash #1 must be"),
        (["0x" + "ab" * 32, 7], "hash #1 must be"),
        (["0x" + "a b" * 21 + "a"], "hash #0 must be"),
    ],
)
def test_bad_input_is_refused(hashes: list[Any], message: str) -> None:
    with pytest.raises(MerkleError, match=message):
        MerkleTree.of(hashes)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("digests", "message"),
    [
        ([], "at least one hash"),
        ([b"\xab" * 32, b"\xab" * 32], "distinct"),
        ([b"\xab" * 32, b"\xab" * 31], "every hash must be 32 bytes"),
        ([b"\xab" * 33], "every hash must be 32 bytes"),
    ],
)
def test_bad_digests_are_refused(digests: list[bytes], message: str) -> None:
    with pytest.raises(MerkleError, match=message):
        MerkleTree.of_digests(digests)


@pytest.mark.unit
def test_load_refuses_a_tampered_dump() -> None:
    dump = MerkleTree.of(random_hashes(random.Random(2), 6)).dump()
    bad_node = json.loads(json.dumps(dump))
    bad_node["tree"][1] = "0x" + "00" * 32
    with pytest.raises(MerkleError, match="tree node 1 is not the hash of its children"):
        MerkleTree.load(bad_node)
    bad_value = json.loads(json.dumps(dump))
    bad_value["values"][0]["value"] = ["0x" + "11" * 32]
    with pytest.raises(MerkleError, match="value #0 does not hash to tree node"):
        MerkleTree.load(bad_value)
    internal = json.loads(json.dumps(dump))
    internal["values"][0]["treeIndex"] = 0
    with pytest.raises(MerkleError, match="value #0 has treeIndex 0, not a leaf index"):
        MerkleTree.load(internal)
    with pytest.raises(MerkleError, match="unknown tree format"):
        MerkleTree.load({**dump, "format": "simple-v1"})
    with pytest.raises(MerkleError, match="leaf encoding must be"):
        MerkleTree.load({**dump, "leafEncoding": ["address"]})
    with pytest.raises(MerkleError, match="must have 11 nodes"):
        MerkleTree.load({**dump, "tree": dump["tree"][:-1]})


# -- properties ------------------------------------------------------------------


@pytest.mark.unit
@settings(max_examples=200, deadline=None)
@given(st.sets(st.binary(min_size=32, max_size=32), min_size=1, max_size=70))
def test_matches_naive_reference_and_every_proof_verifies(values: set[bytes]) -> None:
    hashes = [to_hex(v) for v in values]
    tree = MerkleTree.of(hashes)
    assert tree.root == naive_root(hashes)
    assert MerkleTree.of_digests(list(values)).dump() == tree.dump()
    for h, proof, packed in zip(hashes, tree.proofs(), tree.proof_bytes(), strict=True):
        assert proof == tree.proof(h)
        assert packed == b"".join(bytes.fromhex(node[2:]) for node in proof)
        assert tree.verify(h, proof)
    assert MerkleTree.load(tree.dump()).root == tree.root


@pytest.mark.node
def test_identical_to_openzeppelin_on_random_sets() -> None:
    """Many seeds, sizes 1 to a few thousand, compared with the real JS library."""
    rng = random.Random(8785)
    sizes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129]
    sizes += [rng.randint(1, 300) for _ in range(60)] + [1000, 1023, 1024, 1025, 2049, 4097]
    cases = [random_hashes(rng, n) for n in sizes]
    result = subprocess.run(
        ["node", "tests/support/oz_tree.js"],
        input=json.dumps({"cases": [{"hashes": h} for h in cases]}),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    answers = json.loads(result.stdout)["cases"]
    assert len(answers) == len(cases)
    for hashes, answer in zip(cases, answers, strict=True):
        tree = MerkleTree.of(hashes)
        assert tree.root == answer["root"], f"root differs for {len(hashes)} hashes"
        assert tree.proofs() == answer["proofs"], f"proofs differ for {len(hashes)} hashes"
        assert tree.dump() == answer["dump"], f"dump differs for {len(hashes)} hashes"


@pytest.mark.node
def test_openzeppelin_loads_our_dump_and_verifies_our_proofs() -> None:
    hashes = random_hashes(random.Random(3), 257)
    tree = MerkleTree.of(hashes)
    script = """
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const tree = StandardMerkleTree.load(input.dump);
const ok = input.hashes.every((h, i) =>
  StandardMerkleTree.verify(tree.root, ["bytes32"], [h], input.proofs[i]));
process.stdout.write(JSON.stringify({ root: tree.root, ok }));
"""
    result = subprocess.run(
        ["node", "-e", script],
        input=json.dumps({"dump": tree.dump(), "hashes": hashes, "proofs": tree.proofs()}),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(result.stdout) == {"root": tree.root, "ok": True}
