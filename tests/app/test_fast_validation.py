"""The fast path of order validation (app.records.purchase_order._fast_order).

PurchaseOrder alone defines what is valid. The fast path may refuse more than
it (the order then goes through the model), but it must never accept an
order the model refuses, and what it records must be exactly what the model
records. It must also actually take the common valid orders, or bulk ingest
silently loses its speed. (Every invalid order of test_purchase_order.py is
also checked to be refused by it.)
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.records.purchase_order import (
    _PLAIN_URL,
    _WHITESPACE,
    PURCHASE_ORDER_EXAMPLE,
    PurchaseOrder,
    ValidOrder,
    _fast_order,
    validate_order,
)
from app.records.vocabulary import url_field
from tests.support.orders import MINIMAL_ORDER, order

pytestmark = pytest.mark.unit

MINIMAL = MINIMAL_ORDER


def _with_everything() -> dict[str, Any]:
    data = copy.deepcopy(PURCHASE_ORDER_EXAMPLE)
    data["documents"].append(
        {
            "title": "Anexo con espacios",
            "url": "https://apps1.perucompras.gob.pe/archivos/orden de compra 1.pdf",
            "sha256": "ab" * 32,
        }
    )
    data["currency"] = "USD"
    data["status"] = "EN PROCESO DE ENTREGA"
    return data


VALID_ORDERS = [
    pytest.param(copy.deepcopy(PURCHASE_ORDER_EXAMPLE), id="design-example"),
    pytest.param(MINIMAL, id="minimal"),
    pytest.param(order(7), id="bench-and-tests-order"),
    pytest.param({**MINIMAL, "documents": []}, id="empty-documents"),
    pytest.param(_with_everything(), id="every-member"),
]


def model_data(data: Any) -> dict[str, Any] | None:
    """What PurchaseOrder records for ``data``, or None if it refuses it."""
    try:
        return ValidOrder.of(PurchaseOrder.model_validate(data)).data
    except ValidationError:
        return None


def test_the_whitespace_the_patterns_exclude_is_all_that_strip_removes() -> None:
    # _WHITESPACE is built from code points up to U+3000 only.
    assert _WHITESPACE == "".join(c for c in map(chr, range(0x110000)) if c.isspace())


@pytest.mark.parametrize("data", VALID_ORDERS)
def test_valid_orders_take_the_fast_path_and_record_what_the_model_records(
    data: dict[str, Any],
) -> None:
    sent = copy.deepcopy(data)
    fast = _fast_order(data)
    assert fast is not None
    assert fast == model_data(data)
    assert validate_order(data) == ValidOrder(fast)
    assert data == sent  # the caller's dict is not changed (currency written out)


def test_explicit_nulls_go_to_the_model_which_leaves_them_out() -> None:
    data = {**MINIMAL, "status": None, "documents": None}
    assert _fast_order(data) is None
    assert validate_order(data).data == {**MINIMAL, "currency": "PEN"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("buyer.name", "MUNICIPALIDAD\u2028DEL CUSCO"),  # a line separator inside: not control
        ("buyer.name", "CUSCO\u200b"),  # zero-width space: not whitespace to str.strip
        ("order_number", "7"),
        ("subtotal", "0"),
    ],
)
def test_edge_values_both_accept_are_recorded_alike(path: str, value: str) -> None:
    data = copy.deepcopy(MINIMAL)
    parent, _, key = path.rpartition(".")
    (data[parent] if parent else data)[key] = value
    if path == "subtotal":
        data.update(tax="0", total="0")
    expected = model_data(data)
    assert expected is not None
    assert _fast_order(data) == expected


# Values chosen to sit on the rules' edges, for the generated orders below.
TRICKY = [
    "", " ", "a", "A", "x ", " x", "a\tb", "a\nb", "a\n", "a\x00b", "a\x1fb", "a\x7f",
    "a\x85b", "a\x9f", "\xa0a", "a\u2028", "a\u3000", "a\u200b", "\ud800", "a\udfff",
    "é", "ÚTILES", "\u0663", "\uff11", "1", "0", "0.00", "00", "007", "1.234", "1.",
    ".5", "10.5", "1e3", "-1", "+1", "1 ", "PEN", "pen", "XTS", "ABC", "USD",
    "20600027426", "20600027427", "10412742694", "30600027426", "2060002742",
    "206000274260", "20177217043", "2026-01-31T09:57:50-05:00", "2026-01-31T09:57:50",
    "2026-01-31", "2026-02-30T00:00:00Z", "2026-01-31T09:57:50Z ",
    "https://x.gob.pe/a b.pdf", "http://:0/", "http://x:0/", "ftp://x/y", "https://",
    "http://x:99999/", "http://[::1/", "0" * 64, "f" * 64, "F" * 64, "ACEPTADA",
    "Aceptada", "x" * 65, "x" * 101, "x" * 501, "x" * 2001, "OC-1", "-OC", "OC 1",
    "5796.99", "4912.70", "884.29", "150", "24.90", "HTTPS://x.gob.pe/a",
    "https://X-1.gob.pe", "https://x.gob.pe?q=1", "https://x.gob.pe#f", "https://u@x.gob.pe/",
    "https://x.gob.pe:443/a", "https://x.gob.pe:/a", "https://x.gob.pe\\a", "https://.",
    "https:///a", "http://x.gob.pe/ a", "https://[::1]/", "https://x.gob.pe/\u00e9",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.sampled_from(TRICKY), max_size=2),
    st.dictionaries(st.sampled_from(["ruc", "name", "x", "id"]), st.sampled_from(TRICKY)),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(data: Any, path: tuple[Any, ...], how: str, value: Any) -> None:
    *parents, last = path
    target = data
    for part in parents:
        target = target[part]
    if how == "delete":
        del target[last]
    elif how == "add" and isinstance(target, dict):
        target[f"{last}_x" if isinstance(last, str) else "extra"] = value
    else:
        target[last] = value


BASES = [copy.deepcopy(PURCHASE_ORDER_EXAMPLE), MINIMAL, _with_everything(), order(3)]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_orders_the_fast_path_accepts_the_model_accepts_alike(data: Any) -> None:
    base = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(base)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        how = data.draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        _mutate(base, path, how, data.draw(VALUES))
    fast = _fast_order(copy.deepcopy(base))
    if fast is not None:
        assert fast == model_data(base)


_URL_PIECES = st.sampled_from(
    ["http", "https", "HTTPS", "ftp", "://", ":", "/", "//", "?", "#", "@", ".", "-", "[", "]",
     "::1", "x", "gob", "pe", "0", "443", "99999", " ", "%20", "\\", "\u00e9", "a b"]
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(_URL_PIECES, max_size=10).map("".join))
def test_urls_the_fast_path_takes_unparsed_are_urls_the_model_accepts(text: str) -> None:
    url = f"https://{text}" if text.startswith(("x", "g")) else text
    if _PLAIN_URL.fullmatch(url) and url.strip() == url and url:
        assert url_field(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://apps1.perucompras.gob.pe//OrdenCompra/obtenerPdfOrdenPublico?ID_OrdenCompra=1",
        "http://x.gob.pe",
        "https://x.gob.pe/orden de compra 1.pdf",
    ],
)
def test_common_urls_take_the_shortcut(url: str) -> None:
    # Without it every document costs a urlsplit: the shortcut must keep working.
    assert _PLAIN_URL.fullmatch(url)
    assert url_field(url) == url
