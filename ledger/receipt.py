"""Receipt v1 (DESIGN §2): the self-contained proof that one record was anchored.

A receipt is untrusted input (it may come from a file, an e-mail, a QR code),
so :meth:`Receipt.from_json` parses it once and strictly: exact members, exact
types (no ``true`` for ``1``, no ``"5"`` for ``5``), digests as ``0x`` + 64
lowercase hex, bounded integers, and sections consistent with ``status``.
Nothing downstream re-validates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from eth_utils.address import is_checksum_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ledger.anchors import Anchor
from ledger.canonical import parse_json_strict
from ledger.errors import CanonicalError, ReceiptFormatError
from ledger.hashing import from_hex32
from ledger.merkle import leaf_of

__all__ = ["Receipt", "MerkleSection", "BatchRef", "AnchorRef", "RECEIPT_VERSION"]

RECEIPT_VERSION = 1

# Bounds that no honest receipt reaches; they keep absurd numbers out early.
_MAX_UINT64 = 2**64 - 1
# A batch is bounded by the service at far less; 2**32 leaves is a 32-level proof.
_MAX_BATCH_SIZE = 2**32
# keccak trees deeper than 64 would need more than 2**64 leaves.
_MAX_PROOF_LENGTH = 64


def _hash32(value: str) -> str:
    from_hex32(value, what="digest")
    return value


def _address(value: str) -> str:
    if len(value) != 42 or not value.startswith("0x"):
        raise ValueError("must be 0x followed by 40 hex digits")
    try:
        int(value[2:], 16)
    except ValueError:
        raise ValueError("must be 0x followed by 40 hex digits") from None
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise ValueError("mixed-case address with a wrong EIP-55 checksum")
    return to_checksum_address(value)


def _bytes32_encoding() -> list[Literal["bytes32"]]:
    return ["bytes32"]


Hash32 = Annotated[str, AfterValidator(_hash32)]
Address = Annotated[str, AfterValidator(_address)]
_Strict = ConfigDict(extra="forbid", strict=True, frozen=True)


class MerkleSection(BaseModel):
    model_config = _Strict

    format: Literal["openzeppelin-standard-v1"] = "openzeppelin-standard-v1"
    leaf_encoding: list[Literal["bytes32"]] = Field(
        default_factory=_bytes32_encoding, min_length=1, max_length=1
    )
    leaf: Hash32
    proof: list[Hash32] = Field(max_length=_MAX_PROOF_LENGTH)
    root: Hash32


class BatchRef(BaseModel):
    model_config = _Strict

    id: int = Field(ge=1, le=_MAX_UINT64)
    size: int = Field(ge=1, le=_MAX_BATCH_SIZE)


class AnchorRef(BaseModel):
    model_config = _Strict

    chain_id: int = Field(ge=1, le=_MAX_UINT64)
    contract: Address
    tx_hash: Hash32
    block_number: int = Field(ge=0, le=_MAX_UINT64)
    block_hash: Hash32
    log_index: int = Field(ge=0, le=_MAX_UINT64)
    timestamp: int = Field(ge=0, le=_MAX_UINT64)


class Receipt(BaseModel):
    """receipt_version 1. Build one directly, or parse with :meth:`from_json`."""

    model_config = _Strict

    receipt_version: Literal[1] = 1
    hash: Hash32
    status: Literal["pending", "anchored", "final"]
    merkle: MerkleSection | None
    batch: BatchRef | None
    anchor: AnchorRef | None

    @model_validator(mode="after")
    def _sections_match_status(self) -> Receipt:
        sections = {"merkle": self.merkle, "batch": self.batch, "anchor": self.anchor}
        if self.status == "pending":
            present = [name for name, value in sections.items() if value is not None]
            if present:
                raise ValueError(f"a pending receipt must have null {', '.join(present)}")
        else:
            missing = [name for name, value in sections.items() if value is None]
            if missing:
                raise ValueError(f"an {self.status} receipt needs {', '.join(missing)}")
        return self

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> Receipt:
        """Parse a receipt from JSON text or an already-decoded object, strictly."""
        if isinstance(data, str | bytes | bytearray):
            try:
                data = parse_json_strict(data)
            except CanonicalError as exc:
                raise ReceiptFormatError(f"receipt is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ReceiptFormatError(f"a receipt must be a JSON object, got {type(data).__name__}")
        version = data.get("receipt_version")
        if type(version) is not int:
            # Checked by hand: Literal[1] would take JSON true (bool is an int).
            raise ReceiptFormatError(
                f"invalid receipt: receipt_version must be the integer {RECEIPT_VERSION}, "
                f"got {version!r}"
            )
        if version != RECEIPT_VERSION:
            raise ReceiptFormatError(
                f"unsupported receipt_version {version}; this verifier reads version "
                f"{RECEIPT_VERSION}"
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ReceiptFormatError(_describe(exc)) from None

    @classmethod
    def pending(cls, record_hash: str) -> Receipt:
        return cls(hash=record_hash, status="pending", merkle=None, batch=None, anchor=None)

    @classmethod
    def anchored(
        cls, *, record_hash: str, proof: list[str], anchor: Anchor, final: bool = False
    ) -> Receipt:
        """The receipt of a record in an anchored batch (``final`` after K confirmations)."""
        return cls.model_validate(
            {
                "hash": record_hash,
                "status": "final" if final else "anchored",
                "merkle": {"leaf": leaf_of(record_hash), "proof": proof, "root": anchor.root},
                "batch": {"id": anchor.batch_id, "size": anchor.leaf_count},
                "anchor": {
                    "chain_id": anchor.chain_id,
                    "contract": anchor.contract,
                    "tx_hash": anchor.tx_hash,
                    "block_number": anchor.block_number,
                    "block_hash": anchor.block_hash,
                    "log_index": anchor.log_index,
                    "timestamp": anchor.timestamp,
                },
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """The receipt as JSON data, members in the order DESIGN §2 writes them."""
        return {
            "receipt_version": self.receipt_version,
            "hash": self.hash,
            "status": self.status,
            "merkle": None
            if self.merkle is None
            else {
                "format": self.merkle.format,
                "leaf_encoding": list(self.merkle.leaf_encoding),
                "leaf": self.merkle.leaf,
                "proof": list(self.merkle.proof),
                "root": self.merkle.root,
            },
            "batch": None if self.batch is None else {"id": self.batch.id, "size": self.batch.size},
            "anchor": None if self.anchor is None else self.anchor.model_dump(),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _describe(exc: ValidationError) -> str:
    """One readable line per problem: ``anchor.tx_hash: must be 0x…``."""
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "receipt"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "invalid receipt: " + "; ".join(lines)
