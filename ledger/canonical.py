"""Canonical form and record hash (DESIGN §2).

``hash = keccak256(JCS(record))``: the RFC 8785 JSON Canonicalization Scheme
of the record, UTF-8, hashed with Keccak-256 and written ``0x`` + 64 lowercase
hex. RFC 8785 comes from the maintained ``rfc8785`` package, not hand-rolled:
an outsider re-hashing a record must get the same bytes with any conforming
implementation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from ledger.errors import CanonicalError
from ledger.hashing import keccak256, to_hex

__all__ = [
    "canonical_bytes",
    "hash_canonical",
    "parse_json_strict",
    "parse_record",
    "record_hash",
]


def _check_record(record: object) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise CanonicalError(f"a record must be a JSON object, got {type(record).__name__}")
    schema = record.get("schema")
    if not isinstance(schema, str) or not schema:
        raise CanonicalError('a record must have a non-empty string member "schema"')
    return record


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``record``."""
    _check_record(record)
    try:
        return rfc8785.dumps(record)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalError(f"record cannot be canonicalized: {exc}") from exc
    except UnicodeEncodeError as exc:
        # A lone surrogate (e.g. from a "\ud800" escape) has no UTF-8 form.
        raise CanonicalError(f"record holds a string that is not valid Unicode: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise CanonicalError(f"record is not JSON data: {exc}") from exc


def hash_canonical(canonical: bytes) -> str:
    """The record hash of bytes already in canonical form."""
    return to_hex(keccak256(canonical))


def record_hash(record: Mapping[str, Any]) -> str:
    """``0x`` + hex of keccak256(JCS(record)): the hash receipts are looked up by."""
    return hash_canonical(canonical_bytes(record))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            # Two parsers may keep different duplicates; a hash must mean one thing.
            raise CanonicalError(f"duplicate key {key!r} in JSON object")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise CanonicalError(f"{name} is not valid JSON")


def parse_json_strict(data: bytes | str) -> Any:
    """Parse JSON text strictly: UTF-8 only, no duplicate keys, no NaN/Infinity."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CanonicalError(f"not valid UTF-8 at byte {exc.start}") from exc
    else:
        text = data
    if text.startswith("\ufeff"):
        raise CanonicalError("a byte-order mark is not allowed before JSON text")
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise CanonicalError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise CanonicalError("JSON nested too deeply") from exc


def parse_record(data: bytes | str) -> dict[str, Any]:
    """Parse a record from JSON text, strictly, and check it is a record."""
    record = parse_json_strict(data)
    _check_record(record)
    # Canonicalize once so that anything JCS refuses (huge integers, lone
    # surrogates) is reported here, at the boundary.
    canonical_bytes(record)
    return record  # type: ignore[no-any-return]
