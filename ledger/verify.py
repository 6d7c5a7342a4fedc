"""Receipt verification: the four steps of DESIGN §2.

Steps 1-3 and the comparison of step 4 are pure functions of data; the only
I/O is :meth:`ledger.chain.Registry.evidence`, which fetches what the chain
says into an :class:`~ledger.chain.AnchorEvidence`. Each check either passes
(and is recorded in the report) or raises a :class:`VerificationError`
subclass naming the step, with expected vs. actual.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sha3 import keccak_256

from ledger.canonical import record_hash
from ledger.chain import AnchorEvidence, ChainClient
from ledger.errors import (
    AnchorMismatch,
    LeafMismatch,
    NotAnchored,
    ProofMismatch,
    RecordMismatch,
    VerificationError,
)
from ledger.hashing import from_hex32, to_hex
from ledger.merkle import root_from_proof
from ledger.receipt import Receipt

__all__ = [
    "StepResult",
    "VerificationReport",
    "verify_receipt",
    "check_record",
    "check_leaf",
    "check_proof",
    "check_anchor",
    "proof_lengths",
]


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    ok: bool
    detail: str
    expected: Any = None
    actual: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "ok": self.ok,
            "detail": self.detail,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(slots=True)
class VerificationReport:
    """Every step run, in order; ``ok`` only if all passed and none is missing."""

    hash: str
    steps: list[StepResult] = field(default_factory=list)
    complete: bool = False

    @property
    def ok(self) -> bool:
        return self.complete and all(step.ok for step in self.steps)

    @property
    def failed(self) -> StepResult | None:
        return next((step for step in self.steps if not step.ok), None)

    def to_dict(self) -> dict[str, Any]:
        failed = self.failed
        return {
            "hash": self.hash,
            "valid": self.ok,
            "failed_step": None if failed is None else failed.step,
            "steps": [step.to_dict() for step in self.steps],
        }


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _same(actual: str, claimed: object) -> bool:
    """Whether ``claimed`` equals ``actual`` (a digest we computed, ``0x…``), as
    :func:`_equal` judges it. A plain string that is equal decides at once;
    anything else (a mismatch, a str subclass, a non-string in a receipt made
    without validation) is judged by :func:`_equal`, which raises what it
    always raised."""
    if type(claimed) is str and actual == claimed:
        return True
    return _equal(actual, claimed)  # type: ignore[arg-type]


def _digest(text: object) -> bytes | None:
    """The 32 bytes of ``0x`` + 64 lowercase hex digits, or None for anything else
    (which :func:`~ledger.hashing.from_hex32` then accepts or words, as before).

    Accepts exactly what from_hex32 accepts of a plain string: ``bytes.fromhex``
    alone would also take upper case and spaces, but its bytes re-encode to the
    same digits only when the digits were lowercase hex.
    """
    if type(text) is str and len(text) == 66 and text[:2] == "0x":
        digits = text[2:]
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            return None
        if raw.hex() == digits:
            return raw
    return None


def _digests(texts: list[Any]) -> bytes | None:
    """The concatenated 32 bytes of every text, if each is a plain ``0x`` + 64
    lowercase hex digits (as :func:`_digest` judges one), else None.

    One decode of the whole instead of one per text (the proof of a batch of
    10,000 has 14 elements): every text is a str of 66 characters starting with
    ``0x``, checked in C over the concatenation; removing ``"0x"`` then removes
    exactly those prefixes (another ``0x`` would be a non-hex digit, and makes
    the digits too short); the digits decode and re-encode to themselves only
    if they are lowercase hex.
    """
    count = len(texts)
    if set(map(type, texts)) != {str} or set(map(len, texts)) != {66}:
        return None
    joined = "".join(texts)
    if joined[::66] != "0" * count or joined[1::66] != "x" * count:
        return None
    digits = joined.replace("0x", "")
    if len(digits) != 64 * count:
        return None
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return None
    return raw if raw.hex() == digits else None


def check_record(receipt: Receipt, record: Mapping[str, Any]) -> StepResult:
    """Step 1: keccak256(JCS(record)) == receipt.hash."""
    actual = record_hash(record)
    if not _same(actual, receipt.hash):
        raise RecordMismatch(
            "the record does not hash to the receipt's hash (it is another record, or was changed)",
            expected=receipt.hash,
            actual=actual,
        )
    return StepResult(
        "record", True, "keccak256(JCS(record)) equals the receipt's hash", receipt.hash, actual
    )


def _anchored(receipt: Receipt) -> tuple[Any, Any, Any]:
    if receipt.merkle is None or receipt.batch is None or receipt.anchor is None:
        raise NotAnchored(
            "the receipt is pending: the record is accepted but not yet anchored; fetch the "
            "receipt again later",
            expected="anchored or final",
            actual=receipt.status,
        )
    return receipt.merkle, receipt.batch, receipt.anchor


def check_leaf(receipt: Receipt) -> StepResult:
    """Step 2: the leaf recomputed from the hash equals merkle.leaf."""
    merkle, _, _ = _anchored(receipt)
    raw = _digest(receipt.hash)
    if raw is None:
        raw = from_hex32(receipt.hash)
    # leaf_bytes(raw), inlined: keccak256(keccak256(abi.encode(bytes32))).
    actual = "0x" + keccak_256(keccak_256(raw).digest()).hexdigest()
    if not _same(actual, merkle.leaf):
        raise LeafMismatch(
            "keccak256(keccak256(hash)) is not the receipt's leaf",
            expected=merkle.leaf,
            actual=actual,
        )
    return StepResult("leaf", True, "leaf recomputed from the hash", merkle.leaf, actual)


def proof_lengths(size: int) -> set[int]:
    """The proof lengths a leaf can have in a complete tree of ``size`` leaves."""
    deepest = (2 * size - 1).bit_length() - 1
    shallowest = size.bit_length() - 1
    return {shallowest, deepest}


def check_proof(receipt: Receipt) -> StepResult:
    """Step 3: folding the proof over the leaf gives merkle.root.

    Receipts as :meth:`Receipt.from_json` makes them (plain strings, a list, an
    int size) are checked with one hex decode of the leaf and the whole proof and
    the fold done here; whatever that path does not pass, a failure included, is
    checked again by :func:`_check_proof_by_parts`, which words every error.
    """
    merkle, batch, _ = _anchored(receipt)
    proof, size = merkle.proof, batch.size
    if type(proof) is list and type(size) is int:
        count = len(proof)
        if count == size.bit_length() - 1 or count == (2 * size - 1).bit_length() - 1:
            raw = _digests([merkle.leaf, *proof])
            if raw is not None:
                node = raw[:32]
                k = keccak_256
                # root_from_proof, inlined: MerkleProof.processProof's sorted pairs.
                for start in range(32, 32 * (count + 1), 32):
                    sibling = raw[start : start + 32]
                    node = k(node + sibling if node < sibling else sibling + node).digest()
                actual = "0x" + node.hex()
                if type(merkle.root) is str and actual == merkle.root:
                    return StepResult(
                        "proof", True, f"{count}-step proof leads to the root", merkle.root, actual
                    )
    return _check_proof_by_parts(receipt)


def _check_proof_by_parts(receipt: Receipt) -> StepResult:
    merkle, batch, _ = _anchored(receipt)
    lengths = proof_lengths(batch.size)
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


def check_anchor(
    receipt: Receipt, evidence: AnchorEvidence, *, confirmations: int = 1
) -> list[StepResult]:
    """Step 4: judge what the chain says (``evidence``) against the receipt's claim.

    Checked in the order that names the real cause first: the chain itself,
    then whether the anchoring block is still canonical (a reorg), then the
    transaction and its event, the stored root, and finally depth.
    """
    merkle, batch, anchor = _anchored(receipt)
    results: list[StepResult] = []

    def passed(step: str, detail: str, expected: Any, actual: Any) -> None:
        results.append(StepResult(step, True, detail, expected, actual))

    if evidence.chain_id != anchor.chain_id:
        raise AnchorMismatch(
            "the RPC endpoint serves another chain than the receipt names",
            step="anchor.chain",
            expected=anchor.chain_id,
            actual=evidence.chain_id,
        )
    passed(
        "anchor.chain",
        "the RPC endpoint serves the receipt's chain",
        anchor.chain_id,
        evidence.chain_id,
    )

    if not evidence.contract_has_code:
        raise AnchorMismatch(
            "there is no contract at the receipt's address on this chain",
            step="anchor.contract",
            expected="contract code",
            actual="no code",
        )
    passed(
        "anchor.contract",
        "a contract exists at the receipt's address",
        anchor.contract,
        anchor.contract,
    )

    if evidence.block_hash_at_height is None or not _equal(
        evidence.block_hash_at_height, anchor.block_hash
    ):
        raise AnchorMismatch(
            f"block {anchor.block_number} on the chain is not the receipt's block: the anchor "
            "was reorged away or the receipt is wrong",
            step="anchor.block",
            expected=anchor.block_hash,
            actual=evidence.block_hash_at_height,
        )
    if evidence.block_timestamp != anchor.timestamp:
        raise AnchorMismatch(
            "the block's timestamp is not the receipt's timestamp",
            step="anchor.block",
            expected=anchor.timestamp,
            actual=evidence.block_timestamp,
        )
    passed(
        "anchor.block",
        f"block {anchor.block_number} is canonical, timestamp matches",
        anchor.block_hash,
        evidence.block_hash_at_height,
    )

    if not evidence.tx_found:
        raise AnchorMismatch(
            "the anchoring transaction is not on this chain",
            step="anchor.transaction",
            expected=anchor.tx_hash,
            actual=None,
        )
    if evidence.tx_status != 1:
        raise AnchorMismatch(
            "the anchoring transaction reverted",
            step="anchor.transaction",
            expected="status 1",
            actual=f"status {evidence.tx_status}",
        )
    if evidence.tx_to != anchor.contract:
        raise AnchorMismatch(
            "the anchoring transaction was sent to another address than the receipt's contract",
            step="anchor.transaction",
            expected=anchor.contract,
            actual=evidence.tx_to,
        )
    if evidence.tx_block_hash is None or not _equal(evidence.tx_block_hash, anchor.block_hash):
        raise AnchorMismatch(
            "the anchoring transaction is in another block than the receipt says",
            step="anchor.transaction",
            expected=anchor.block_hash,
            actual=evidence.tx_block_hash,
        )
    passed(
        "anchor.transaction",
        "the transaction succeeded in the receipt's block",
        anchor.tx_hash,
        anchor.tx_hash,
    )

    event = next((e for e in evidence.events if e.log_index == anchor.log_index), None)
    claimed = (anchor.contract, batch.id, merkle.root, batch.size)
    found = (
        None if event is None else (event.contract, event.batch_id, event.root, event.leaf_count)
    )
    if found != claimed:
        raise AnchorMismatch(
            f"log {anchor.log_index} of the transaction is not BatchAnchored(batch {batch.id}, "
            f"root, {batch.size} leaves) from the receipt's contract",
            step="anchor.event",
            expected=_event_text(claimed),
            actual=None if found is None else _event_text(found),
        )
    passed(
        "anchor.event",
        "the transaction emitted BatchAnchored for this batch and root",
        _event_text(claimed),
        _event_text(found),
    )

    if evidence.root_on_chain is None or not _equal(evidence.root_on_chain, merkle.root):
        raise AnchorMismatch(
            f"the contract's root for batch {batch.id} is not the receipt's root",
            step="anchor.root",
            expected=merkle.root,
            actual=evidence.root_on_chain,
        )
    passed(
        "anchor.root",
        f"rootOf({batch.id}) on chain equals the receipt's root",
        merkle.root,
        evidence.root_on_chain,
    )

    depth = evidence.head_number - anchor.block_number + 1
    if depth < confirmations:
        raise AnchorMismatch(
            f"the anchor has {depth} confirmations, fewer than the {confirmations} asked for",
            step="anchor.confirmations",
            expected=f">= {confirmations}",
            actual=depth,
        )
    passed(
        "anchor.confirmations",
        f"{depth} confirmations (asked for {confirmations})",
        f">= {confirmations}",
        depth,
    )
    return results


def _event_text(event: tuple[str, int, str, int]) -> str:
    contract, batch_id, root, leaf_count = event
    return f"{contract} BatchAnchored({batch_id}, {root}, {leaf_count})"


def verify_receipt(
    receipt: Receipt | Mapping[str, Any] | str | bytes,
    record: Mapping[str, Any] | None = None,
    *,
    rpc_url: str,
    confirmations: int = 1,
) -> VerificationReport:
    """Verify ``receipt`` (and ``record``, if given) against the chain at ``rpc_url``.

    Returns the per-step report when every step passes. On the first failure
    raises a :class:`VerificationError` naming the step, with ``.report``
    holding every step run so far (the failed one last). Trouble reaching the
    chain raises :class:`ledger.errors.ChainError`: "could not check", which
    is not the same as "invalid".
    """
    if confirmations < 1:
        raise ValueError("confirmations must be at least 1")
    parsed = receipt if isinstance(receipt, Receipt) else Receipt.from_json(receipt)
    report = VerificationReport(hash=parsed.hash)
    try:
        if record is not None:
            report.steps.append(check_record(parsed, record))
        report.steps.append(check_leaf(parsed))
        report.steps.append(check_proof(parsed))
        merkle, batch, anchor = _anchored(parsed)
        registry = ChainClient(rpc_url).registry(anchor.contract)
        evidence = registry.evidence(
            batch_id=batch.id, tx_hash=anchor.tx_hash, block_number=anchor.block_number
        )
        report.steps.extend(check_anchor(parsed, evidence, confirmations=confirmations))
    except VerificationError as exc:
        report.steps.append(
            StepResult(exc.step, False, exc.message, _jsonable(exc.expected), _jsonable(exc.actual))
        )
        exc.report = report
        raise
    report.complete = True
    return report


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool | float):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)
