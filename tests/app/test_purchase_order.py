"""The purchase order an agency POSTs (DESIGN §4): what is accepted, what is refused, and how.

Every refusal asserts the error's location (dotted, as the API reports it) and
a substring of our message, so a message that stops saying what is wrong, or
an error that moves to the wrong field, fails here.
"""

from __future__ import annotations

import copy
import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.records.purchase_order import (
    CURRENCY_CODES,
    PURCHASE_ORDER_EXAMPLE,
    PURCHASE_ORDER_SCHEMA,
    RUC_PREFIXES,
    Document,
    Item,
    Party,
    PurchaseOrder,
    _fast_order,
    check_ruc,
    ruc_check_digit,
    ruc_is_valid,
    validate_order,
)
from ledger import record_hash
from tests.support.orders import MINIMAL_ORDER

pytestmark = pytest.mark.unit

# The two real rows of Perú Compras' ReportePCBienes (DESIGN §4).
REAL_RUCS = ["20600027426", "10412742694", "20611694629", "20177217043"]
OCDS_CURRENCY_CSV = (
    Path(__file__).resolve().parents[1] / "vectors" / "ocds" / "codelist-currency.csv"
)

MINIMAL = MINIMAL_ORDER


def reference_check_digit(body: str) -> str:
    """SUNAT's rule written out plainly, independent of the module's arithmetic."""
    weights = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2]
    total = 0
    for position in range(10):
        total += int(body[position]) * weights[position]
    r = 11 - total % 11
    if r == 10:
        return "0"
    if r == 11:
        return "1"
    return str(r)


def example() -> dict[str, Any]:
    return copy.deepcopy(PURCHASE_ORDER_EXAMPLE)


