"""Canonical form (RFC 8785) and record hash: known answers and strict parsing."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak

from ledger import CanonicalError, canonical_bytes, parse_record, record_hash
from ledger.canonical import parse_json_strict

pytestmark = pytest.mark.unit


def reference_keccak(data: bytes) -> str:
    """An independent Keccak-256 (pycryptodome), to check the fast one."""
    return "0x" + pycryptodome_keccak.new(digest_bits=256, data=data).hexdigest()


def test_canonical_form_sorts_keys_by_utf16_and_keeps_utf8() -> None:
    # RFC 8785 §3.2.3 sorting example: keys compare by UTF-16 code units.
    record = {
        "schema": "s",
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","schema":"s","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert canonical_bytes(record) == expected


def test_record_hash_is_keccak_of_jcs_known_answer() -> None:
    record = {
        "schema": "ancla/purchase-order/1",
        "purchase_order": {"order_number": "OCAM-2026-1556-7-0", "total": "5796.99"},
    }
    jcs = (
        b'{"purchase_order":{"order_number":"OCAM-2026-1556-7-0","total":"5796.99"},'
        b'"schema":"ancla/purchase-order/1"}'
    )
    assert canonical_bytes(record) == jcs
    assert record_hash(record) == reference_keccak(jcs)
    # Reproduce: python -c "from Crypto.Hash import keccak;
    #   print(keccak.new(digest_bits=256, data=b'<jcs above>').hexdigest())"
    assert record_hash(record) == (
        "0x3d54ee23ebeea6db3e50244ee9f778d92927120b3972fb14e29ea9303cb1ab70"
    )


def test_key_order_and_whitespace_do_not_change_the_hash() -> None:
    a = parse_record(b'{"schema": "x", "b": "2", "a": {"d": [1, 2], "c": "\\u00e9"}}')
    b = parse_record('{"a":{"c":"é","d":[1,2]},"b":"2","schema":"x"}')
    assert record_hash(a) == record_hash(b)


def test_any_change_changes_the_hash() -> None:
    base = {"schema": "x", "total": "100.00"}
    assert record_hash(base) != record_hash({"schema": "x", "total": "100.0"})
    assert record_hash(base) != record_hash({"schema": "x", "total": "100.00", "y": None})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"schema":"x","a":1,"a":2}', "duplicate key 'a'"),
        (b'{"schema":"x","a":NaN}', "NaN is not valid JSON"),
        (b'{"schema":"x","a":Infinity}', "Infinity is not valid JSON"),
        (b'{"schema":"x","a":-Infinity}', "-Infinity is not valid JSON"),
        (b'{"schema":"x","a":"\xff"}', "not valid UTF-8 at byte 19"),
        (b'{"schema":"x",', "invalid JSON"),
        (b"\xef\xbb\xbf{}", "byte-order mark"),
        (b'["schema"]', "a record must be a JSON object, got list"),
        (b'{"a":1}', 'non-empty string member "schema"'),
        (b'{"schema":""}', 'non-empty string member "schema"'),
        (b'{"schema":"x","n":9007199254740993}', "cannot be canonicalized"),
        (b'{"schema":"x","s":"\\ud800"}', "non-UTF-8 codepoints"),
    ],
)
def test_parse_record_rejects_with_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(CanonicalError, match=message.replace("(", r"\(")):
        parse_record(data)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(CanonicalError, match="nested deeper than 64 levels"):
        parse_json_strict(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # Brackets that do not pair up: the exact count decides the depth.
        (b"[" * 65 + b"}" * 65, "nested deeper than 64 levels"),
        (b"[" * 100_000, "nested deeper than 64 levels"),
        (b"[" * 64 + b"}" * 64, "invalid JSON"),
        (b"[]" * 40 + b"]" * 70, "invalid JSON"),
        (b"[" * 10 + b"]" * 9, "invalid JSON"),
    ],
)
def test_depth_of_brackets_that_do_not_pair_up(data: bytes, message: str) -> None:
    with pytest.raises(CanonicalError, match=message):
        parse_json_strict(data)


def test_depth_exactly_at_the_limit_is_accepted() -> None:
    nested: list[Any] = []
    for _ in range(63):
        nested = [nested]
    assert parse_json_strict(b"[" * 64 + b"]" * 64) == nested


def test_record_hash_refuses_non_records() -> None:
    with pytest.raises(CanonicalError, match="must be a JSON object"):
        record_hash(["schema"])  # type: ignore[arg-type]
    with pytest.raises(CanonicalError, match="unsupported type"):
        record_hash({"schema": "x", "when": object()})


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    deep_text = "[" * 1000 + '\\"{'
    record = parse_record('{"schema":"x","s":"' + deep_text + '"}')
    assert record["s"] == "[" * 1000 + '"{'
    assert parse_json_strict("[" * 64 + "]" * 64) is not None


# -- the orjson fast path must be RFC 8785 exactly ---------------------------------------

import rfc8785  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = (
    st.text() | st.booleans() | st.none() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
)
_documents = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _documents, max_size=6))
def test_fast_path_equals_rfc8785(document: dict[str, object]) -> None:
    record = {**document, "schema": "x"}
    try:
        expected = rfc8785.dumps(record)
    except rfc8785.CanonicalizationError:
        with pytest.raises(CanonicalError):
            canonical_bytes(record)
        return
    assert canonical_bytes(record) == expected


@pytest.mark.parametrize(
    "value",
    [
        "\u2028\u2029",
        "\x00\x1f\x7f",
        'quote " backslash \\ ',
        "\U0001f600 \ue000 \ufb33",
        "é",
        2**53 - 1,
        -(2**53) + 1,
    ],
)
def test_fast_path_edge_values(value: object) -> None:
    record = {"schema": "x", "v": value, "\u20ac": "non-ASCII key takes the general path"}
    assert canonical_bytes(record) == rfc8785.dumps(record)
    plain = {"schema": "x", "v": value}
    assert canonical_bytes(plain) == rfc8785.dumps(plain)


# -- the orjson fast path of parse_json_strict must decide exactly as the careful one --

_json_values = st.recursive(
    st.text()
    | st.booleans()
    | st.none()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (1 and 1.0 differ here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[attr-defined]
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))  # type: ignore[arg-type]
    return a == b


@settings(max_examples=500, deadline=None)
@given(_json_values, st.booleans())
def test_strict_parse_of_bytes_equals_the_careful_parse(value: object, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        careful = parse_json_strict(text)  # text: the careful path only
    except CanonicalError as exc:  # e.g. lone surrogates made by the strategy
        with pytest.raises(CanonicalError, match=re.escape(str(exc))):
            parse_json_strict(text.encode("utf-8", "surrogatepass"))
        return
    assert _same(parse_json_strict(text.encode("utf-8", "surrogatepass")), careful)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":1}',
        b'{"x":{"k":"v","k":"v"}}',
        b'[{"a:b":"c\\":d","a:b":"c\\":d"}]',
        b'{"s":"\\\\","s":"\\\\"}',
        b'{"": 1, "": 1}',
    ],
)
def test_duplicate_keys_are_refused_wherever_they_hide(data: bytes) -> None:
    with pytest.raises(CanonicalError, match="duplicate key"):
        parse_json_strict(data)


def test_colons_and_quotes_inside_strings_are_not_members() -> None:
    data = b'{"a:b":"c\\":d","e":["f:",{"g":"\\\\:"}],"h\\"":":"}'
    assert parse_json_strict(data) == json.loads(data)


@pytest.mark.parametrize("depth", [65, 200, 1024, 1025, 5000])
def test_nesting_past_the_limit_is_refused_at_every_depth(depth: int) -> None:
    with pytest.raises(CanonicalError, match="nested deeper than 64 levels"):
        parse_json_strict(b"[" * depth + b"]" * depth)


_tricky_text = st.text(alphabet='[]{}"\\/ ab\u00e9\n', max_size=12)


@st.composite
def _nested(draw: st.DrawFn) -> tuple[Any, int]:
    """A JSON value nested exactly ``depth`` levels, strings full of brackets and escapes."""
    depth = draw(st.integers(min_value=0, max_value=80))
    value: Any = draw(_tricky_text)
    for _ in range(depth):
        siblings = draw(st.lists(_tricky_text, max_size=2))
        if draw(st.booleans()):
            value = [*siblings, value]
        else:
            value = {**{f"{s}:{i}": s for i, s in enumerate(siblings)}, draw(_tricky_text): value}
    return value, depth


@settings(max_examples=300, deadline=None)
@given(_nested(), st.booleans())
def test_depth_check_counts_structure_not_string_content(
    nested: tuple[Any, int], ascii_only: bool
) -> None:
    value, depth = nested
    text = json.dumps(value, ensure_ascii=ascii_only)
    if depth > 64:
        with pytest.raises(CanonicalError, match="nested deeper than 64 levels"):
            parse_json_strict(text.encode())
    else:
        assert parse_json_strict(text.encode()) == value
