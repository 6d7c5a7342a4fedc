"""Anchors as values: what the chain says about a batch root (DESIGN §2, §4).

Pure data, no I/O: the chain adapter (:mod:`ledger.chain`) makes them, the
service stores and serves them, receipts are built from them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Anchor", "AnchorEvent"]


@dataclass(frozen=True, slots=True)
class AnchorEvent:
    """One BatchAnchored log, decoded: an anchor as the chain's logs tell it, before
    its block's time is read (:meth:`ledger.chain.Registry.anchor_of` does that)."""

    contract: str
    batch_id: int
    root: str
    leaf_count: int
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int


@dataclass(frozen=True, slots=True)
class Anchor:
    """A batch root anchored on chain: the one value every part passes around.

    Returned by the chain adapter (:meth:`Registry.wait_for_anchor`,
    :meth:`Registry.anchor_of`), stored by the worker in the batch's row,
    and read back from it for receipts, batch views and open data. Its
    first nine fields are what a receipt's ``anchor``, ``batch`` and
    ``merkle.root`` say; ``gas_used`` is the operator's figure (None when
    the receipt of the transaction could not be had).
    """

    chain_id: int
    contract: str
    batch_id: int
    root: str
    leaf_count: int
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int
    timestamp: int
    gas_used: int | None = None
