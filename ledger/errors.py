"""Errors of the protocol core.

Everything ledger/ raises derives from :class:`LedgerError`, so callers (the
service's problem+json handler, the CLI's exit-code mapping) catch one root.
Verification failures carry the step that failed and what was expected vs.
found, never a bare ``False``.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Root of every error raised by the ledger package."""


class CanonicalError(LedgerError):
    """A record cannot be parsed or put in canonical (RFC 8785) form."""


class MerkleError(LedgerError):
    """A Merkle tree cannot be built, loaded or asked for this proof."""


class ReceiptFormatError(LedgerError):
    """A receipt is not a well-formed receipt_version 1 document."""


class VerificationError(LedgerError):
    """A verification step failed.

    ``step`` names the step (``record``, ``leaf``, ``proof``, ``anchor.root``,
    ``anchor.transaction``, ``anchor.event``, ``anchor.block``,
    ``anchor.confirmations``, ...); ``expected`` and ``actual`` say what the
    receipt claims against what was found. ``report`` is filled in by
    :func:`ledger.verify_receipt` with every step run up to the failure.
    """

    step: str = "verification"

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        expected: Any = None,
        actual: Any = None,
    ) -> None:
        super().__init__(message)
        if step is not None:
            self.step = step
        self.message = message
        self.expected = expected
        self.actual = actual
        self.report: Any = None

    def __str__(self) -> str:
        text = f"{self.step}: {self.message}"
        if self.expected is not None or self.actual is not None:
            text += f" (expected {self.expected}, got {self.actual})"
        return text


class RecordMismatch(VerificationError):
    """Step 1: the record does not hash to the receipt's hash."""

    step = "record"


class LeafMismatch(VerificationError):
    """Step 2: the leaf recomputed from the hash is not the receipt's leaf."""

    step = "leaf"


class ProofMismatch(VerificationError):
    """Step 3: folding the proof over the leaf does not give the root."""

    step = "proof"


class NotAnchored(VerificationError):
    """The receipt is still pending: there is nothing on chain to check yet."""

    step = "anchor"


class AnchorMismatch(VerificationError):
    """Step 4: the chain does not back the receipt's anchor claim."""

    step = "anchor"


class ChainError(LedgerError):
    """Talking to the chain failed (unreachable node, bad answer, revert)."""


class ChainUnavailable(ChainError):
    """The RPC endpoint cannot be reached or answered with garbage."""


class TransactionFailed(ChainError):
    """A transaction we sent was mined but reverted, or never got mined."""


class BatchIdConflict(ChainError):
    """The contract expected another batch id (a replay, or a gap)."""

    def __init__(self, message: str, *, expected: int, given: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.given = given


class NotAnchorer(ChainError):
    """The signing key does not hold the contract's anchorer role."""


class SignerRefused(ChainError):
    """The signing key may not be used on this chain."""