def changed(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``base`` (the DESIGN example) with the member at dotted ``path`` set."""
    data = example() if base is None else copy.deepcopy(base)
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


def errors(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        PurchaseOrder.model_validate(data)
    # Every order refused here is refused by the fast path too (it may refuse
    # more, never accept more): the model words the errors.
    assert _fast_order(data) is None
    with pytest.raises(ValidationError):
        validate_order(data)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in caught.value.errors()]


def assert_only_error(data: Any, location: str, message: str) -> None:
    found = errors(data)
    assert len(found) == 1, found
    (actual_location, actual_message) = found[0]
    assert actual_location == location, found
    assert message in actual_message, found


# --- what is accepted, and what is recorded ---------------------------------------


def test_design_example_validates_and_records_exactly_what_was_sent() -> None:
    order = PurchaseOrder.model_validate(example())
    record = order.to_record()
    assert record == {"schema": "ancla/purchase-order/1", "purchase_order": example()}
    assert list(record) == ["schema", "purchase_order"]
    assert PURCHASE_ORDER_SCHEMA == "ancla/purchase-order/1"
    assert order.items is not None and order.items[0].classification is not None
    assert order.items[0].classification.id == "14111507"


def test_minimal_order_records_default_currency_and_omits_absent_fields() -> None:
    record = PurchaseOrder.model_validate(MINIMAL).to_record()
    assert record == {
        "schema": PURCHASE_ORDER_SCHEMA,
        "purchase_order": {**MINIMAL, "currency": "PEN"},
    }


def test_explicit_nulls_are_omitted_not_recorded_as_null() -> None:
    data = {
        **MINIMAL,
        "status": None,
        "items": None,
        "documents": [{"title": "Orden", "url": "https://a.gob.pe/x", "sha256": None}],
    }
    recorded = PurchaseOrder.model_validate(data).to_record()["purchase_order"]
    assert "status" not in recorded and "items" not in recorded
    assert recorded["documents"] == [{"title": "Orden", "url": "https://a.gob.pe/x"}]


def test_empty_documents_list_is_recorded_as_given() -> None:
    recorded = PurchaseOrder.model_validate({**MINIMAL, "documents": []}).to_record()
    assert recorded["purchase_order"]["documents"] == []


def test_decimal_strings_are_kept_exactly_as_sent() -> None:
    data = changed("subtotal", "4912.7")
    data["tax"] = "884.29"
    data["items"][0]["quantity"] = "150.000"
    recorded = PurchaseOrder.model_validate(data).to_record()["purchase_order"]
    assert recorded["subtotal"] == "4912.7"
    assert recorded["items"][0]["quantity"] == "150.000"
    assert recorded["items"][1]["quantity"] == "100"


@pytest.mark.parametrize(
    ("supplier", "buyer", "order_number", "issued", "amounts", "agreement", "method"),
    [
        (
            ("10412742694", "FACUNDO SALAS TELLY CESAR"),
            ("20600027426", "MINISTERIO PÚBLICO-GERENCIA ADMINISTRATIVA DE SAN MARTÍN"),
            "OCAM-2026-1556-7-0",
            "2026-01-31 09:57:50",
            ("4912.70", "884.29", "5796.99"),
            "ÚTILES DE ESCRITORIO, PAPELES Y CARTONES",
            "Compra ordinaria",
        ),
        (
            ("20611694629", "INTISSUR PUNO E.I.R.L."),
            ("20177217043", "MUNICIPALIDAD PROVINCIAL DEL CUSCO"),
            "OCAM-2026-300684-2-0",
            "2026-01-30 19:19:03",
            ("174064.00", "31331.52", "205395.52"),
            "CEREALES, ACEITE, AZUCARES Y MENESTRAS",
            "Gran Compra",
        ),
    ],
)
def test_real_rows_validate(
    supplier: tuple[str, str],
    buyer: tuple[str, str],
    order_number: str,
    issued: str,
    amounts: tuple[str, str, str],
    agreement: str,
    method: str,
) -> None:
    subtotal, tax, total = amounts
    order = PurchaseOrder.model_validate(
        {
            "order_number": order_number,
            "buyer": {"ruc": buyer[0], "name": buyer[1]},
            "supplier": {"ruc": supplier[0], "name": supplier[1]},
            "issued_at": issued.replace(" ", "T") + "-05:00",
            "subtotal": subtotal,
            "tax": tax,
            "total": total,
            "framework_agreement": agreement,
            "procurement_method": method,
            "status": "ACEPTADA",
        }
    )
    assert order.total == total


def test_real_document_url_with_spaces_is_accepted_and_kept() -> None:
    url = (
        "https://saeusceprod01.blob.core.windows.net/contentidad/uploads/"
        "OCAM-2026-1556-7_30-01-26 21-27-40_FISICA.pdf"
    )
    document = Document.model_validate({"title": "Orden digitalizada", "url": url})
    assert document.url == url


def test_json_input_is_accepted_like_python_input() -> None:
    from_json = PurchaseOrder.model_validate_json(json.dumps(PURCHASE_ORDER_EXAMPLE))
    assert from_json == PurchaseOrder.model_validate(example())


def test_record_hashes_the_same_after_a_round_trip() -> None:
    order = PurchaseOrder.model_validate(example())
    record = order.to_record()
    again = PurchaseOrder.from_record(json.loads(json.dumps(record)))
    assert again == order
    assert record_hash(again.to_record()) == record_hash(record)


def test_issued_at_is_kept_as_sent_and_offered_as_aware_datetime() -> None:
    order = PurchaseOrder.model_validate(changed("issued_at", "2026-01-31T14:57:50Z"))
    assert order.issued_at == "2026-01-31T14:57:50Z"
    assert order.issued_at_datetime.utcoffset() is not None
    peru = PurchaseOrder.model_validate(example()).issued_at_datetime
    assert peru == order.issued_at_datetime


def test_order_is_immutable_once_validated() -> None:
    order = PurchaseOrder.model_validate(example())
    with pytest.raises(ValidationError):
        order.total = "1.00"  # type: ignore[misc]


def test_openapi_example_is_the_module_example_and_validates() -> None:
    schema = PurchaseOrder.model_json_schema()
    assert schema["examples"] == [PURCHASE_ORDER_EXAMPLE]
    assert schema["additionalProperties"] is False
    PurchaseOrder.model_validate(schema["examples"][0])


# --- RUC ---------------------------------------------------------------------------


@pytest.mark.parametrize("ruc", REAL_RUCS)
def test_real_rucs_are_valid(ruc: str) -> None:
    assert ruc_is_valid(ruc)
    assert check_ruc(ruc) == ruc
    assert ruc_check_digit(ruc[:10]) == ruc[10] == reference_check_digit(ruc[:10])


def test_check_digit_remainders_ten_and_eleven_map_to_zero_and_one() -> None:
    seen: dict[int, str] = {}
    for n in range(200):
        body = f"20{n:08d}"
        weighted = sum(
            int(d) * w for d, w in zip(body, [5, 4, 3, 2, 7, 6, 5, 4, 3, 2], strict=True)
        )
        seen.setdefault(11 - weighted % 11, ruc_check_digit(body))
    assert seen[10] == "0"
    assert seen[11] == "1"


@pytest.mark.parametrize(
    ("ruc", "message"),
    [
        ("2060002742", "must be 11 digits"),
        ("206000274260", "must be 11 digits"),
        ("2060002742X", "must be 11 digits"),
        ("", "must be 11 digits"),
        ("20600027426\n", "must be 11 digits"),
        (" 20600027426", "must be 11 digits"),
        ("２０６０００２７４２６", "must be 11 digits"),  # full-width digits
        ("30600027426", "must start with 10, 15, 17 or 20, not 30"),
        ("11412742694", "must start with 10, 15, 17 or 20, not 11"),
        ("20600027425", "check digit is 5, expected 6"),
        ("10412742690", "check digit is 0, expected 4"),
    ],
)
@pytest.mark.parametrize("party", ["buyer", "supplier"])
def test_bad_ruc_is_refused_at_its_location(party: str, ruc: str, message: str) -> None:
    assert not ruc_is_valid(ruc)
    assert_only_error(changed(f"{party}.ruc", ruc), f"{party}.ruc", message)


def test_ruc_as_number_is_refused() -> None:
    assert_only_error(
        changed("buyer.ruc", 20600027426), "buyer.ruc", "must be a string of 11 digits"
    )


def test_buyer_and_supplier_must_differ() -> None:
    data = changed("supplier.ruc", "20600027426")
    assert_only_error(data, "", "buyer.ruc and supplier.ruc must differ (both are 20600027426)")


@given(
    prefix=st.sampled_from(RUC_PREFIXES),
    digits=st.text(alphabet="0123456789", min_size=8, max_size=8),
    wrong=st.integers(min_value=1, max_value=9),
)
def test_ruc_check_digit_property(prefix: str, digits: str, wrong: int) -> None:
    body = prefix + digits
    check = ruc_check_digit(body)
    assert check == reference_check_digit(body)
    assert check_ruc(body + check) == body + check
    assert Party.model_validate({"ruc": body + check, "name": "X"}).ruc == body + check
    other = str((int(check) + wrong) % 10)
    assert not ruc_is_valid(body + other)
    with pytest.raises(ValueError, match=f"check digit is {other}, expected {check}"):
        check_ruc(body + other)


# --- types: strings where strings are required -------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("subtotal", 4912.70, 'must be a decimal string such as "1250.00", not a number'),
        ("tax", 884, 'must be a decimal string such as "1250.00", not a number'),
        ("total", True, 'must be a decimal string such as "1250.00", not a boolean'),
        ("items.1.quantity", 100, 'must be a decimal string such as "10", not a number'),
        ("items.2.unit_price", 5.65, 'must be a decimal string such as "25.50", not a number'),
        ("order_number", 1556, "not a number"),
        ("issued_at", 1769871470, "not a number"),
        ("currency", False, "not a boolean"),
        ("status", 1, "not a number"),
        ("buyer.name", True, "must be a string, not a boolean"),
        ("items.0.description", ["PAPEL"], "must be a string, not an array"),
        ("items.0.unit", {"code": "UND"}, "must be a string, not an object"),
        ("items.0.classification.id", 14111507, "must be a string, not a number"),
        ("documents.0.url", 1, "not a number"),
        ("documents.0.title", True, "not a boolean"),
    ],
)
def test_non_strings_are_refused(path: str, value: Any, message: str) -> None:
    assert_only_error(changed(path, value), path, message)


def test_json_numbers_are_refused_in_json_input_too() -> None:
    text = json.dumps(PURCHASE_ORDER_EXAMPLE).replace('"4912.70"', "4912.70")
    with pytest.raises(ValidationError) as caught:
        PurchaseOrder.model_validate_json(text)
    (error,) = caught.value.errors()
    assert error["loc"] == ("subtotal",)
    assert 'must be a decimal string such as "1250.00", not a number' in error["msg"]


def test_sha256_as_number_is_refused() -> None:
    data = example()
    data["documents"][0]["sha256"] = 1
    assert_only_error(data, "documents.0.sha256", "not a number")


@pytest.mark.parametrize("path", ["currency", "buyer", "order_number"])
def test_null_for_a_required_or_defaulted_field_is_refused(path: str) -> None:
    found = errors(changed(path, None))
    assert [location for location, _ in found] == [path]


# --- unknown and missing members ------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "location"),
    [
        ("", "amount"),
        ("buyer", "buyer.amount"),
        ("items.1", "items.1.amount"),
        ("items.0.classification", "items.0.classification.amount"),
        ("documents.0", "documents.0.amount"),
    ],
)
def test_unknown_members_are_refused_at_every_level(parent: str, location: str) -> None:
    data = example()
    target: Any = data
    for part in filter(None, parent.split(".")):
        target = target[int(part)] if isinstance(target, list) else target[part]
    target["amount"] = "1.00"
    assert_only_error(data, location, "Extra inputs are not permitted")


@pytest.mark.parametrize(
    "path", ["order_number", "buyer", "supplier", "issued_at", "subtotal", "tax", "total"]
)
def test_required_members_are_required(path: str) -> None:
    data = example()
    del data[path]
    assert_only_error(data, path, "Field required")


# --- money and quantities -----------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [
        "-1.00",
        "1.234",
        "1e3",
        "1,000.00",
        " 1.00",
        "1.00 ",
        "",
        "1.",
        ".50",
        "+1.00",
        "NaN",
        "Infinity",
        "1234567890123456",
        "١٢٣",  # Arabic-Indic digits: \d would match them, Decimal would take them
        "12\n",
    ],
)
def test_malformed_amounts_are_refused(amount: str) -> None:
    assert_only_error(
        changed("tax", amount),
        "tax",
        'must be a non-negative amount with at most 15 digits and 2 decimals, such as "1250.00"',
    )


def test_unit_price_allows_six_decimals_not_seven() -> None:
    base = {**MINIMAL, "subtotal": "1.00", "tax": "0.18", "total": "1.18"}
    ok = changed("items", [{"description": "X", "quantity": "2", "unit": "U", "unit_price": "0.5"}])
    ok = {**base, "items": ok["items"]}
    ok["items"][0]["unit_price"] = "0.500000"
    assert PurchaseOrder.model_validate(ok).items is not None
    ok["items"][0]["unit_price"] = "0.5000000"
    assert_only_error(ok, "items.0.unit_price", "at most 15 digits and 6 decimals")


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("0", "must be greater than zero"),
        ("0.000000", "must be greater than zero"),
        ("-1", "must be a positive quantity"),
        ("1.0000001", "must be a positive quantity"),
        ("1234567890123", "must be a positive quantity"),
    ],
)
def test_bad_quantities_are_refused(quantity: str, message: str) -> None:
    assert_only_error(changed("items.2.quantity", quantity), "items.2.quantity", message)


def test_subtotal_plus_tax_must_equal_total() -> None:
    assert_only_error(
        changed("total", "5797.00"),
        "",
        "subtotal + tax must equal total: 4912.70 + 884.29 = 5796.99, but total is 5797.00",
    )


def test_totals_compare_as_decimals_not_strings() -> None:
    data = {**MINIMAL, "subtotal": "10", "tax": "1.8", "total": "11.80"}
    assert PurchaseOrder.model_validate(data).total == "11.80"


def test_items_must_sum_to_subtotal() -> None:
    data = changed("items.2.quantity", "59")
    assert_only_error(
        data,
        "",
        "must equal subtotal: items sum to 4918.35, but subtotal is 4912.70",
    )


def test_all_inconsistencies_are_reported_together() -> None:
    data = changed("items.2.quantity", "59")
    data["total"] = "1.00"
    data["supplier"]["ruc"] = data["buyer"]["ruc"]
    ((location, message),) = errors(data)
    assert location == ""
    assert "buyer.ruc and supplier.ruc must differ" in message
    assert "subtotal + tax must equal total" in message
    assert "items sum to 4918.35" in message


@pytest.mark.parametrize(
    ("lines", "subtotal", "accepted"),
    [
        ([("1", "0.005")], "0.01", True),  # half-up, not banker's rounding
        ([("1", "0.005")], "0.00", False),
        ([("1", "0.004999")], "0.00", True),
        ([("3", "0.333333")], "1.00", True),
        # Rounded once, after summing: 3 × 0.004 = 0.012 → 0.01 (per line it would be 0.00).
        ([("1", "0.004"), ("1", "0.004"), ("1", "0.004")], "0.01", True),
    ],
)
def test_items_sum_is_exact_then_rounded_half_up(
    lines: list[tuple[str, str]], subtotal: str, accepted: bool
) -> None:
    items = [{"description": "X", "quantity": q, "unit": "U", "unit_price": p} for q, p in lines]
    data = {**MINIMAL, "items": items, "subtotal": subtotal, "tax": "0.00", "total": subtotal}
    if accepted:
        PurchaseOrder.model_validate(data)
    else:
        assert_only_error(data, "", f"but subtotal is {subtotal}")


def test_items_sum_keeps_every_digit_of_the_largest_line() -> None:
    # 18 × 21 digits: a default 28-digit decimal context would round the product.
    item = {
        "description": "X",
        "quantity": "999999999999.999999",
        "unit": "U",
        "unit_price": "999999999999999.999999",
    }
    data = {**MINIMAL, "items": [item], "subtotal": "1.00", "tax": "0.00", "total": "1.00"}
    assert_only_error(data, "", "items sum to 999999999999999998999000000.00,")


def test_items_may_be_absent_but_not_empty() -> None:
    assert_only_error(
        changed("items", []), "items", "must hold 1 to 1000 items, not 0; leave it out"
    )


def test_too_many_items_are_refused_before_they_are_validated() -> None:
    # 1001 junk items: only the count is reported, none of the items.
    assert_only_error(changed("items", [{}] * 1001), "items", "must hold 1 to 1000 items, not 1001")


def test_too_many_documents_are_refused() -> None:
    documents = [{"title": "Anexo", "url": "https://a.gob.pe/x"}] * 51
    assert_only_error(changed("documents", documents), "documents", "must hold 0 to 50 documents")
    assert PurchaseOrder.model_validate(changed("documents", documents[:50])).documents


@pytest.mark.parametrize("path", ["items", "documents"])
def test_lists_must_be_lists(path: str) -> None:
    found = errors(changed(path, {"0": {}}))
    assert [location for location, _ in found] == [path]


# --- issue time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issued_at", "message"),
    [
        ("2026-01-31T09:57:50", "must include a UTC offset, e.g. -05:00 for Peru"),
        ("2026-01-31 09:57:50", "must include a UTC offset"),
        ("2026-01-31", "must include a UTC offset"),
        ("31/01/2026 09:57:50", "must be an ISO 8601 date and time"),
        ("2026-02-30T09:57:50-05:00", "must be an ISO 8601 date and time"),
        ("", "must be an ISO 8601 date and time"),
        ("2026-01-31T09:57:50-05:00 ", "must be an ISO 8601 date and time"),
    ],
)
def test_bad_issue_times_are_refused(issued_at: str, message: str) -> None:
    assert_only_error(changed("issued_at", issued_at), "issued_at", message)


@pytest.mark.parametrize(
    "issued_at",
    ["2026-01-31T09:57:50-05:00", "2026-01-31T14:57:50Z", "2026-01-31T14:57:50.5+00:00"],
)
def test_issue_times_with_offsets_are_accepted(issued_at: str) -> None:
    assert PurchaseOrder.model_validate(changed("issued_at", issued_at)).issued_at == issued_at


# --- currency ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "message"),
    [
        ("pen", "must be an ISO 4217 code of three capital letters"),
        ("PENN", "must be an ISO 4217 code of three capital letters"),
        ("S/", "must be an ISO 4217 code of three capital letters"),
        ("XYZ", "unknown currency code XYZ"),
        ("XXX", "unknown currency code XXX"),
        ("XTS", "unknown currency code XTS"),
    ],
)
def test_bad_currencies_are_refused(currency: str, message: str) -> None:
    assert_only_error(changed("currency", currency), "currency", message)


@pytest.mark.parametrize("currency", ["PEN", "USD", "EUR", "CLP", "BOB"])
def test_common_currencies_are_accepted(currency: str) -> None:
    assert PurchaseOrder.model_validate(changed("currency", currency)).currency == currency


def test_currency_codes_are_ocds_active_codes_minus_test_and_none() -> None:
    with OCDS_CURRENCY_CSV.open(encoding="utf-8", newline="") as handle:
        active = {row["Code"] for row in csv.DictReader(handle) if not row["Valid Until"]}
    assert active - {"XTS", "XXX"} == CURRENCY_CODES


# --- order number, status, text --------------------------------------------------------------


@pytest.mark.parametrize("number", ["OCAM-2026-1556-7-0", "OC/2026/1.a_b", "7", "A" * 64])
def test_good_order_numbers_are_accepted(number: str) -> None:
    assert PurchaseOrder.model_validate(changed("order_number", number)).order_number == number


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("", "must be 1 to 64 characters, not 0"),
        ("A" * 65, "must be 1 to 64 characters, not 65"),
        ("-OCAM-2026", "must start with a letter or digit"),
        ("/OCAM", "must start with a letter or digit"),
        ("OCAM 2026", "hold only letters, digits and . _ / -"),
        ("OCAM-2026\n", "hold only letters, digits and . _ / -"),
        ("ÓCAM-2026", "must start with a letter or digit"),
        ("OCAM#1", "hold only letters, digits and . _ / -"),
    ],
)
def test_bad_order_numbers_are_refused(number: str, message: str) -> None:
    assert_only_error(changed("order_number", number), "order_number", message)


@pytest.mark.parametrize("status", ["ACEPTADA", "EN PROCESO DE ENTREGA", "ACEPTADA C/ ENTREGA"])
def test_any_capitalised_status_is_accepted(status: str) -> None:
    assert PurchaseOrder.model_validate(changed("status", status)).status == status


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("Aceptada", 'must be in capitals, such as "ACEPTADA"'),
        ("", "must not be empty"),
        ("A" * 65, "must be at most 64 characters, not 65"),
    ],
)
def test_bad_statuses_are_refused(status: str, message: str) -> None:
    assert_only_error(changed("status", status), "status", message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("MUNICIPALIDAD\x00", "must not contain control characters (found U+0000 at position 13)"),
        ("MUNI\nCIPALIDAD", "must not contain control characters (found U+000A at position 4)"),
        ("MUNI\tCIPALIDAD", "found U+0009"),
        ("MUNI\x7fCIPALIDAD", "found U+007F"),
        ("MUNICIPALIDAD \x85", "found U+0085"),  # C1: Latin-1 decoded with the wrong codec
        ("MUNI\ud800CIPALIDAD", "must not contain lone surrogates (found U+D800 at position 4)"),
        (" MUNICIPALIDAD", "must not start or end with whitespace"),
        ("MUNICIPALIDAD ", "must not start or end with whitespace"),
        ("MUNICIPALIDAD\u00a0", "must not start or end with whitespace"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("A" * 501, "must be at most 500 characters, not 501"),
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "buyer.name",
        "supplier.name",
        "framework_agreement",
        "procurement_method",
        "documents.0.title",
    ],
)
def test_bad_names_are_refused(path: str, text: str, message: str) -> None:
    assert_only_error(changed(path, text), path, message)


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("items.1.description", 2000),
        ("buyer.name", 500),
        ("items.0.unit", 100),
        ("items.0.classification.scheme", 100),
        ("items.0.classification.id", 100),
    ],
)
def test_text_limits(path: str, limit: int) -> None:
    PurchaseOrder.model_validate(changed(path, "Ñ" * limit))
    assert_only_error(changed(path, "Ñ" * (limit + 1)), path, f"must be at most {limit} characters")


def test_text_is_never_rewritten() -> None:
    name = "Municipalidad  Distrital de Ñuñoa"  # mixed case, double space: kept
    order = PurchaseOrder.model_validate(changed("buyer.name", name))
    assert order.to_record()["purchase_order"]["buyer"]["name"] == name


def test_item_control_characters_are_refused_too() -> None:
    assert_only_error(
        changed("items.0.description", "PAPEL\r\nBOND"), "items.0.description", "found U+000D"
    )


# --- documents -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.gob.pe/x.pdf",
        "javascript:alert(1)",
        "https://",
        "https:///x.pdf",
        "a.gob.pe/x.pdf",
        "http://a.gob.pe:port/x",
        "http://a.gob.pe:0/x",
        "http://[::1/x",
    ],
)
def test_non_http_urls_are_refused(url: str) -> None:
    assert_only_error(
        changed("documents.0.url", url), "documents.0.url", "must be an http or https URL"
    )


def test_url_is_stored_as_sent() -> None:
    url = "HTTPS://Apps1.PeruCompras.gob.pe//OrdenCompra?ID=1#x"
    assert PurchaseOrder.model_validate(changed("documents.0.url", url)).documents == [
        Document(title="Orden electrónica", url=url)
    ]


@pytest.mark.parametrize(
    "digest", ["AB" * 32, "ab" * 31, "ab" * 33, "0x" + "ab" * 31, "g" * 64, ""]
)
def test_bad_digests_are_refused(digest: str) -> None:
    data = example()
    data["documents"][0]["sha256"] = digest
    assert_only_error(data, "documents.0.sha256", "64 lowercase hex digits")


def test_good_digest_is_accepted() -> None:
    data = example()
    data["documents"][0]["sha256"] = (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    order = PurchaseOrder.model_validate(data)
    assert (
        order.documents is not None and order.documents[0].sha256 == data["documents"][0]["sha256"]
    )


# --- records -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"schema": "ancla/purchase-order/2", "purchase_order": {}}, "record schema is"),
        ({"purchase_order": PURCHASE_ORDER_EXAMPLE}, "record schema is None"),
        ({"schema": PURCHASE_ORDER_SCHEMA}, "record has no purchase_order member"),
        (
            {"schema": PURCHASE_ORDER_SCHEMA, "purchase_order": {}, "prev": "0x00"},
            "record has unknown members: prev",
        ),
        (
            {"schema": PURCHASE_ORDER_SCHEMA, "purchase_order": MINIMAL},
            "record is not in the form Ancla records",
        ),
        (
            {
                "schema": PURCHASE_ORDER_SCHEMA,
                "purchase_order": {**MINIMAL, "currency": "PEN", "status": None},
            },
            "record is not in the form Ancla records",
        ),
        (["schema", PURCHASE_ORDER_SCHEMA], "a record must be a JSON object, not an array"),
    ],
)
def test_from_record_refuses_other_records(record: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PurchaseOrder.from_record(record)


def test_from_record_refuses_an_invalid_order_with_locations() -> None:
    record = PurchaseOrder.model_validate(example()).to_record()
    record["purchase_order"]["items"][2]["quantity"] = 58
    with pytest.raises(ValidationError) as caught:
        PurchaseOrder.from_record(record)
    assert [e["loc"] for e in caught.value.errors()] == [("items", 2, "quantity")]


# --- a property over generated orders ------------------------------------------------------

_amounts = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False)
_quantities = st.decimals(min_value=Decimal("0.001"), max_value=10**5, places=3)
_prices = st.decimals(min_value=0, max_value=10**5, places=4)


@given(
    lines=st.lists(st.tuples(_quantities, _prices), min_size=1, max_size=20),
    tax=_amounts,
)
def test_consistent_generated_orders_validate_and_round_trip(
    lines: list[tuple[Decimal, Decimal]], tax: Decimal
) -> None:
    subtotal = sum((q * p for q, p in lines), Decimal(0)).quantize(Decimal("0.01"), "ROUND_HALF_UP")
    items = [
        Item(description=f"Ítem {n}", quantity=f"{q:f}", unit="UND", unit_price=f"{p:f}")
        for n, (q, p) in enumerate(lines)
    ]
    data = {
        **MINIMAL,
        "subtotal": f"{subtotal:f}",
        "tax": f"{tax:f}",
        "total": f"{subtotal + tax:f}",
        "items": [item.model_dump() for item in items],
    }
    order = PurchaseOrder.model_validate(data)
    assert PurchaseOrder.from_record(order.to_record()) == order
    off_by_a_cent = {**data, "total": f"{subtotal + tax + Decimal('0.01'):f}"}
    assert_only_error(off_by_a_cent, "", "subtotal + tax must equal total")
