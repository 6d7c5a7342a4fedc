"""Proofs one hash at a time, and receipts' offline checks, beside earlier code in the same run.

    .venv/bin/python bench/proofs.py [--count 100000] [--receipts 100000]
        [--batch-size 10000] [--repeat 5] [--against REV]

Two parts (issue 19, item 3), each timed --repeat times, today's code and the code at
--against (``ledger/hashing.py``, ``merkle.py`` and ``verify.py`` read from git and
imported beside today's) alternating, and the raw keccak floor measured in every round.
Medians are printed, with each round's figures.

1. ``MerkleTree.proof(h)`` called once per hash on --count random hashes, in the order
   given, the proofs kept in a list as a caller keeps them: the build
   (``MerkleTree.of``), then the calls on the fresh tree (the first call pays for
   whatever is built lazily). The floor is bench/merkle.py's: the 3N - 1 keccak calls
   the tree needs (two per leaf, one per internal node), bare, in a Python loop.
   ``MerkleTree.of() + proofs()`` (the all-proofs path) is timed beside it.
2. ``ledger.verify``'s offline steps, ``check_record`` (RFC 8785 form and keccak of a
   small order-event record, about 330 bytes), ``check_leaf`` and ``check_proof``, on
   --receipts receipts of batches of --batch-size, already parsed; with and without the
   record step. ``Receipt.from_json`` of each receipt's JSON text is timed apart. The
   floor is the keccak calls those steps need (the record's, two for the leaf, one per
   proof element), bare.

Nothing is asserted on time; every proof and check is compared with the earlier code's
once, outside the clock.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sha3 import keccak_256  # noqa: E402

from ledger import Receipt, record_hash  # noqa: E402
from ledger import merkle as merkle_now  # noqa: E402
from ledger import verify as verify_now  # noqa: E402
from ledger.anchors import Anchor  # noqa: E402
from ledger.canonical import canonical_bytes  # noqa: E402

PREVIOUS = ("hashing", "merkle", "verify")


def load_previous(rev: str) -> dict[str, types.ModuleType]:
    """ledger/{hashing,merkle,verify}.py at ``rev``, as modules ``ledger_at_rev.*``.

    They import each other from that revision and everything else (errors,
    canonical, receipt, chain) from today's package, so exceptions and receipts
    are the same classes for both.
    """
    package = types.ModuleType("ledger_at_rev")
    package.__path__ = []
    sys.modules["ledger_at_rev"] = package
    modules: dict[str, types.ModuleType] = {}
    for name in PREVIOUS:
        source = subprocess.run(
            ["git", "show", f"{rev}:ledger/{name}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for other in PREVIOUS:
            source = source.replace(
                f"from ledger.{other} import", f"from ledger_at_rev.{other} import"
            )
        module = types.ModuleType(f"ledger_at_rev.{name}")
        sys.modules[module.__name__] = module
        exec(compile(source, f"{rev}:ledger/{name}.py", "exec"), module.__dict__)  # noqa: S102
        modules[name] = module
    return modules


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = clock()
    result = fn()
    return clock() - start, result


def raw_keccak(inputs: list[bytes]) -> None:
    k = keccak_256
    for value in inputs:
        k(value).digest()


def median(values: list[float]) -> float:
    return statistics.median(values)


def rounds_text(values: list[float], scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    return " ".join(fmt.format(v * scale) for v in values)


# -- part 1: proof(h) per hash -------------------------------------------------------


def bench_proofs(args: argparse.Namespace, impls: dict[str, types.ModuleType]) -> None:
    n = args.count
    rng = random.Random(19)
    hashes = ["0x" + rng.randbytes(32).hex() for _ in range(n)]
    floor_inputs = [os.urandom(32) for _ in range(2 * n)] + [os.urandom(64) for _ in range(n - 1)]

    expected = impls["then"].MerkleTree.of(hashes)
    got = impls["now"].MerkleTree.of(hashes)
    assert got.root == expected.root
    assert [got.proof(h) for h in hashes] == expected.proofs() == got.proofs()
    del expected, got

    floor: list[float] = []
    build: dict[str, list[float]] = {name: [] for name in impls}
    calls: dict[str, list[float]] = {name: [] for name in impls}
    every: dict[str, list[float]] = {name: [] for name in impls}
    names = list(impls)
    for round_ in range(args.repeat):
        floor.append(timed(lambda: raw_keccak(floor_inputs))[0])
        for name in names if round_ % 2 == 0 else names[::-1]:
            tree_class = impls[name].MerkleTree
            seconds, tree = timed(lambda tc=tree_class: tc.of(hashes))
            build[name].append(seconds)
            seconds, proofs = timed(lambda t=tree: [t.proof(h) for h in hashes])
            calls[name].append(seconds)
            del tree, proofs
            every[name].append(timed(lambda tc=tree_class: tc.of(hashes).proofs())[0])

    def ratio(times: list[float]) -> float:
        """The median over rounds of each round's time over that round's floor."""
        return median([t / fl for t, fl in zip(times, floor, strict=True)])

    print(f"MerkleTree.proof(h) once per hash, {n:,} hashes ({args.repeat} rounds, medians)")
    print(
        f"  raw keccak floor ({3 * n - 1:,} calls): {median(floor):.3f} s"
        f"   rounds: {rounds_text(floor)}"
    )
    for name in names:
        both = [x + y for x, y in zip(build[name], calls[name], strict=True)]
        print(f"  {name}:")
        print(
            f"    {n:,} x proof(h) on a built tree : {median(calls[name]):.3f} s = "
            f"{ratio(calls[name]):.2f}x the floor   rounds: {rounds_text(calls[name])}"
        )
        print(
            f"    of() + {n:,} x proof(h)          : {median(both):.3f} s = "
            f"{ratio(both):.2f}x the floor   (of() alone {median(build[name]):.3f} s = "
            f"{ratio(build[name]):.2f}x)"
        )
        print(
            f"    of() + proofs() (all at once)     : {median(every[name]):.3f} s = "
            f"{ratio(every[name]):.2f}x the floor   rounds: {rounds_text(every[name])}"
        )


# -- part 2: receipts' offline steps ---------------------------------------------------


def order_event(i: int, prev: str) -> dict[str, Any]:
    """A small, realistic record (DESIGN §2's example of a payment)."""
    return {
        "schema": "ancla/order-event/1",
        "order": {"buyer_ruc": "20600027426", "order_number": f"OCAM-2026-1556-{i}-0"},
        "prev": prev,
        "event": {
            "type": "paid",
            "occurred_at": "2026-03-02T11:20:00-05:00",
            "payment": {
                "amount": f"{1000 + i % 9000}.{i % 100:02d}",
                "currency": "PEN",
                "reference": f"SIAF 2026-{i:07d}",
            },
        },
    }


def make_receipts(count: int, batch_size: int) -> tuple[list[Receipt], list[dict[str, Any]]]:
    rng = random.Random(8785)
    records = [order_event(i, "0x" + rng.randbytes(32).hex()) for i in range(count)]
    hashes = [record_hash(r) for r in records]
    receipts: list[Receipt] = []
    for batch_id, start in enumerate(range(0, count, batch_size), start=1):
        chunk = hashes[start : start + batch_size]
        tree = merkle_now.MerkleTree.of(chunk)
        anchor = Anchor(
            chain_id=31337,
            contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
            batch_id=batch_id,
            root=tree.root,
            leaf_count=len(chunk),
            tx_hash="0x" + rng.randbytes(32).hex(),
            block_number=100 + batch_id,
            block_hash="0x" + rng.randbytes(32).hex(),
            log_index=0,
            timestamp=1_770_000_000 + batch_id,
        )
        for h, proof in zip(chunk, tree.proofs(), strict=True):
            receipts.append(Receipt.anchored(record_hash=h, proof=proof, anchor=anchor))
    return receipts, records


def bench_receipts(args: argparse.Namespace, impls: dict[str, types.ModuleType]) -> None:
    receipts, records = make_receipts(args.receipts, args.batch_size)
    texts = [r.to_json(indent=None) for r in receipts]
    # The keccak calls the three steps need, bare: the record's canonical bytes,
    # the hash twice for the leaf, and one 64-byte pair per proof element.
    floor_leaf_proof: list[bytes] = []
    floor_record: list[bytes] = []
    for receipt, record in zip(receipts, records, strict=True):
        assert receipt.merkle is not None
        floor_record.append(canonical_bytes(record))
        floor_leaf_proof += [os.urandom(32), os.urandom(32)]
        floor_leaf_proof += [os.urandom(64) for _ in receipt.merkle.proof]
    proof_lengths = sorted({len(r.merkle.proof) for r in receipts if r.merkle is not None})

    for name, verify in impls.items():
        if name == "now":
            continue
        for receipt, record in zip(receipts[:2000], records, strict=False):
            now = [
                verify_now.check_record(receipt, record),
                verify_now.check_leaf(receipt),
                verify_now.check_proof(receipt),
            ]
            then = [
                verify.check_record(receipt, record),
                verify.check_leaf(receipt),
                verify.check_proof(receipt),
            ]
            assert [s.to_dict() for s in now] == [s.to_dict() for s in then]

    def with_record(verify: types.ModuleType) -> None:
        check_record, check_leaf, check_proof = (
            verify.check_record,
            verify.check_leaf,
            verify.check_proof,
        )
        for receipt, record in zip(receipts, records, strict=True):
            check_record(receipt, record)
            check_leaf(receipt)
            check_proof(receipt)

    def without_record(verify: types.ModuleType) -> None:
        check_leaf, check_proof = verify.check_leaf, verify.check_proof
        for receipt in receipts:
            check_leaf(receipt)
            check_proof(receipt)

    floor_lp: list[float] = []
    floor_rec: list[float] = []
    parse: list[float] = []
    full: dict[str, list[float]] = {name: [] for name in impls}
    bare: dict[str, list[float]] = {name: [] for name in impls}
    names = list(impls)
    for round_ in range(args.repeat):
        floor_lp.append(timed(lambda: raw_keccak(floor_leaf_proof))[0])
        floor_rec.append(timed(lambda: raw_keccak(floor_record))[0])
        for name in names if round_ % 2 == 0 else names[::-1]:
            module = impls[name]
            full[name].append(timed(lambda m=module: with_record(m))[0])
            bare[name].append(timed(lambda m=module: without_record(m))[0])
        parse.append(timed(lambda: [Receipt.from_json(t) for t in texts])[0])

    count = len(receipts)
    both_floor = [x + y for x, y in zip(floor_lp, floor_rec, strict=True)]

    def ratio(times: list[float], floors: list[float]) -> float:
        return median([t / fl for t, fl in zip(times, floors, strict=True)])

    def rates(times: list[float]) -> str:
        return " ".join(f"{count / t:,.0f}" for t in times)

    print(
        f"Receipts' offline steps, {count:,} receipts of batches of {args.batch_size:,} "
        f"(proofs of {' or '.join(map(str, proof_lengths))} elements; {args.repeat} rounds, "
        "medians, receipts/s)"
    )
    print(
        f"  raw keccak floor: leaf + proof {count / median(floor_lp):,.0f}/s;"
        f" record + leaf + proof {count / median(both_floor):,.0f}/s"
    )
    for name in names:
        b, w = median(bare[name]), median(full[name])
        print(
            f"  {name}: leaf + proof {count / b:,.0f}/s ({ratio(bare[name], floor_lp):.2f}x the"
            f" floor's time); record + leaf + proof {count / w:,.0f}/s"
            f" ({ratio(full[name], both_floor):.2f}x)"
        )
        print(f"    rounds, leaf + proof: {rates(bare[name])};  with record: {rates(full[name])}")
    print(
        f"  Receipt.from_json of the JSON text, apart: {count / median(parse):,.0f}/s"
        f"   rounds: {rates(parse)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", default="HEAD", help="the earlier code's revision")
    parser.add_argument("--only", choices=["proofs", "receipts"])
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="cpu",
        help="cpu: this process's CPU time (default; the other users of the machine's cores "
        "move it less than wall time); wall: elapsed time",
    )
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    then = load_previous(args.against)
    head = subprocess.run(
        ["git", "rev-parse", "--short", args.against],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", *[f"ledger/{n}.py" for n in PREVIOUS]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    state = " (with uncommitted changes to ledger/)" if dirty else ""
    print(f"now: the working tree{state}; then: {args.against} ({head}); clock: {args.clock}")
    if args.only != "receipts":
        bench_proofs(args, {"now": merkle_now, "then": then["merkle"]})
    if args.only != "proofs":
        bench_receipts(args, {"now": verify_now, "then": then["verify"]})


if __name__ == "__main__":
    main()
