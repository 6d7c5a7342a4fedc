"""The fast path of event validation (app.records.order_event._fast_event).

parse_event's models alone define what is valid. The fast path may refuse more
(the event then goes through the models), but it must never accept an event
they refuse, what it records must be exactly what they record, and it must
actually take the common valid events.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.records.order_event import SCHEMA, ValidEvent, _fast_event, parse_event, validate_event
from ledger.canonical import canonical_bytes
from tests.app.test_fast_validation import TRICKY, VALUES, _mutate, _paths
from tests.support.orders import BUYER_RUC, order

pytestmark = pytest.mark.unit

HEAD = {
    "buyer_ruc": BUYER_RUC,
    "order_number": "OCAM-2026-1556-7-0",
    "prev": "0x" + "ab" * 32,
    "occurred_at": "2026-02-01T10:00:00-05:00",
}
DOCS = [{"title": "Guía de remisión", "url": "https://x.gob.pe/guia 1.pdf", "sha256": "f" * 64}]
VALID = {
    "accepted": {**HEAD, "type": "accepted"},
    "accepted-note": {**HEAD, "type": "accepted", "note": "conforme"},
    "delivered": {**HEAD, "type": "delivered", "note": "entregado", "documents": DOCS},
    "status": {**HEAD, "type": "status", "status": "En proceso", "documents": DOCS},
    "paid": {**HEAD, "type": "paid", "payment": {"amount": "18.00", "currency": "PEN"}},
    "paid-ref": {
        **HEAD,
        "type": "paid",
        "payment": {"amount": "1", "currency": "USD", "reference": "SIAF 1"},
    },
    "invoiced": {
        **HEAD,
        "type": "invoiced",
        "invoice": {
            "number": "F001-1",
            "issued_at": "2026-02-02T10:00:00-05:00",
            "amount": "5000.00",
            "currency": "PEN",
        },
    },
    "cancelled": {**HEAD, "type": "cancelled", "rationale": "desistimiento"},
    "amended": {**HEAD, "type": "amended", "purchase_order": order(1), "rationale": "error"},
    "document": {
        **HEAD,
        "type": "document",
        "document": {
            "title": "Contrato",
            "document_type": "contractSigned",
            "media_type": "application/pdf",
            "size": 1024,
            "sha256": "0" * 64,
            "url": "https://x.gob.pe/c.pdf",
        },
    },
}


def model_record(data: Any) -> dict[str, Any] | None:
    """What parse_event records for ``data``, or None if it refuses it."""
    try:
        return parse_event(data).record()
    except ValidationError:
        return None


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_events_take_the_fast_path_and_record_what_the_models_record(name: str) -> None:
    data = VALID[name]
    sent = copy.deepcopy(data)
    fast = _fast_event(data)
    assert fast is not None
    expected = model_record(data)
    assert expected is not None
    assert fast.record() == expected
    assert canonical_bytes(fast.record()) == canonical_bytes(expected)
    assert SCHEMA.columns(fast.record()) == SCHEMA.columns(expected)
    assert validate_event(data) == fast
    assert data == sent  # the caller's dict is not changed


@pytest.mark.parametrize(
    "data",
    [
        # test_order_history.py's invalid events, as the API and bulk pass them on.
        {**HEAD, "type": "paid", "payment": {"amount": 5, "currency": "PEN", "x": 1}},
        {**HEAD, "type": "refunded"},
        {"type": "accepted"},
        {**HEAD, "type": "paid", "payment": {"amount": "0.00", "currency": "PEN"}},
        {**HEAD, "type": "accepted", "prev": "0x" + "AB" * 32},
        {**HEAD, "type": "accepted", "buyer_ruc": "20600027427"},
        {
            **HEAD,
            "type": "amended",
            "purchase_order": {**order(1), "total": "1.00"},
            "rationale": "x",
        },
        {**HEAD, "type": ["accepted"]},
        "accepted",
    ],
)
def test_invalid_events_fall_to_the_models_which_word_the_errors(data: Any) -> None:
    assert _fast_event(data) is None
    with pytest.raises(ValidationError) as fast_path:
        validate_event(data)
    with pytest.raises(ValidationError) as models:
        parse_event(data)
    assert fast_path.value.errors(include_context=False) == models.value.errors(
        include_context=False
    )


def test_explicit_nulls_go_to_the_models_which_leave_them_out() -> None:
    data = {**HEAD, "type": "delivered", "note": None, "documents": None}
    assert _fast_event(data) is None
    assert validate_event(data).event == {"type": "delivered", "occurred_at": HEAD["occurred_at"]}


BASES = list(VALID.values())
EVENT_VALUES = st.one_of(VALUES, st.sampled_from([*TRICKY, "0x" + "ab" * 32, "0x" + "0" * 63]))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_events_the_fast_path_accepts_the_models_accept_alike(data: Any) -> None:
    base = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(base) if p != ("type",)] or _paths(base)
        path = data.draw(st.sampled_from(paths))
        how = data.draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        _mutate(base, path, how, data.draw(EVENT_VALUES))
    fast = _fast_event(copy.deepcopy(base))
    if fast is not None:
        expected = model_record(base)
        assert expected is not None, base
        assert canonical_bytes(fast.record()) == canonical_bytes(expected)
        assert fast == ValidEvent(expected)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_single_text_changes_the_fast_path_accepts_are_recorded_as_the_models_record(
    data: Any,
) -> None:
    """One string member set to an edge value, or one member left out: unlike the
    test above, about a fifth of these are taken by the fast path, so its acceptances are
    what gets compared here."""
    base = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    paths = [p for p in _paths(base) if p != ("type",) and isinstance(_at(base, p), str | int)]
    path = data.draw(st.sampled_from(paths))
    if data.draw(st.booleans()):
        _mutate(base, path, "set", data.draw(st.sampled_from(TRICKY)))
    else:
        _mutate(base, path, "delete", None)
    fast = _fast_event(copy.deepcopy(base))
    expected = model_record(base)
    if fast is not None:
        assert expected is not None, base
        assert canonical_bytes(fast.record()) == canonical_bytes(expected)


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value
