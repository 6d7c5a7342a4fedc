"""OpenZeppelin StandardMerkleTree, leaf encoding ["bytes32"], byte for byte.

Outsiders verify Ancla's proofs with tools they already trust, so the tree is
exactly ``@openzeppelin/merkle-tree``'s ``StandardMerkleTree.of(values,
["bytes32"])`` with default options (DESIGN §2):

* leaf = keccak256(keccak256(abi.encode(bytes32 hash))); abi.encode of one
  bytes32 is the 32 bytes themselves;
* leaves sorted ascending, placed right to left at the end of an array of
  ``2n - 1`` nodes (the "complete tree" layout);
* node ``i`` = keccak256 of its children ``2i+1`` and ``2i+2``, smaller first.

Every proof passes Solidity's ``MerkleProof.verify``. The tests compare roots,
proofs and dumps with the JS library itself on random sets.
"""

from __future__ import annotations

import gc
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sha3 import keccak_256

from ledger.errors import MerkleError
from ledger.hashing import from_hex32, to_hex

__all__ = ["MerkleTree", "leaf_of", "root_from_proof", "TREE_FORMAT", "LEAF_ENCODING"]

TREE_FORMAT = "standard-v1"
LEAF_ENCODING: tuple[str, ...] = ("bytes32",)
# Receipts name the tree format this way (DESIGN §2, receipt "merkle.format").
RECEIPT_TREE_FORMAT = "openzeppelin-standard-v1"

_HASH_RE = re.compile(r"0x[0-9a-f]{64}")


def _parse_hashes_slowly(hashes: list[object]) -> list[bytes]:
    parsed: list[bytes] = []
    fullmatch = _HASH_RE.fullmatch
    for position, text in enumerate(hashes):
        if not isinstance(text, str) or fullmatch(text) is None:
            raise MerkleError(
                f"hash #{position} must be 0x followed by 64 lowercase hex digits, "
                f"got {str(text)[:80]!r}"
            )
        parsed.append(bytes.fromhex(text[2:]))
    return parsed


def _parse_hashes(hashes: Iterable[str]) -> list[bytes]:
    """Parse ``0x``-hex hashes; one bulk decode instead of 100k small ones.

    Decoding the concatenation and re-encoding it proves every digit was
    lowercase hex (``bytes.fromhex`` alone would accept upper case and
    spaces); any doubt falls back to the per-hash parser for a precise error.
    """
    texts = list(hashes)
    try:
        if "".join([t[:2] for t in texts]) == "0x" * len(texts):
            blob = "".join([t[2:] for t in texts])
            raw = bytes.fromhex(blob)
            if len(raw) == 32 * len(texts) and raw.hex() == blob:
                return [raw[i : i + 32] for i in range(0, len(raw), 32)]
    except (TypeError, ValueError):
        pass
    return _parse_hashes_slowly(texts)  # type: ignore[arg-type]


def leaf_bytes(record_hash: bytes) -> bytes:
    """The leaf of a 32-byte record hash: keccak256(keccak256(abi.encode(bytes32)))."""
    return keccak_256(keccak_256(record_hash).digest()).digest()  # type: ignore[no-any-return]


def leaf_of(record_hash: str) -> str:
    """The leaf (``0x…``) a record hash (``0x…``) takes in the tree."""
    try:
        raw = from_hex32(record_hash, what="record hash")
    except ValueError as exc:
        raise MerkleError(str(exc)) from exc
    return to_hex(leaf_bytes(raw))


def _node_hash(a: bytes, b: bytes) -> bytes:
    return keccak_256(a + b if a < b else b + a).digest()  # type: ignore[no-any-return]


