"""Bulk import (app/opendata/importing.py): Perú Compras' report and JSON lines, into the ledger.

The report fixtures hold the two real rows of DESIGN §4 (tests/vectors/import/):
``ReportePCBienes202602.csv`` is cp1252 with Windows line endings, as Perú
Compras publishes it; ``-utf8.csv`` is the same rows in UTF-8; ``-bad.csv``
mixes broken rows with good ones; ``orders.jsonl`` does the same for JSON lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.db import SessionFactory, make_engine, make_session_factory
from app.models import Record
from app.opendata import importing
from app.opendata.importing import (
    PERUCOMPRAS_COLUMNS,
    ImportFormatError,
    ImportReport,
    RowProblem,
    SourceRow,
    detect_csv_encoding,
    detect_format,
    import_rows,
    read_jsonl,
    read_perucompras_csv,
    read_rows,
)
from app.records.purchase_order import PurchaseOrder
from app.services.orders import get_order
from ledger import record_hash
from ledger.canonical import canonical_bytes
from tests.support.orders import MINIMAL_ORDER

pytestmark = [pytest.mark.db]

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "import"
REPORT = VECTORS / "ReportePCBienes202602.csv"
REPORT_UTF8 = VECTORS / "ReportePCBienes202602-utf8.csv"
REPORT_BAD = VECTORS / "ReportePCBienes202602-bad.csv"
# The same two orders a month later: the first delivered, the second with other amounts.
LATER_REPORT = VECTORS / "ReportePCBienes202603.csv"
ORDERS_JSONL = VECTORS / "orders.jsonl"
EVENTS_JSONL = VECTORS / "events.jsonl"

HEADER = ";".join(PERUCOMPRAS_COLUMNS)
# The two real rows of DESIGN §4, verbatim.
ROW_1 = (
    "2026-02-01 08:00:14;10412742694;FACUNDO SALAS TELLY CESAR;20600027426;"
    "MINISTERIO PÚBLICO-GERENCIA ADMINISTRATIVA DE SAN MARTÍN;Compra ordinaria;"
    "OCAM-2026-1556-7-0;https://apps1.perucompras.gob.pe//OrdenCompra/obtenerPdfOrdenPublico"
    "?ID_OrdenCompra=3447646&ImprimirCompleto=1;ACEPTADA;;2026-01-31 09:57:50;"
    "2026-01-31 09:57:50;4912.70;884.29;5796.99;https://saeusceprod01.blob.core.windows.net/"
    "contentidad/uploads/OCAM-2026-1556-7_30-01-26 21-27-40_FISICA.pdf;;;"
    "ÚTILES DE ESCRITORIO, PAPELES Y CARTONES"
)
ROW_2 = (
    "2026-02-01 08:00:14;20611694629;INTISSUR PUNO E.I.R.L.;20177217043;"
    "MUNICIPALIDAD PROVINCIAL DEL CUSCO;Gran Compra;OCAM-2026-300684-2-0;"
    "https://apps1.perucompras.gob.pe//OrdenCompra/obtenerPdfOrdenPublico"
    "?ID_OrdenCompra=3448051&ImprimirCompleto=1;ACEPTADA;;2026-01-30 19:19:03;"
    "2026-01-30 19:19:03;174064.00;31331.52;205395.52;https://saeusceprod01.blob.core.windows.net/"
    "contentidad/uploads/OCAM-2026-300684-2_30-01-26 18-45-47_FISICA.pdf;;;"
    "CEREALES, ACEITE, AZUCARES Y MENESTRAS"
)

ORDER_1: dict[str, Any] = {
    "order_number": "OCAM-2026-1556-7-0",
    "buyer": {
        "ruc": "20600027426",
        "name": "MINISTERIO PÚBLICO-GERENCIA ADMINISTRATIVA DE SAN MARTÍN",
    },
    "supplier": {"ruc": "10412742694", "name": "FACUNDO SALAS TELLY CESAR"},
    "issued_at": "2026-01-31T09:57:50-05:00",
    "currency": "PEN",
    "subtotal": "4912.70",
    "tax": "884.29",
    "total": "5796.99",
    "framework_agreement": "ÚTILES DE ESCRITORIO, PAPELES Y CARTONES",
    "procurement_method": "Compra ordinaria",
    "status": "ACEPTADA",
    "documents": [
        {
            "title": "Orden electrónica",
            "url": "https://apps1.perucompras.gob.pe//OrdenCompra/obtenerPdfOrdenPublico"
            "?ID_OrdenCompra=3447646&ImprimirCompleto=1",
        },
        {
            "title": "Orden digitalizada",
            "url": "https://saeusceprod01.blob.core.windows.net/contentidad/uploads/"
            "OCAM-2026-1556-7_30-01-26 21-27-40_FISICA.pdf",
        },
    ],
}
# The same real order as MINIMAL_ORDER, with every member its report row carries.
ORDER_2: dict[str, Any] = {
    **MINIMAL_ORDER,
    "currency": "PEN",
    "framework_agreement": "CEREALES, ACEITE, AZUCARES Y MENESTRAS",
    "procurement_method": "Gran Compra",
    "status": "ACEPTADA",
    "documents": [
        {
            "title": "Orden electrónica",
            "url": "https://apps1.perucompras.gob.pe//OrdenCompra/obtenerPdfOrdenPublico"
            "?ID_OrdenCompra=3448051&ImprimirCompleto=1",
        },
        {
            "title": "Orden digitalizada",
            "url": "https://saeusceprod01.blob.core.windows.net/contentidad/uploads/"
            "OCAM-2026-300684-2_30-01-26 18-45-47_FISICA.pdf",
        },
    ],
}


def write_report(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes("\r\n".join([*lines, ""]).encode(encoding))
    return path


def cells(row: str) -> list[str]:
    return row.split(";")


@pytest.fixture
def session_factory(database_url: str) -> Iterator[SessionFactory]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def stored(session_factory: SessionFactory) -> dict[str, Record]:
    """Every purchase-order record, by order number."""
    with session_factory() as session:
        orders = select(Record).where(Record.schema == "ancla/purchase-order/1")
        return {record.order_number: record for record in session.scalars(orders)}


def record_count(session_factory: SessionFactory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Record)) or 0


def import_file(
    session_factory: SessionFactory, path: Path, **options: Any
) -> tuple[ImportReport, list[int]]:
    calls: list[int] = []
    rows = read_jsonl(path) if path.suffix == ".jsonl" else read_perucompras_csv(path)
    if path.suffix == ".jsonl" and detect_format(path) == "events-jsonl":
        options.setdefault("events", True)
    report = import_rows(
        session_factory=session_factory,
        rows=rows,
        source=f"import:{path.name}",
        progress=calls.append,
        **options,
    )
    return report, calls


# -- Perú Compras' report: mapping and encodings -------------------------------------------


def test_fixtures_hold_the_real_rows() -> None:
    assert REPORT.read_bytes() == f"{HEADER}\r\n{ROW_1}\r\n{ROW_2}\r\n".encode("cp1252")
    assert REPORT_UTF8.read_bytes() == f"{HEADER}\n{ROW_1}\n{ROW_2}\n".encode()


def test_real_rows_map_to_the_purchase_order_json() -> None:
    rows = list(read_perucompras_csv(REPORT))
    assert rows == [SourceRow(2, ORDER_1), SourceRow(3, ORDER_2)]
    # As the model reads them: nothing added but what the model fills in anyway.
    assert PurchaseOrder.model_validate(ORDER_1).to_record()["purchase_order"] == ORDER_1


def test_encoding_is_detected_for_the_latin1_report_and_its_utf8_copy() -> None:
    assert detect_csv_encoding(REPORT) == "cp1252"
    assert detect_csv_encoding(REPORT_UTF8) == "utf-8"
    assert list(read_perucompras_csv(REPORT_UTF8)) == list(read_perucompras_csv(REPORT))


@pytest.mark.parametrize(
    ("content", "encoding", "buyer_name"),
    [
        # A BOM declares UTF-8 and is no part of the first column's name.
        (b"\xef\xbb\xbf" + f"{HEADER}\n{ROW_1}\n".encode(), "utf-8", None),
        # ASCII is UTF-8.
        (
            f"{HEADER}\n{ROW_2}\n".encode(),
            "utf-8",
            "MUNICIPALIDAD PROVINCIAL DEL CUSCO",
        ),
        # 0x92 is a right single quote in cp1252 (a C1 control in ISO-8859-1).
        (
            f"{HEADER}\n{ROW_2.replace('DEL CUSCO', 'DEL CUSCO’S')}\n".encode("cp1252"),
            "cp1252",
            "MUNICIPALIDAD PROVINCIAL DEL CUSCO’S",
        ),
        # A single Latin-1 byte on the last line, after a megabyte of ASCII rows.
        (
            (f"{HEADER.replace('Ó', 'O').replace('Ú', 'U')}\n".encode() + b"\n" * 1_100_000)
            + f"{ROW_2.replace('CUSCO', 'CUSCÓ')}\n".encode("latin-1"),
            "cp1252",
            "MUNICIPALIDAD PROVINCIAL DEL CUSCÓ",
        ),
    ],
    ids=["utf8-bom", "ascii", "cp1252-quote", "latin1-deep-in-file"],
)
def test_encoding_detection(
    tmp_path: Path, content: bytes, encoding: str, buyer_name: str | None
) -> None:
    path = tmp_path / "ReportePCBienes202603.csv"
    path.write_bytes(content)
    assert detect_csv_encoding(path) == encoding
    (row,) = read_perucompras_csv(path)
    assert row.error is None
    assert row.order is not None
    if buyer_name is None:
        assert row.order == ORDER_1
    else:
        assert row.order["buyer"]["name"] == buyer_name


def test_bytes_undefined_in_cp1252_fall_back_to_latin1_and_the_model_refuses_them(
    tmp_path: Path,
) -> None:
    # 0x81 is undefined in cp1252; in ISO-8859-1 it is the C1 control U+0081.
    content = f"{HEADER}\n{ROW_2}\n".encode("cp1252").replace(b"INTISSUR", b"INTIS\x81UR")
    path = tmp_path / "r.csv"
    path.write_bytes(content)
    assert detect_csv_encoding(path) == "latin-1"
    report = import_rows(session_factory=_no_database, rows=read_perucompras_csv(path), source="t")
    assert report.invalid == 1
    (problem,) = report.problems
    assert problem.line == 2
    assert "supplier.name: must not contain control characters (found U+0081" in problem.reason


def _no_database() -> Any:
    raise AssertionError("nothing valid should reach the database")


def test_encoding_override() -> None:
    # The same bytes, read as asked.
    assert list(read_perucompras_csv(REPORT, encoding="latin-1")) == list(
        read_perucompras_csv(REPORT)
    )
    # UTF-8 bytes read as Latin-1 give mojibake: the override is obeyed, not second-guessed
    # (the model then refuses the C1 control that "Ú" turns into).
    (first, _) = read_perucompras_csv(REPORT_UTF8, encoding="latin-1")
    assert first.order is not None
    assert first.order["buyer"]["name"].startswith("MINISTERIO PÃ\x9aBLICO")
    # ... and as cp1252 they hold a byte cp1252 leaves undefined ("Í" is C3 8D).
    (first, _) = read_perucompras_csv(REPORT_UTF8, encoding="cp1252")
    assert first.error is not None
    assert first.error.startswith("not valid cp1252: byte 0x8D")
    # cp1252 bytes read as UTF-8: the damaged header is still recognised; the row
    # with accents is an error with its line, the ASCII row is read.
    bad, good = read_perucompras_csv(REPORT, encoding="utf-8")
    assert bad == SourceRow(
        2,
        None,
        "not valid utf-8: byte 0xDA at byte 83 of the line (is the file in another encoding?)",
    )
    assert good == SourceRow(3, ORDER_2)


@pytest.mark.parametrize(
    ("encoding", "message"),
    [("klingon", "unknown encoding 'klingon'"), ("utf-16", "is not ASCII-compatible")],
)
def test_unusable_encodings_are_refused(encoding: str, message: str) -> None:
    with pytest.raises(ImportFormatError, match=message):
        next(read_perucompras_csv(REPORT, encoding=encoding))


def _mojibake(name: str) -> str:
    return name.encode("utf-8").decode("cp1252")


@pytest.mark.parametrize(
    "rename",
    [
        str.lower,
        lambda name: name.replace("Ó", "O").replace("Ú", "U"),
        lambda name: name.title(),
        _mojibake,
        lambda name: name.replace("Ó", "\ufffd").replace("Ú", "\ufffd"),
        lambda name: name.replace("Ó", "?").replace("Ú", "?"),
        lambda name: f"  {name.replace('_', ' ')} ",
    ],
    ids=["lowercase", "no-accents", "title-case", "mojibake", "replacement", "ascii-?", "spaces"],
)
def test_header_names_are_matched_robustly(tmp_path: Path, rename: Any) -> None:
    header = ";".join(rename(name) for name in PERUCOMPRAS_COLUMNS)
    path = write_report(tmp_path / "r.csv", [header, ROW_1])
    assert list(read_perucompras_csv(path)) == [SourceRow(2, ORDER_1)]


def test_columns_may_come_in_any_order_and_unknown_columns_are_ignored(tmp_path: Path) -> None:
    order = list(reversed(range(len(PERUCOMPRAS_COLUMNS))))
    header = ";".join(["NUEVA_COLUMNA"] + [PERUCOMPRAS_COLUMNS[i] for i in order])
    row = ";".join(["lo que sea"] + [cells(ROW_1)[i] for i in order])
    path = write_report(tmp_path / "r.csv", [header, row])
    assert list(read_perucompras_csv(path)) == [SourceRow(2, ORDER_1)]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "r.csv is empty: expected a header row"),
        (["", "  "], "r.csv is empty"),
        ([ROW_1], "line 1 is not the header of a Perú Compras report"),
        (
            [HEADER.replace(";ACUERDO_MARCO", ""), ROW_1],
            r"missing ACUERDO_MARCO; found: FECHA_PROCESO; RUC_PROVEEDOR",
        ),
        ([HEADER.replace(";", ","), ROW_1], "separated by ';'"),
        ([HEADER + ";TOTAL", ROW_1], "column TOTAL appears twice"),
    ],
    ids=["empty", "blank", "no-header", "missing-column", "commas", "twice"],
)
def test_a_file_without_the_report_header_is_refused(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = write_report(tmp_path / "r.csv", lines)
    with pytest.raises(ImportFormatError, match=message):
        list(read_perucompras_csv(path))


def test_cells_are_stripped_and_empty_optional_cells_are_left_out(tmp_path: Path) -> None:
    row = cells(ROW_2)
    row[2] = "  INTISSUR PUNO E.I.R.L.\xa0"  # NBSP: padding from spreadsheets
    row[6] = " OCAM-2026-300684-2-0 "
    row[12:15] = [" 174064.00", "31331.52 ", "\t205395.52"]
    row[5] = row[8] = row[15] = row[18] = "  "
    row[7] = ""
    path = write_report(tmp_path / "r.csv", [HEADER, ";".join(row)])
    expected = {
        key: value
        for key, value in ORDER_2.items()
        if key not in ("procurement_method", "status", "documents", "framework_agreement")
    }
    assert list(read_perucompras_csv(path)) == [SourceRow(2, expected)]


def test_amounts_are_kept_as_written(tmp_path: Path) -> None:
    # Not rewritten to two decimals: the hash is over what the report says.
    row = cells(ROW_1)
    row[12:15] = ["4912.7", "884.29", "5796.99"]
    path = write_report(tmp_path / "r.csv", [HEADER, ";".join(row)])
    (source_row,) = read_perucompras_csv(path)
    assert source_row.order is not None
    assert source_row.order["subtotal"] == "4912.7"
    assert PurchaseOrder.model_validate(source_row.order).subtotal == "4912.7"


def test_quoted_cells_and_broken_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "_CSV_LINE_MAX", 2048)
    quoted = cells(ROW_2)
    quoted[2] = '"INTISSUR; PUNO E.I.R.L."'
    unbalanced = cells(ROW_1)
    unbalanced[2] = '"FACUNDO SALAS'
    path = write_report(
        tmp_path / "r.csv",
        [
            HEADER,
            ";".join(quoted),  # 2: a quoted cell may hold the separator
            ";".join(unbalanced),  # 3: opens a quote that the next line closes
            'X";Y',  # 4
            "x" * 3000,  # 5: over the line limit
            ROW_1,  # 6
        ],
    )
    rows = list(read_perucompras_csv(path))
    assert [row.line for row in rows] == [2, 3, 5, 6]
    assert rows[0].order is not None
    assert rows[0].order["supplier"]["name"] == "INTISSUR; PUNO E.I.R.L."
    assert (
        rows[1].error
        == "expected 19 cells separated by ';', found 4 (a quoted cell runs on to line 4)"
    )
    assert rows[2].error == "the line is longer than 2048 bytes"
    assert rows[3] == SourceRow(6, ORDER_1)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({10: "2026-02-30 09:57:50"}, "FECHA_FORMALIZACIÓN '2026-02-30 09:57:50' is not a real"),
        ({10: "2026-01-31T09:57:50"}, 'must be a date and time such as "2026-01-31 09:57:50"'),
        ({10: "2026-01-31 09:57"}, "must be a date and time"),
    ],
)
def test_bad_dates_are_row_errors(tmp_path: Path, change: dict[int, str], reason: str) -> None:
    row = cells(ROW_1)
    for index, value in change.items():
        row[index] = value
    path = write_report(tmp_path / "r.csv", [HEADER, ";".join(row), ROW_2])
    first, second = read_perucompras_csv(path)
    assert first.line == 2
    assert first.order is None
    assert first.error is not None
    assert reason in first.error
    assert second == SourceRow(3, ORDER_2)


def test_an_empty_date_leaves_issued_at_out_for_the_model_to_report(tmp_path: Path) -> None:
    row = cells(ROW_1)
    row[10] = " "
    path = write_report(tmp_path / "r.csv", [HEADER, ";".join(row)])
    report = import_rows(session_factory=_no_database, rows=read_perucompras_csv(path), source="t")
    assert report.problems == [RowProblem(2, "invalid", "issued_at: Field required")]


def test_a_cell_over_the_csv_field_limit_is_a_row_error(tmp_path: Path) -> None:
    row = cells(ROW_1)
    row[2] = "x" * 200_000  # over the csv module's 131,072-character field limit
    path = write_report(tmp_path / "r.csv", [HEADER, ";".join(row), ROW_2])
    rows = list(read_perucompras_csv(path))
    assert rows == [
        SourceRow(2, None, "unreadable CSV: field larger than field limit (131072)"),
        SourceRow(3, ORDER_2),
    ]


def test_readers_stream(tmp_path: Path) -> None:
    # Nothing is read before the first row is asked for: a generator, not a list.
    path = tmp_path / "does-not-exist-yet.csv"
    rows = read_perucompras_csv(path)
    lines = read_jsonl(tmp_path / "neither.jsonl")
    write_report(path, [HEADER, ROW_1, ROW_2])
    assert next(rows) == SourceRow(2, ORDER_1)
    with pytest.raises(FileNotFoundError):
        next(lines)


# -- recording ------------------------------------------------------------------------------


def test_real_report_is_recorded_as_the_model_hashes_it(session_factory: SessionFactory) -> None:
    report, progress = import_file(session_factory, REPORT)
    assert report == ImportReport(created=2)
    assert progress == [2]
    records = stored(session_factory)
    assert set(records) == {"OCAM-2026-1556-7-0", "OCAM-2026-300684-2-0"}
    for order in (ORDER_1, ORDER_2):
        record = records[order["order_number"]]
        expected = {"schema": "ancla/purchase-order/1", "purchase_order": order}
        assert record.canonical == canonical_bytes(expected)
        assert record.hash == record_hash(expected)
        assert record.source == "import:ReportePCBienes202602.csv"
        assert record.agency_id is None


def test_bad_rows_are_reported_and_good_rows_recorded(session_factory: SessionFactory) -> None:
    report, progress = import_file(session_factory, REPORT_BAD)
    assert (report.created, report.existing, report.conflicts, report.invalid) == (3, 0, 0, 4)
    assert [(p.line, p.kind) for p in report.problems] == [
        (3, "invalid"),
        (4, "invalid"),
        (5, "invalid"),
        (6, "invalid"),
    ]
    reasons = [p.reason for p in report.problems]
    assert reasons[0] == "buyer.ruc: check digit is 5, expected 6"
    assert reasons[1] == (
        "(order): subtotal + tax must equal total: 100.00 + 18.00 = 118.00, but total is 118.01"
    )
    assert reasons[2] == "expected 19 cells separated by ';', found 18"
    assert reasons[3].startswith("FECHA_FORMALIZACIÓN must be a date and time")
    assert progress == [7]  # seven rows; the blank line 7 is not one
    assert set(stored(session_factory)) == {
        "OCAM-2026-1556-7-0",
        "OCAM-2026-300684-2-0",
        "OCAM-2026-1556-10-0",
    }
    padded = stored(session_factory)["OCAM-2026-1556-10-0"]
    assert padded.supplier_name == "INTISSUR PUNO E.I.R.L."
    assert PurchaseOrder.from_record(json.loads(padded.canonical)).documents is None


def test_reimport_records_nothing_twice(session_factory: SessionFactory) -> None:
    first, _ = import_file(session_factory, REPORT)
    hashes = {number: record.hash for number, record in stored(session_factory).items()}
    again, _ = import_file(session_factory, REPORT)
    # The UTF-8 copy is the same orders: the same hashes.
    copy, _ = import_file(session_factory, REPORT_UTF8)
    assert first.created == 2
    assert again == ImportReport(existing=2)
    assert copy == ImportReport(existing=2)
    assert record_count(session_factory) == 2
    assert {number: record.hash for number, record in stored(session_factory).items()} == hashes


def test_same_order_with_other_content_is_a_conflict_naming_what_differs(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    import_file(session_factory, REPORT)
    original = stored(session_factory)["OCAM-2026-1556-7-0"].hash
    # Another supplier name and another total (still adding up), and a new state:
    # the state is not what makes it another order, and nothing is appended for it.
    changed = cells(ROW_1)
    changed[2] = "FACUNDO SALAS TELLY CÉSAR"
    changed[8] = "ENTREGADA"
    changed[12:15] = ["4912.71", "884.29", "5797.00"]
    path = write_report(
        tmp_path / "ReportePCBienes202603.csv", [HEADER, ROW_2, ";".join(changed)], "cp1252"
    )
    report, _ = import_file(session_factory, path)
    assert (report.created, report.existing, report.conflicts, report.invalid) == (0, 1, 1, 0)
    assert report.status_events == 0
    (problem,) = report.problems
    assert problem.line == 3
    assert problem.kind == "conflict"
    assert problem.reason == (
        f"order OCAM-2026-1556-7-0 of buyer 20600027426 differs from the recorded order "
        f"(hash {original}) in: supplier.name, subtotal, total; nothing is recorded for this "
        "row (a recorded order never changes)"
    )
    assert record_count(session_factory) == 2
    assert stored(session_factory)["OCAM-2026-1556-7-0"].hash == original


def test_duplicates_within_one_file_across_chunks(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    changed = ROW_2.replace(";INTISSUR PUNO E.I.R.L.;", ";INTISSUR PUNO S.A.C.;")
    path = write_report(tmp_path / "r.csv", [HEADER, ROW_1, ROW_2, ROW_1, changed, ROW_2])
    report, progress = import_file(session_factory, path, chunk_size=2)
    assert progress == [2, 4, 5]
    assert (report.created, report.existing, report.conflicts) == (2, 2, 1)
    assert [(p.line, p.kind) for p in report.problems] == [(5, "conflict")]


# -- a later report: changes of state ----------------------------------------------------

DELIVERED_ROW = cells(LATER_REPORT.read_bytes().decode("cp1252").split("\r\n")[1])
# The status event the later report's first row is (DESIGN §2), after the order's record.
DELIVERED_EVENT: dict[str, Any] = {
    "type": "status",
    "occurred_at": "2026-02-12T16:41:05-05:00",
    "status": "ENTREGADA",
    "note": "ENTREGA CONFORME SEGÚN GUÍA DE REMISIÓN EG01-000123",
    "documents": [
        {
            "title": "Documento de estado",
            "url": "https://saeusceprod01.blob.core.windows.net/contentidad/uploads/"
            "OCAM-2026-1556-7_12-02-26 16-41-05_ENTREGA.pdf",
        }
    ],
}


def order_view(session_factory: SessionFactory, order: dict[str, Any]) -> dict[str, Any]:
    with session_factory() as session:
        return get_order(
            session=session,
            buyer_ruc=order["buyer"]["ruc"],
            order_number=order["order_number"],
            genesis=None,
        )


def test_later_report_vector() -> None:
    # The February rows with the changes SOURCES.md describes, and nothing else.
    later = LATER_REPORT.read_bytes().decode("cp1252").split("\r\n")
    assert later[0] == HEADER and later[3:] == [""]
    first, second = cells(later[1]), cells(later[2])
    assert {i: v for i, v in enumerate(first) if v != cells(ROW_1)[i]} == {
        0: "2026-03-01 08:00:09",
        8: "ENTREGADA",
        9: DELIVERED_EVENT["documents"][0]["url"],
        11: "2026-02-12 16:41:05",
        16: DELIVERED_EVENT["note"],
    }
    assert {i: v for i, v in enumerate(second) if v != cells(ROW_2)[i]} == {
        0: "2026-03-01 08:00:09",
        12: "175064.00",
        13: "31511.52",
        14: "206575.52",
    }


def test_a_later_report_appends_changes_of_state_and_reports_other_changes(
    session_factory: SessionFactory,
) -> None:
    import_file(session_factory, REPORT)
    issued = {number: record.hash for number, record in stored(session_factory).items()}

    report, _ = import_file(session_factory, LATER_REPORT)
    assert report.to_dict() == {
        "rows": 2,
        "created": 0,
        "status_events": 1,
        "existing": 0,
        "conflicts": 1,
        "not_found": 0,
        "invalid": 0,
        "problems": [
            {
                "line": 3,
                "kind": "conflict",
                "reason": "order OCAM-2026-300684-2-0 of buyer 20177217043 differs from the "
                f"recorded order (hash {issued['OCAM-2026-300684-2-0']}) in: subtotal, tax, "
                "total; nothing is recorded for this row (a recorded order never changes)",
            }
        ],
    }
    # The delivered order's history: the order as issued, then the status event.
    view = order_view(session_factory, ORDER_1)
    assert view["purchase_order"] == ORDER_1
    assert [entry["type"] for entry in view["history"]] == ["issued", "status"]
    event = view["history"][1]
    assert (event["seq"], event["prev"], event["occurred_at"]) == (
        1,
        issued["OCAM-2026-1556-7-0"],
        "2026-02-12T16:41:05-05:00",
    )
    assert view["current"]["last_status"] == "ENTREGADA"
    assert view["current"]["purchase_order"] == ORDER_1
    assert view["head"] == event["hash"]
    with session_factory() as session:
        record = session.scalars(select(Record).where(Record.hash == event["hash"])).one()
    assert json.loads(record.canonical) == {
        "schema": "ancla/order-event/1",
        "order": {"buyer_ruc": "20600027426", "order_number": "OCAM-2026-1556-7-0"},
        "prev": issued["OCAM-2026-1556-7-0"],
        "event": DELIVERED_EVENT,
    }
    assert record.source == "import:ReportePCBienes202603.csv"
    # The order with other amounts keeps its history as it was.
    other = order_view(session_factory, ORDER_2)
    assert [entry["type"] for entry in other["history"]] == ["issued"]
    assert other["current"]["last_status"] == "ACEPTADA"

    # Importing the later report again appends nothing: its state is recorded.
    again, _ = import_file(session_factory, LATER_REPORT)
    assert (again.created, again.status_events, again.existing, again.conflicts) == (0, 0, 1, 1)
    assert again.problems == report.problems
    # ... and the February report still is what was recorded first.
    first, _ = import_file(session_factory, REPORT)
    assert first == ImportReport(existing=2)
    assert record_count(session_factory) == 3
    assert order_view(session_factory, ORDER_1)["head"] == event["hash"]


def test_state_changes_within_one_file_and_chunk(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    delivered = ";".join(DELIVERED_ROW)
    # On an empty ledger: the order is recorded, then its change of state appended,
    # once, whichever chunk the rows fall in; an unchanged order beside them stays.
    path = write_report(tmp_path / "r.csv", [HEADER, ROW_1, ROW_2, delivered, delivered])
    for chunk_size, expected in ((1000, (2, 1, 1)), (1, (0, 0, 4))):
        report, _ = import_file(session_factory, path, chunk_size=chunk_size)
        assert (report.created, report.status_events, report.existing) == expected
        assert report.problems == []
    view = order_view(session_factory, ORDER_1)
    assert [entry["type"] for entry in view["history"]] == ["issued", "status"]


def test_a_report_older_than_the_recorded_state_appends_nothing(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    import_file(session_factory, REPORT)
    import_file(session_factory, LATER_REPORT)
    head = order_view(session_factory, ORDER_1)["head"]
    older = cells(ROW_1)
    older[8], older[11] = "ACEPTADA C/ENTREGA PENDIENTE", "2026-02-05 10:00:00"
    path = write_report(tmp_path / "r.csv", [HEADER, ";".join(older)])
    report, _ = import_file(session_factory, path)
    assert (report.status_events, report.conflicts) == (0, 1)
    assert report.problems[0].reason == (
        "order OCAM-2026-1556-7-0 of buyer 20600027426 is in state ENTREGADA since "
        "2026-02-12T16:41:05-05:00, later than this row's state ACEPTADA C/ENTREGA PENDIENTE "
        "of 2026-02-05T10:00:00-05:00 (a report older than one already imported?); nothing is "
        "appended"
    )
    assert order_view(session_factory, ORDER_1)["head"] == head


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({11: ""}, "but FECHA_ÚLTIMO_ESTADO is empty: a change of state needs its time"),
        ({11: "12/02/2026 16:41"}, "but FECHA_ÚLTIMO_ESTADO must be a date and time such as"),
        (
            {11: "2026-01-30 09:00:00"},
            "occurred_at 2026-01-30T09:00:00-05:00 is before the order was issued",
        ),
        (
            {9: "ftp://example.org/acta.pdf"},
            "but its status event is invalid: DOCUMENTO_ESTADO_OCAM: ",
        ),
    ],
    ids=["no-time", "bad-time", "before-issue", "bad-document"],
)
def test_a_change_of_state_that_cannot_be_an_event_is_invalid(
    session_factory: SessionFactory, tmp_path: Path, change: dict[int, str], reason: str
) -> None:
    import_file(session_factory, REPORT)
    row = list(DELIVERED_ROW)
    for index, value in change.items():
        row[index] = value
    path = write_report(tmp_path / "r.csv", [HEADER, ";".join(row), ROW_2])
    report, _ = import_file(session_factory, path)
    assert (report.status_events, report.existing, report.invalid) == (0, 1, 1)
    (problem,) = report.problems
    assert (problem.line, problem.kind) == (2, "invalid")
    assert reason in problem.reason
    assert record_count(session_factory) == 2


def test_a_cancelled_order_takes_no_change_of_state(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    import_file(session_factory, REPORT)
    order = stored(session_factory)["OCAM-2026-1556-7-0"]
    cancelled = {
        "buyer_ruc": "20600027426",
        "order_number": "OCAM-2026-1556-7-0",
        "prev": order.hash,
        "type": "cancelled",
        "occurred_at": "2026-02-03T09:00:00-05:00",
        "rationale": "Resolución de contrato",
    }
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(cancelled) + "\n")
    assert import_file(session_factory, events)[0] == ImportReport(created=1)
    report, _ = import_file(session_factory, LATER_REPORT)
    assert report.status_events == 0
    assert [(p.line, p.kind) for p in report.problems] == [(2, "conflict"), (3, "conflict")]
    assert "is cancelled: nothing may follow its cancellation" in report.problems[0].reason


# -- JSON lines of events ----------------------------------------------------------------


def test_event_lines_are_recorded_in_order_and_refused_lines_reported(
    session_factory: SessionFactory,
) -> None:
    import_file(session_factory, REPORT)
    issued = stored(session_factory)["OCAM-2026-1556-7-0"].hash
    lines = [json.loads(line) for line in EVENTS_JSONL.read_text().splitlines()]
    assert lines[0]["prev"] == issued  # the vector follows the February report's order
    assert detect_format(EVENTS_JSONL) == "events-jsonl"

    report, progress = import_file(session_factory, EVENTS_JSONL, chunk_size=2)
    assert progress == [2, 4, 5]
    assert (report.created, report.existing) == (2, 0)
    assert (report.conflicts, report.not_found, report.invalid) == (1, 1, 1)
    view = order_view(session_factory, ORDER_1)
    assert [entry["type"] for entry in view["history"]] == ["issued", "delivered", "paid"]
    assert view["history"][2]["prev"] == view["history"][1]["hash"] == lines[1]["prev"]
    assert view["current"]["paid"] == "5796.99"
    conflict, unknown, invalid = report.problems
    assert (conflict.line, conflict.kind) == (3, "conflict")
    assert conflict.reason.startswith(f"prev {issued} is not the head of order OCAM-2026-1556-7-0")
    assert f"its head is {view['head']}" in conflict.reason
    assert (unknown.line, unknown.kind) == (4, "not_found")
    assert unknown.reason == (
        "order OCAM-2026-1556-99-0 of buyer 20600027426 is not recorded: there is no "
        "purchase order to append to"
    )
    assert (invalid.line, invalid.kind) == (5, "invalid")
    assert "occurred_at: Field required" in invalid.reason
    assert "payment.amount: " in invalid.reason

    # Again: the recorded events exist; the refused lines are refused again.
    again, _ = import_file(session_factory, EVENTS_JSONL)
    assert (again.created, again.existing, again.conflicts, again.not_found) == (0, 2, 1, 1)
    assert record_count(session_factory) == 4


def test_chunks_and_progress(session_factory: SessionFactory) -> None:
    report, progress = import_file(session_factory, REPORT_BAD, chunk_size=2)
    assert progress == [2, 4, 6, 7]
    whole, _ = import_file(session_factory, REPORT_BAD, chunk_size=1000)
    # Same problems whatever the chunking (all created rows now exist).
    assert report.problems == whole.problems
    assert (whole.created, whole.existing, whole.invalid) == (0, 3, 4)
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        import_rows(session_factory=session_factory, rows=[], source="x", chunk_size=0)


def test_report_as_json(session_factory: SessionFactory) -> None:
    report, _ = import_file(session_factory, REPORT_BAD)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["rows"] == 7
    assert {k: data[k] for k in ("created", "existing", "conflicts", "invalid")} == {
        "created": 3,
        "existing": 0,
        "conflicts": 0,
        "invalid": 4,
    }
    assert data["problems"][0] == {
        "line": 3,
        "kind": "invalid",
        "reason": "buyer.ruc: check digit is 5, expected 6",
    }


def test_an_empty_source_records_nothing(session_factory: SessionFactory) -> None:
    calls: list[int] = []
    report = import_rows(
        session_factory=session_factory, rows=iter([]), source="x", progress=calls.append
    )
    assert report == ImportReport()
    assert calls == []


# -- JSON lines ---------------------------------------------------------------------------


def test_jsonl_errors_carry_their_line_numbers(session_factory: SessionFactory) -> None:
    report, _ = import_file(session_factory, ORDERS_JSONL)
    assert (report.created, report.existing, report.conflicts, report.invalid) == (2, 0, 0, 7)
    assert [(p.line, p.kind, p.reason) for p in report.problems] == [
        (3, "invalid", "duplicate key 'order_number' in JSON object"),
        (
            4,
            "invalid",
            "invalid JSON: Expecting property name enclosed in double quotes at column 40",
        ),
        (5, "invalid", "NaN is not valid JSON"),
        (8, "invalid", "each line must be one JSON object, not an array"),
        (9, "invalid", "buyer.ruc: check digit is 5, expected 6"),
        (10, "invalid", "colour: Extra inputs are not permitted"),
        (11, "invalid", "not valid UTF-8 at byte 60"),
    ]
    records = stored(session_factory)
    assert set(records) == {"OCAM-2026-1556-7-0", "OCAM-2026-300684-2-0"}
    # The JSON as sent, plus the default currency (line 7 leaves it out).
    assert json.loads(records["OCAM-2026-300684-2-0"].canonical)["purchase_order"]["currency"] == (
        "PEN"
    )


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"null", "null"),
        (b"true", "a boolean"),
        (b"12.5", "a number"),
        (b'"OCAM-2026-1556-7-0"', "a string"),
        (b"[]", "an array"),
    ],
)
def test_jsonl_lines_must_be_objects(tmp_path: Path, line: bytes, kind: str) -> None:
    path = tmp_path / "o.jsonl"
    path.write_bytes(line + b"\n")
    assert list(read_jsonl(path)) == [
        SourceRow(1, None, f"each line must be one JSON object, not {kind}")
    ]


def test_jsonl_reader_skips_blank_lines_and_a_leading_bom(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    line = json.dumps(ORDER_1, ensure_ascii=False).encode()
    path.write_bytes(b"\xef\xbb\xbf" + line + b"\r\n\r\n  \n" + line + b"\n\xef\xbb\xbf" + line)
    rows = list(read_jsonl(path))
    assert [(row.line, row.order == ORDER_1) for row in rows] == [(1, True), (4, True), (5, False)]
    # A BOM anywhere but before the first line is an error, not an encoding mark.
    assert rows[2].error == "a byte-order mark is not allowed before JSON text"


def test_jsonl_overlong_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "_JSONL_LINE_MAX", 2 * 1024 * 1024)
    line = json.dumps(ORDER_1, ensure_ascii=False).encode()
    path = tmp_path / "o.jsonl"
    path.write_bytes(line + b"\n" + b"[" * (3 * 1024 * 1024) + b"\n" + line + b"\n")
    rows = list(read_jsonl(path))
    assert rows == [
        SourceRow(1, ORDER_1),
        SourceRow(2, None, "the line is longer than 2 MiB"),
        SourceRow(3, ORDER_1),
    ]


# -- format detection -----------------------------------------------------------------------

RELEASE_PACKAGE = """{
  "uri": "https://example.gob.pe/ocds/\\"quoted\\" {not a bracket}",
  "publisher": {"name": "PERÚ COMPRAS", "records": "nested: does not count"},
  "version": "1.1",
  "releases": [{"ocid": "ocds-xxxx-1"}]
}"""


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("orders.jsonl", b"", "jsonl"),
        ("orders.NDJSON", b"", "jsonl"),
        ("ReportePCBienes202602.CSV", b"", "perucompras-csv"),
        ("package.json", RELEASE_PACKAGE.encode(), "ocds"),
        ("records.json", b'{"version": "1.1", "records": []}', "ocds"),
        ("one-line.json", b'\xef\xbb\xbf  {"releases": []}', "ocds"),
        # No telling extension: the first line decides.
        ("orders.txt", json.dumps(ORDER_1).encode() + b"\n{}\n", "jsonl"),
        ("events.txt", EVENTS_JSONL.read_bytes(), "events-jsonl"),
        ("events.ndjson", EVENTS_JSONL.read_bytes(), "events-jsonl"),
        ("events.jsonl", b'\n\n{"type": "paid", "buyer": {"prev": 1}}\n', "jsonl"),
        ("package", RELEASE_PACKAGE.encode(), "ocds"),
        ("ReportePCBienes202602", REPORT.read_bytes(), "perucompras-csv"),
        ("latest.dat", REPORT_UTF8.read_bytes(), "perucompras-csv"),
        ("one-line-package", b'{"version": "1.1", "releases": []}\n', "ocds"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert detect_format(path) == expected


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_detect_format_across_read_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Escapes, strings holding brackets and nested "records" split at every offset.
    monkeypatch.setattr(importing, "_READ_CHUNK", chunk)
    path = tmp_path / "package.json"
    path.write_text("\n" * 9 + RELEASE_PACKAGE, encoding="utf-8")
    assert detect_format(path) == "ocds"
    path.write_text('{"a": "\\\\", "b\\"c": {"releases": 1}, "d": [1, {"e": "}"}]}')
    with pytest.raises(ImportFormatError, match=r'top-level members: a, b\\"c, d\)'):
        detect_format(path)


OCDS_EXAMPLES = Path(__file__).resolve().parents[1] / "vectors" / "ocds"


def test_detect_format_of_real_ocds_packages_and_not_of_their_schemas() -> None:
    packages = sorted((OCDS_EXAMPLES / "real").rglob("*.json"))
    packages += sorted((OCDS_EXAMPLES / "fictional-sample-data").rglob("*.json"))
    assert len(packages) >= 10
    assert {detect_format(path) for path in packages} == {"ocds"}
    # A package *schema* names "releases" only below its top level.
    with pytest.raises(ImportFormatError, match="top-level members: .*properties"):
        detect_format(OCDS_EXAMPLES / "release-package-schema.json")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("orders.json", b"[1, 2]", "found a JSON array"),
        ("orders.json", b"   ", "found an empty file"),
        ("orders.json", b"nope", "found text starting with 'n'"),
        (
            "order.json",
            json.dumps(ORDER_1).encode(),
            "without releases or records is not an OCDS package"
            r" \(top-level members: buyer, currency, documents,",
        ),
        (
            "package.json",
            b'{"publisher": {"releases": []}}',
            r"top-level members: publisher\)",
        ),
        ("orders.xlsx", b"PK\x03\x04", "cannot tell the format of orders.xlsx.*'.xlsx'"),
        ("orders", b"FECHA;RUC\n", "first line is neither.*'FECHA;RUC'"),
        ("orders", b"x" * 200, "first line is neither.*: 'x{80}…'$"),
        ("cut.json", b'{"uri": "x", "version": {"a": [', r"top-level members: uri, version\)"),
    ],
)
def test_detect_format_names_what_it_saw(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        detect_format(path)


def test_row_problem_to_dict() -> None:
    assert RowProblem(3, "conflict", "x").to_dict() == {
        "line": 3,
        "kind": "conflict",
        "reason": "x",
    }


# -- OCDS packages and read_rows ---------------------------------------------------------


def test_rows_of_an_ocds_package_carry_their_json_pointer(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "package.json"
    path.write_text(json.dumps({"releases": [{"ocid": "ocds-abc123-1", "tag": ["tender"]}, "x"]}))
    rows = list(read_rows(path, "ocds"))
    assert [(row.line, row.pointer, row.order) for row in rows] == [
        (1, "/releases/0", None),
        (2, "/releases/1", None),
    ]
    assert rows[1].error == "release is a string, not an object"
    report = import_rows(session_factory=session_factory, rows=rows, source="import:package.json")
    assert [p["pointer"] for p in report.to_dict()["problems"]] == ["/releases/0", "/releases/1"]

    # A conflict is reported where its row is, too.
    recorded = SourceRow(1, ORDER_1, None, "/releases/0/contracts/0")
    import_rows(session_factory=session_factory, rows=[recorded], source="x")
    changed = SourceRow(1, {**ORDER_1, "status": "ANULADA"}, None, "/releases/3/contracts/1")
    report = import_rows(session_factory=session_factory, rows=[changed], source="x")
    assert [(p.kind, p.pointer) for p in report.problems] == [
        ("conflict", "/releases/3/contracts/1")
    ]
    # Without the report's state columns a state is not a change to append: it differs.
    assert "differs from the recorded order" in report.problems[0].reason
    assert report.problems[0].reason.endswith(
        " in: status; nothing is recorded for this row (a recorded order never changes)"
    )


def test_an_ocds_file_that_is_not_strict_json_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "package.json"
    path.write_bytes(b'{"releases": [1, }')
    with pytest.raises(ImportFormatError, match="^invalid JSON: Expecting value at line 1 col"):
        list(read_rows(path, "ocds"))
    path.write_bytes(b'{"releases": [], "releases": []}')
    with pytest.raises(ImportFormatError, match="duplicate key 'releases'"):
        list(read_rows(path, "ocds"))


def test_read_rows_reads_each_format_with_its_reader() -> None:
    assert list(read_rows(ORDERS_JSONL, "jsonl")) == list(read_jsonl(ORDERS_JSONL))
    assert list(read_rows(REPORT, "perucompras-csv", encoding="cp1252")) == list(
        read_perucompras_csv(REPORT)
    )
    assert all(row.pointer is None for row in read_rows(REPORT, "perucompras-csv"))
