"""What in-browser verification says, in the pages' one catalogue.

``MESSAGES`` has exactly the keys and English sentences of ``MESSAGES`` in
static/verify.js (a test holds the two equal); a page hands the browser the
sentences in the visitor's language (``catalogue()``), and verify.js fills in
the ``{placeholders}``. The step labels say what each step of DESIGN §2 checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from app.web.i18n import N_

MESSAGES: Final[dict[str, str]] = {
    "record.pass": N_("keccak256(JCS(record)) equals the receipt's hash"),
    "record.fail": N_(
        "the record does not hash to the receipt's hash (it is another record, or was changed)"
    ),
    "record.unreadable": N_("the record is not JSON that can be hashed: {error}"),
    "pending": N_(
        "the receipt is pending: the record is accepted but not yet anchored; fetch the"
        " receipt again later"
    ),
    "leaf.pass": N_("leaf recomputed from the hash"),
    "leaf.fail": N_("keccak256(keccak256(hash)) is not the receipt's leaf"),
    "proof.length": N_("a proof in a batch of {size} has {lengths} elements"),
    "proof.fail": N_("folding the proof over the leaf does not give the receipt's root"),
    "proof.pass": N_("{count}-step proof leads to the root"),
    "chain.fail": N_("the RPC endpoint serves another chain than the receipt names"),
    "chain.pass": N_("the RPC endpoint serves the receipt's chain"),
    "contract.fail": N_("there is no contract at the receipt's address on this chain"),
    "contract.pass": N_("a contract exists at the receipt's address"),
    "block.fail": N_(
        "block {number} on the chain is not the receipt's block: the anchor was reorged away"
        " or the receipt is wrong"
    ),
    "block.timestamp": N_("the block's timestamp is not the receipt's timestamp"),
    "block.pass": N_("block {number} is canonical, timestamp matches"),
    "transaction.missing": N_("the anchoring transaction is not on this chain"),
    "transaction.reverted": N_("the anchoring transaction reverted"),
    "transaction.to": N_(
        "the anchoring transaction was sent to another address than the receipt's contract"
    ),
    "transaction.block": N_("the anchoring transaction is in another block than the receipt says"),
    "transaction.pass": N_("the transaction succeeded in the receipt's block"),
    "event.fail": N_(
        "log {log_index} of the transaction is not BatchAnchored(batch {batch}, root, {size}"
        " leaves) from the receipt's contract"
    ),
    "event.pass": N_("the transaction emitted BatchAnchored for this batch and root"),
    "root.fail": N_("the contract's root for batch {batch} is not the receipt's root"),
    "root.pass": N_("rootOf({batch}) on chain equals the receipt's root"),
    "confirmations.fail": N_(
        "the anchor has {depth} confirmations, fewer than the {asked} asked for"
    ),
    "confirmations.pass": N_("{depth} confirmations (asked for {asked})"),
    "trust.local": N_("nothing but this browser: computed here from the bytes"),
    "trust.receipt": N_("nothing but this browser: computed here from the receipt"),
    "trust.rpc": N_("the chain, as the JSON-RPC endpoint {rpc} answers"),
    "error.receipt": N_("this is not a receipt Ancla can check: {error}"),
    "error.chain": N_("could not ask the chain at {rpc}: {error}"),
}

# What the page says around the steps (verify.js leaves the wording to the page).
PAGE_MESSAGES: Final[dict[str, str]] = {
    "result.pass": N_("passed"),
    "result.fail": N_("failed"),
    "result.skipped": N_("not run"),
    "result.error": N_("could not check"),
    "result.running": N_("checking…"),
    "expected": N_("expected"),
    "actual": N_("actual"),
    "trusted": N_("trusted"),
    "outcome.pass": N_("Verified: this record is anchored on the chain, unchanged."),
    "outcome.fail": N_("Not verified: a step failed (see below)."),
    "outcome.error": N_("Could not check: see below."),
    "outcome.running": N_("Verifying in this browser…"),
    "document.searching": N_("Hashing the file in this browser…"),
    "document.none": N_("No record binds this file (SHA-256 {sha256})."),
    "document.found": N_("Records that bind this file (SHA-256 {sha256}):"),
    "document.error": N_("Could not look the file up: {error}"),
    "input.receipt": N_("Paste or choose a receipt first."),
    "input.fetch": N_("Could not fetch {url} from this service: {error}"),
    "status.pending": N_("pending"),
    "status.anchored": N_("anchored"),
    "status.final": N_("final"),
    "document.order": N_("order {number}"),
}

# The label of each step, by the CLI's step name (DESIGN §9).
STEP_LABELS: Final[dict[str, str]] = {
    "record": N_("The record's bytes hash to the receipt's hash"),
    "leaf": N_("The Merkle leaf is recomputed from the hash"),
    "proof": N_("The proof folds to the batch's root"),
    "anchor": N_("The receipt is anchored"),
    "anchor.chain": N_("The endpoint serves the receipt's chain"),
    "anchor.contract": N_("The contract exists on that chain"),
    "anchor.block": N_("The anchoring block is still on the chain"),
    "anchor.transaction": N_("The anchoring transaction succeeded"),
    "anchor.event": N_("The transaction emitted the anchoring event"),
    "anchor.root": N_("The contract holds the batch's root"),
    "anchor.confirmations": N_("Enough blocks were built on top"),
}

STEPS: Final[tuple[str, ...]] = (
    "record",
    "leaf",
    "proof",
    "anchor.chain",
    "anchor.contract",
    "anchor.block",
    "anchor.transaction",
    "anchor.event",
    "anchor.root",
    "anchor.confirmations",
)


def catalogue(gettext: Callable[[str], str]) -> dict[str, str]:
    """Every sentence above in the page's language (``gettext`` is the page's); the step
    labels as ``step.<name>``."""
    labels = {f"step.{name}": label for name, label in STEP_LABELS.items()}
    return {
        key: gettext(message) for key, message in {**MESSAGES, **PAGE_MESSAGES, **labels}.items()
    }