def root_from_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Fold ``proof`` over ``leaf`` as MerkleProof.processProof does. Pure."""
    node = leaf
    for sibling in proof:
        node = _node_hash(node, sibling)
    return node


def _internal_levels(count: int) -> list[tuple[int, int]]:
    """The internal nodes of a tree of ``count`` leaves, level by level from the
    root: ``(lo, end)`` with the nodes ``lo <= i < end`` on one level."""
    levels: list[tuple[int, int]] = []
    lo = 0
    while lo < count - 1:
        levels.append((lo, min(2 * lo + 1, count - 1)))
        lo = 2 * lo + 1
    return levels


def _hex_paths(hexes: list[str]) -> list[tuple[str, ...]]:
    """Every node's proof, hex, as a tuple: its sibling, then its parent's proof.

    Built top-down one level of the array at a time (level ``d`` holds the nodes
    ``2**d - 1`` to ``2**(d+1) - 2``, and a level has an even number of nodes, left
    and right children alternating): each level is two list comprehensions, the
    left children's and the right children's, sharing the parents' tuples
    (concatenation is done in C). The caller pauses the cyclic GC: nothing here
    forms a cycle, and ~2n tuples would trip it over and over.
    """
    size = len(hexes)
    paths: list[tuple[str, ...]] = [()] * size
    lo = 1
    while lo < size:
        end = min(2 * lo + 1, size)
        above = paths[(lo - 1) // 2 : (end - 1) // 2]
        paths[lo:end:2] = [(s,) + a for s, a in zip(hexes[lo + 1 : end : 2], above, strict=True)]
        paths[lo + 1 : end : 2] = [(s,) + a for s, a in zip(hexes[lo:end:2], above, strict=True)]
        lo = 2 * lo + 1
    return paths


class MerkleTree:
    """A built tree over distinct record hashes, in the order they were given."""

    __slots__ = ("_tree", "_values", "_tree_index", "_index_of", "_proof_of")

    def __init__(self, tree: list[bytes], values: list[bytes], tree_index: list[int]) -> None:
        # Internal: use MerkleTree.of() or MerkleTree.load().
        self._tree = tree
        self._values = values
        self._tree_index = tree_index
        self._index_of: dict[bytes, int] | None = None
        # Record hash (0x…) -> its proof, built by the first proof() call.
        self._proof_of: dict[str, tuple[str, ...]] | None = None

    # -- building -------------------------------------------------------------

    @classmethod
    def of(cls, hashes: Iterable[str]) -> MerkleTree:
        """Build the tree of ``hashes`` (``0x`` + 64 lowercase hex each).

        Duplicates are refused: a record is in a batch once, and a proof for a
        hash that appears twice would be ambiguous about its position.
        """
        return cls.of_digests(_parse_hashes(hashes))

    @classmethod
    def of_digests(cls, values: Sequence[bytes]) -> MerkleTree:
        """Build the tree of 32-byte hashes, as :meth:`of` does of their hex form."""
        values = list(values)
        count = len(values)
        if count == 0:
            raise MerkleError("a Merkle tree needs at least one hash")
        # Types too: a 32-character str has a length of 32 (a hash stored as
        # text, where a database keeps any type, reaches here from an audit).
        if set(map(len, values)) != {32} or set(map(type, values)) != {bytes}:
            raise MerkleError("every hash must be 32 bytes")
        if len(set(values)) != count:
            raise MerkleError("hashes must be distinct; a hash was given more than once")
        k = keccak_256
        leaves = [k(k(value).digest()).digest() for value in values]
        # Leaves sorted ascending (OZ's default sortLeaves); ties impossible
        # once duplicates are refused, so the order is fully determined.
        order = sorted(range(count), key=leaves.__getitem__)
        size = 2 * count - 1
        tree: list[bytes] = [b""] * (count - 1)
        # Leaf of rank r goes to index size-1-r: reversed sorted order at the end.
        tree.extend([leaves[i] for i in reversed(order)])
        # Internal nodes, one level of the array at a time, deepest first: node i's
        # children 2i+1 and 2i+2 are on the level below, so a level is one list
        # comprehension over two strided slices (the build is about 5% faster at
        # 100k leaves than with a loop over i and its index arithmetic).
        for lo, end in reversed(_internal_levels(count)):
            tree[lo:end] = [
                k(a + b if a < b else b + a).digest()
                for a, b in zip(
                    tree[2 * lo + 1 : 2 * end : 2], tree[2 * lo + 2 : 2 * end + 1 : 2], strict=True
                )
            ]
        tree_index = [0] * count
        for rank, value_index in enumerate(order):
            tree_index[value_index] = size - 1 - rank
        return cls(tree, values, tree_index)

    # -- reading --------------------------------------------------------------

    @property
    def root(self) -> str:
        """The root, ``0x…``."""
        return to_hex(self._tree[0])

    @property
    def root_bytes(self) -> bytes:
        return self._tree[0]

    @property
    def hashes(self) -> list[str]:
        """The record hashes, in the order they were given."""
        return [to_hex(v) for v in self._values]

    @property
    def digests(self) -> list[bytes]:
        """The record hashes as 32 bytes each, in the order they were given (a copy:
        :attr:`hashes` without the hex round trip)."""
        return list(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, record_hash: object) -> bool:
        if not isinstance(record_hash, str) or _HASH_RE.fullmatch(record_hash) is None:
            return False
        return bytes.fromhex(record_hash[2:]) in self._lookup()

    def _lookup(self) -> dict[bytes, int]:
        if self._index_of is None:
            self._index_of = {v: i for i, v in enumerate(self._values)}
        return self._index_of

    def leaf(self, record_hash: str) -> str:
        """The leaf of ``record_hash`` as stored in this tree."""
        return to_hex(self._tree[self._tree_index[self._value_index(record_hash)]])

    def _value_index(self, record_hash: str) -> int:
        try:
            raw = from_hex32(record_hash, what="record hash")
        except ValueError as exc:
            raise MerkleError(str(exc)) from exc
        index = self._lookup().get(raw)
        if index is None:
            raise MerkleError(f"{record_hash} is not in this tree; there is no proof for it")
        return index

    def proof(self, record_hash: str) -> list[str]:
        """The sibling path of ``record_hash``, leaf to root, as OZ's getProof gives it.

        A hash that is not in the tree is an error, never an invented proof.

        The first call builds every hash's proof at once, as :meth:`proofs` does, and
        keeps them with the tree, keyed by the hash's text: about 600 bytes per hash
        (the hex form of every node, a tuple per hash, the keys), twice what the tree
        itself holds. Every call then is one dictionary lookup and a copy; anything
        not found there, malformed input included, takes the checking path, which
        words every error as before.
        """
        proof_of = self._proof_of
        if proof_of is None:
            proof_of = self._proof_of = self._proofs_by_hash()
        path = proof_of.get(record_hash) if type(record_hash) is str else None
        if path is None:
            # Raises for malformed and unknown hashes; finds str subclasses.
            path = proof_of[to_hex(self._values[self._value_index(record_hash)])]
        return list(path)

    def _proofs_by_hash(self) -> dict[str, tuple[str, ...]]:
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            paths = _hex_paths(["0x" + node.hex() for node in self._tree])
            return dict(
                zip(
                    ["0x" + value.hex() for value in self._values],
                    map(paths.__getitem__, self._tree_index),
                    strict=True,
                )
            )
        finally:
            if gc_was_enabled:
                gc.enable()

    def proof_bytes(self) -> list[bytes]:
        """Every proof as its siblings' 32 bytes, concatenated leaf to root, aligned
        with :attr:`hashes`: the compact form a database stores, built the way
        :meth:`proofs` builds the hex lists (a node's path is its sibling plus
        its parent's path; bytes concatenation is done in C).
        """
        tree = self._tree
        paths: list[bytes] = [b""] * len(tree)
        for parent in range(len(tree) // 2):
            above = paths[parent]
            left = 2 * parent + 1
            paths[left] = tree[left + 1] + above
            paths[left + 1] = tree[left] + above
        return [paths[i] for i in self._tree_index]

    def proofs(self) -> list[list[str]]:
        """Every proof, aligned with :attr:`hashes`; what proof() gives for each.

        A node's proof is its sibling followed by its parent's proof, so the
        paths are built top-down once (see :func:`_hex_paths`), sharing the
        parent's path (as a tuple: concatenation is done in C) and the hex
        form of every node. Nothing is kept, unless proof() has kept them already.
        """
        # Building ~2n small tuples trips the cyclic GC over and over (half the
        # time of this method, measured at 100k leaves); nothing here can form
        # a cycle, so collection is paused for the duration.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if self._proof_of is not None:
                return list(map(list, self._proof_of.values()))
            paths = _hex_paths(["0x" + node.hex() for node in self._tree])
            return [list(paths[i]) for i in self._tree_index]
        finally:
            if gc_was_enabled:
                gc.enable()

    def verify(self, record_hash: str, proof: Sequence[str]) -> bool:
        """Whether ``proof`` proves ``record_hash`` against this tree's root."""
        try:
            leaf = leaf_bytes(from_hex32(record_hash, what="record hash"))
            siblings = [from_hex32(p, what="proof element") for p in proof]
        except ValueError as exc:
            raise MerkleError(str(exc)) from exc
        return hmac.compare_digest(root_from_proof(leaf, siblings), self._tree[0])

    # -- standard-v1 dump -----------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """The tree as ``@openzeppelin/merkle-tree``'s ``standard-v1`` dump."""
        return {
            "format": TREE_FORMAT,
            "leafEncoding": list(LEAF_ENCODING),
            "tree": [to_hex(node) for node in self._tree],
            "values": [
                {"value": [to_hex(value)], "treeIndex": index}
                for value, index in zip(self._values, self._tree_index, strict=True)
            ],
        }

    @classmethod
    def load(cls, dump: Mapping[str, Any]) -> MerkleTree:
        """Load a ``standard-v1`` dump, checking every node; the inverse of :meth:`dump`."""
        if not isinstance(dump, Mapping):
            raise MerkleError("a tree dump must be a JSON object")
        if dump.get("format") != TREE_FORMAT:
            raise MerkleError(
                f"unknown tree format {dump.get('format')!r}, expected {TREE_FORMAT!r}"
            )
        if dump.get("leafEncoding") != list(LEAF_ENCODING):
            raise MerkleError(
                f"leaf encoding must be {list(LEAF_ENCODING)}, got {dump.get('leafEncoding')!r}"
            )
        raw_tree, raw_values = dump.get("tree"), dump.get("values")
        if not isinstance(raw_tree, list) or not isinstance(raw_values, list):
            raise MerkleError('a tree dump needs "tree" and "values" arrays')
        if not raw_values or len(raw_tree) != 2 * len(raw_values) - 1:
            raise MerkleError(
                f"a tree of {len(raw_values)} values must have {2 * len(raw_values) - 1} "
                f"nodes, got {len(raw_tree)}"
            )
        try:
            tree = [from_hex32(node, what="tree node") for node in raw_tree]
        except ValueError as exc:
            raise MerkleError(str(exc)) from exc
        values: list[bytes] = []
        tree_index: list[int] = []
        first_leaf = len(raw_values) - 1
        for position, entry in enumerate(raw_values):
            if not isinstance(entry, Mapping) or set(entry) != {"value", "treeIndex"}:
                raise MerkleError(f'value #{position} must be {{"value": [...], "treeIndex": n}}')
            value, index = entry["value"], entry["treeIndex"]
            if not isinstance(value, list) or len(value) != 1:
                raise MerkleError(f"value #{position} must be a one-element array")
            if type(index) is not int or not first_leaf <= index < len(tree):
                raise MerkleError(f"value #{position} has treeIndex {index!r}, not a leaf index")
            try:
                raw_value = from_hex32(value[0], what=f"value #{position}")
            except ValueError as exc:
                raise MerkleError(str(exc)) from exc
            if leaf_bytes(raw_value) != tree[index]:
                raise MerkleError(f"value #{position} does not hash to tree node {index}")
            values.append(raw_value)
            tree_index.append(index)
        if len(set(tree_index)) != len(tree_index):
            raise MerkleError("two values claim the same tree node")
        for i in range(first_leaf - 1, -1, -1):
            if _node_hash(tree[2 * i + 1], tree[2 * i + 2]) != tree[i]:
                raise MerkleError(f"tree node {i} is not the hash of its children")
        return cls(tree, values, tree_index)
