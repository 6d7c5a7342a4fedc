"""Merkle build + all proofs for N hashes: Ancla vs @openzeppelin/merkle-tree, same run.

    .venv/bin/python bench/merkle.py [--count 100000] [--repeat 3]

Prints, for the same N random record hashes:
  * Ancla (Python): MerkleTree.of() + proofs(), best of --repeat;
  * the raw keccak limit: the same number of bare keccak256 calls (3N - 1:
    two per leaf, one per internal node) in a Python loop, best of --repeat;
  * OpenZeppelin's StandardMerkleTree.of() + getProof(i) for every i, under Node;
and the ratios. Goals (issue 2): >= 20x faster than OZ, <= 3x the raw limit.
It also deploys AnchorRegistry on a fresh Hardhat node and prints the gas of
one anchor and per record at several batch sizes (goal: <= 60,000 per anchor).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sha3 import keccak_256  # noqa: E402

from app.devchain import DEV_KEY_0, start_node  # noqa: E402
from ledger import MerkleTree  # noqa: E402
from ledger.chain import ChainClient, load_signer  # noqa: E402


def best_of(repeat: int, fn: object) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def raw_keccak(values: list[bytes]) -> None:
    k = keccak_256
    for value in values:
        k(value).digest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-gas", action="store_true", help="skip the gas figures")
    args = parser.parse_args()
    n = args.count
    hashes = ["0x" + os.urandom(32).hex() for _ in range(n)]

    def ancla() -> None:
        MerkleTree.of(hashes).proofs()

    ancla_s = best_of(args.repeat, ancla)
    # Inputs shaped like the real work: 32-byte leaves inputs, 64-byte node inputs.
    raw_inputs = [os.urandom(32) for _ in range(2 * n)] + [os.urandom(64) for _ in range(n - 1)]
    raw_s = best_of(args.repeat, lambda: raw_keccak(raw_inputs))

    result = subprocess.run(
        ["node", str(ROOT / "tests" / "support" / "oz_tree.js"), "--time", "--no-dump"],
        input=json.dumps({"cases": [{"hashes": hashes}]}),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    oz = json.loads(result.stdout)["cases"][0]
    assert oz["root"] == MerkleTree.of(hashes).root, "OZ and Ancla disagree on the root"
    oz_s = (oz["build_ms"] + oz["proofs_ms"]) / 1000

    print(f"Merkle build + all {n:,} proofs (best of {args.repeat}; OZ once)")
    print(f"  ancla (python, safe-pysha3) : {ancla_s:8.3f} s")
    print(
        f"  raw keccak limit ({3 * n - 1:,} calls): {raw_s:8.3f} s"
        f"   -> ancla is {ancla_s / raw_s:.2f}x the raw limit (goal <= 3x)"
    )
    print(
        f"  @openzeppelin/merkle-tree   : {oz_s:8.3f} s"
        f"  (build {oz['build_ms'] / 1000:.2f} s, proofs {oz['proofs_ms'] / 1000:.2f} s)"
        f"   -> ancla is {oz_s / ancla_s:.1f}x faster (goal >= 20x)"
    )

    if args.no_gas:
        return
    with tempfile.TemporaryDirectory() as tmp:
        node = start_node(Path(tmp))
        try:
            client = ChainClient(node.url)
            signer = load_signer(key=DEV_KEY_0)
            address, _ = client.deploy_registry(signer)
            registry = client.registry(address)
            print("Gas per anchor (AnchorRegistry.anchor, Hardhat node)")
            for batch_id, size in enumerate([1, 100, 1_000, 10_000], start=1):
                tree = MerkleTree.of(["0x" + os.urandom(32).hex() for _ in range(size)])
                result_ = registry.anchor(
                    signer, batch_id=batch_id, root=tree.root, leaf_count=size
                )
                print(
                    f"  batch {batch_id} of {size:>6,} records: {result_.gas_used:,} gas"
                    f" = {result_.gas_used / size:,.1f} gas/record"
                )
        finally:
            node.stop()


if __name__ == "__main__":
    main()
