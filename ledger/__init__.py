"""Ancla's protocol core: canonical record hash, Merkle tree, receipts, verification.

Importable alone (no database, no service): an auditor can ``pip install``
the project and verify receipts with this package and the chain's JSON-RPC.
"""

from ledger.canonical import canonical_bytes, parse_record, record_hash
from ledger.errors import (
    AnchorMismatch,
    CanonicalError,
    ChainError,
    LeafMismatch,
    LedgerError,
    MerkleError,
    NotAnchored,
    ProofMismatch,
    ReceiptFormatError,
    RecordMismatch,
    VerificationError,
)
from ledger.merkle import MerkleTree, leaf_of, root_from_proof
from ledger.receipt import Receipt
from ledger.verify import StepResult, VerificationReport, verify_receipt

__all__ = [
    "AnchorMismatch",
    "CanonicalError",
    "ChainError",
    "LeafMismatch",
    "LedgerError",
    "MerkleError",
    "MerkleTree",
    "NotAnchored",
    "ProofMismatch",
    "Receipt",
    "ReceiptFormatError",
    "RecordMismatch",
    "StepResult",
    "VerificationError",
    "VerificationReport",
    "canonical_bytes",
    "leaf_of",
    "parse_record",
    "record_hash",
    "root_from_proof",
    "verify_receipt",
]
