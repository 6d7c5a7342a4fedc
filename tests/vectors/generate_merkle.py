"""Regenerate the Merkle known-answer vectors and probe files from OpenZeppelin's JS library.

    .venv/bin/python tests/vectors/generate_merkle.py

Expected values come from ``@openzeppelin/merkle-tree`` itself (through
tests/support/oz_tree.js), never from Ancla's own code, so the tests that read
them compare Ancla against the reference. Inputs are deterministic: hash i of
case "n" is keccak256("ancla-vector/<n>/<i>").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger.hashing import keccak256, to_hex  # noqa: E402

OUT = ROOT / "tests" / "vectors" / "merkle"
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 33, 100]


def vector_hashes(size: int) -> list[str]:
    return [to_hex(keccak256(f"ancla-vector/{size}/{i}".encode())) for i in range(size)]


def oz(cases: list[list[str]]) -> list[dict[str, object]]:
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "support" / "oz_tree.js")],
        input=json.dumps({"cases": [{"hashes": h} for h in cases]}),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    cases_out: list[dict[str, object]] = json.loads(result.stdout)["cases"]
    return cases_out


_VERIFY_JS = """
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const verdicts = input.probes.map((p) => {
  try { return StandardMerkleTree.verify(input.root, ["bytes32"], [p.hash], p.proof); }
  catch (e) { return false; }
});
process.stdout.write(JSON.stringify(verdicts));
"""


def oz_verify(root: str, probes: list[dict[str, object]]) -> list[bool]:
    result = subprocess.run(
        ["node", "-e", _VERIFY_JS],
        input=json.dumps({"root": root, "probes": probes}),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    verdicts: list[bool] = json.loads(result.stdout)
    return verdicts


def flip(hex32: str) -> str:
    last = int(hex32[-2:], 16) ^ 0x01
    return hex32[:-2] + f"{last:02x}"


def main() -> None:
    inputs = [vector_hashes(n) for n in SIZES]
    answers = oz(inputs)
    known = {
        "description": "StandardMerkleTree(['bytes32']) roots, proofs and dumps computed by "
        "@openzeppelin/merkle-tree 1.0.8",
        "reproduce": ".venv/bin/python tests/vectors/generate_merkle.py",
        "cases": [
            {
                "name": f"size-{n}",
                "hashes": hashes,
                "root": answer["root"],
                "proofs": answer["proofs"],
                "dump": answer["dump"],
            }
            for n, hashes, answer in zip(SIZES, inputs, answers, strict=True)
        ],
    }
    (OUT / "known-answers.json").write_text(json.dumps(known, indent=1) + "\n")

    # Probes on the 7-leaf tree: one valid proof and the classic ways to break one.
    case = known["cases"][SIZES.index(7)]
    hashes, proofs, root = case["hashes"], case["proofs"], case["root"]
    h, proof = hashes[2], proofs[2]
    dump_tree = case["dump"]["tree"]
    probes = [
        {"name": "valid", "hash": h, "proof": proof, "valid": True},
        {
            "name": "wrong leaf (another record's hash)",
            "hash": hashes[3],
            "proof": proof,
            "valid": False,
        },
        {"name": "index+1 (the neighbour's proof)", "hash": h, "proof": proofs[3], "valid": False},
        {"name": "truncated proof", "hash": h, "proof": proof[:-1], "valid": False},
        {"name": "extra element", "hash": h, "proof": [*proof, proof[0]], "valid": False},
        {
            "name": "swapped pair",
            "hash": h,
            "proof": [proof[1], proof[0], *proof[2:]],
            "valid": False,
        },
        {"name": "flipped byte", "hash": h, "proof": [flip(proof[0]), *proof[1:]], "valid": False},
        {"name": "empty proof", "hash": h, "proof": [], "valid": False},
        # An internal node handed in as if it were a record hash must not verify
        # (the double leaf hash is what prevents this second-preimage trick).
        {
            "name": "internal node passed as leaf",
            "hash": dump_tree[1],
            "proof": [dump_tree[2]],
            "valid": False,
        },
    ]
    verdicts = oz_verify(root, probes)
    for probe, verdict in zip(probes, verdicts, strict=True):
        if verdict != probe["valid"]:
            raise SystemExit(f"OpenZeppelin disagrees on probe {probe['name']!r}: {verdict}")
    (OUT / "probes.json").write_text(
        json.dumps(
            {
                "description": "Proof probes against one 7-leaf tree; 'valid' is the "
                "verdict of StandardMerkleTree.verify",
                "reproduce": ".venv/bin/python tests/vectors/generate_merkle.py",
                "root": root,
                "probes": probes,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
