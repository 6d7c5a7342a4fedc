"""Canonical form and record hash (DESIGN §2).

``hash = keccak256(JCS(record))``: the RFC 8785 JSON Canonicalization Scheme
of the record, UTF-8, hashed with Keccak-256 and written ``0x`` + 64 lowercase
hex. RFC 8785 comes from the maintained ``rfc8785`` package, not hand-rolled:
an outsider re-hashing a record must get the same bytes with any conforming
implementation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

import rfc8785

from ledger.errors import CanonicalError
from ledger.hashing import keccak256, to_hex

__all__ = [
    "canonical_bytes",
    "hash_canonical",
    "MAX_JSON_DEPTH",
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


# Python 3.11's C JSON scanner overflows the C stack (a segfault, not a
# RecursionError) on deeply nested input, so depth is bounded before parsing.
# Real records nest about 4 levels; 64 leaves room for any honest extension.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_DEPTH = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nesting_depth(text: str) -> int:
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_DEPTH.__getitem__, brackets)), default=0)


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
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise CanonicalError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise CanonicalError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def parse_record(data: bytes | str) -> dict[str, Any]:
    """Parse a record from JSON text, strictly, and check it is a record."""
    record = parse_json_strict(data)
    _check_record(record)
    # Canonicalize once so that anything JCS refuses (huge integers, lone
    # surrogates) is reported here, at the boundary.
    canonical_bytes(record)
    return record  # type: ignore[no-any-return]
