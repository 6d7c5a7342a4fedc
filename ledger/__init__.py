"""Ancla's protocol core: canonical record hash, Merkle tree, receipts, verification.

Importable alone (no database, no service): an auditor can ``pip install``
the project and verify receipts with this package and the chain's JSON-RPC.

The names below are imported when first used (PEP 562): ``import ledger.errors``
alone then costs nothing more, where importing every module here, web3.py and
eth-account with them, cost every ``ancla`` command 0.75 s of start-up (measured).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Each public name, by the module it lives in.
_MODULES = {
    "ledger.canonical": ("canonical_bytes", "parse_record", "record_hash"),
    "ledger.errors": (
        "AnchorMismatch",
        "CanonicalError",
        "ChainError",
        "LeafMismatch",
        "LedgerError",
        "MerkleError",
        "NotAnchored",
        "ProofMismatch",
        "ReceiptFormatError",
        "RecordMismatch",
        "VerificationError",
    ),
    "ledger.merkle": ("MerkleTree", "leaf_of", "root_from_proof"),
    "ledger.receipt": ("Receipt",),
    "ledger.verify": ("StepResult", "VerificationReport", "verify_receipt"),
}
_HOMES = {name: module for module, names in _MODULES.items() for name in names}

if TYPE_CHECKING:  # the same names, for type checkers (``X as X``: re-exported)
    from ledger.canonical import canonical_bytes as canonical_bytes
    from ledger.canonical import parse_record as parse_record
    from ledger.canonical import record_hash as record_hash
    from ledger.errors import AnchorMismatch as AnchorMismatch
    from ledger.errors import CanonicalError as CanonicalError
    from ledger.errors import ChainError as ChainError
    from ledger.errors import LeafMismatch as LeafMismatch
    from ledger.errors import LedgerError as LedgerError
    from ledger.errors import MerkleError as MerkleError
    from ledger.errors import NotAnchored as NotAnchored
    from ledger.errors import ProofMismatch as ProofMismatch
    from ledger.errors import ReceiptFormatError as ReceiptFormatError
    from ledger.errors import RecordMismatch as RecordMismatch
    from ledger.errors import VerificationError as VerificationError
    from ledger.merkle import MerkleTree as MerkleTree
    from ledger.merkle import leaf_of as leaf_of
    from ledger.merkle import root_from_proof as root_from_proof
    from ledger.receipt import Receipt as Receipt
    from ledger.verify import StepResult as StepResult
    from ledger.verify import VerificationReport as VerificationReport
    from ledger.verify import verify_receipt as verify_receipt

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
