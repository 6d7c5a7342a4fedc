"""Bulk import of purchase orders from files (DESIGN §5, ``ancla import``).

Readers turn a file into :class:`SourceRow`\\ s -- one per order, each with the
physical line it starts on (an OCDS package: one per contract, numbered, with
its JSON pointer) -- and :func:`import_rows` validates and records
them in chunks through the same :func:`app.services.ingest.record_items` the
API uses, so an imported order is hashed exactly as if an agency had POSTed
it, and a re-import records nothing twice.

A later Perú Compras report lists the same orders with their state as it is
now: a row whose order is recorded but whose state changed appends a
``status`` event to the order's history (DESIGN §2) instead of being a
conflict (see :func:`import_rows`). A JSON-lines file of events (the shape of
``POST /v1/events/bulk`` items) is recorded the same way, event by event.

A bad row is a :class:`RowProblem` (line and reason), never the end of the
import: a monthly report has tens of thousands of rows and one malformed row
must not hold back the rest. Only a file that is not what it claims to be (a
CSV without the report's columns, an unknown format) raises
:class:`ImportFormatError`.

Memory stays flat whatever the file size: files are read line by line, each
line is bounded, and orders are recorded ``chunk_size`` at a time.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.opendata.ocds_in import orders_from_ocds
from app.records.order_event import SCHEMA as EVENT_SCHEMA
from app.records.order_event import EventBody, OrderState, apply_event, parse_event
from app.records.purchase_order import PURCHASE_ORDER_SCHEMA, SCHEMA, PurchaseOrder, order_identity
from app.records.registry import ChainRefusal, RecordSchema, ValidRecord
from app.records.vocabulary import json_kind
from app.services.chains import load_chains
from app.services.ingest import ItemResult, record_items, validation_errors
from ledger import record_hash
from ledger.canonical import parse_json_strict
from ledger.errors import CanonicalError

__all__ = [
    "PERUCOMPRAS_COLUMNS",
    "Format",
    "ImportFormatError",
    "ImportReport",
    "ReportedState",
    "RowProblem",
    "SourceRow",
    "detect_csv_encoding",
    "detect_format",
    "import_rows",
    "read_jsonl",
    "read_ocds",
    "read_perucompras_csv",
    "read_rows",
]

Format = Literal["jsonl", "events-jsonl", "perucompras-csv", "ocds"]
# What a problem row's outcome was (app.services.ingest's outcomes an import can have).
ProblemKind = Literal["invalid", "conflict", "not_found"]


class ImportFormatError(ValueError):
    """The file as a whole cannot be read as the format asked for."""


@dataclass(frozen=True)
class SourceRow:
    """One order read from a file: the JSON to validate, or why it could not be read.

    ``line`` is the physical line the row starts on (the first line is 1; in a
    CSV that is the header). A row of an OCDS package has no line of its own:
    ``line`` numbers the package's contracts (from 1) and ``pointer`` is the
    JSON pointer (RFC 6901) of the contract, or of the release or record the
    problem is in.

    ``order`` is the JSON to validate: a purchase order, or for
    ``events-jsonl`` an event. ``state`` is what a row of Perú Compras'
    report says about the order's state (:class:`ReportedState`), used only
    when the order is already recorded; it takes no part in comparisons of
    rows.
    """

    line: int
    order: dict[str, Any] | None
    error: str | None = None
    pointer: str | None = None
    state: ReportedState | None = field(default=None, compare=False)

    def problem(self, kind: ProblemKind, reason: str) -> RowProblem:
        """A problem with this row, reported where the row is."""
        return RowProblem(self.line, kind, reason, self.pointer)


@dataclass(frozen=True)
class RowProblem:
    line: int
    kind: ProblemKind
    reason: str
    pointer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        problem: dict[str, Any] = {"line": self.line, "kind": self.kind, "reason": self.reason}
        if self.pointer is not None:
            problem["pointer"] = self.pointer
        return problem


@dataclass
class ImportReport:
    """What an import did, one count per row.

    ``created``: records recorded (orders, or events of an ``events-jsonl``
    file); ``status_events``: rows of a report whose recorded order's state
    changed, each appended as a ``status`` event; ``existing``: already
    recorded (the same order, or an unchanged state); ``conflicts``: not
    recorded because the recorded order or its history says otherwise;
    ``not_found``: events of orders not recorded; ``invalid``: rows that are
    not valid.
    """

    created: int = 0
    existing: int = 0
    conflicts: int = 0
    invalid: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    status_events: int = 0
    not_found: int = 0

    @property
    def rows(self) -> int:
        """Rows read (orders or events, valid or not); blank lines are not rows."""
        return (
            self.created
            + self.status_events
            + self.existing
            + self.conflicts
            + self.not_found
            + self.invalid
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "status_events": self.status_events,
            "existing": self.existing,
            "conflicts": self.conflicts,
            "not_found": self.not_found,
            "invalid": self.invalid,
            "problems": [problem.to_dict() for problem in self.problems],
        }


# --- Reading lines ------------------------------------------------------------------

# Bounds on one physical line, so a file without newlines (or a hostile one)
# cannot make a reader hold gigabytes. A JSON order is at most 1,000 items whose
# 2,000-character descriptions take up to 12 bytes a character when written as
# \uXXXX escapes: about 24 MB in the worst honest case, so 32 MiB (the API's
# default body limit). A report row is 19 short cells (URLs up to 2,048
# characters, names up to 500): 1 MiB is generous.
_JSONL_LINE_MAX: Final = 32 * 1024 * 1024
_CSV_LINE_MAX: Final = 1024 * 1024
_READ_CHUNK: Final = 1024 * 1024
_BOM: Final = "\ufeff"
_UTF8_BOM: Final = codecs.BOM_UTF8


def _physical_lines(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` for each line, or ``None`` for a line over ``max_bytes``.

    Splitting on ``\\n`` bytes is sound for UTF-8 and the single-byte
    encodings read here: the byte 0x0A is never part of another character.
    """
    number = 0
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) <= max_bytes or line.endswith(b"\n"):
            yield number, line
            continue
        # Too long: skip to the end of this line without keeping it.
        while line and not line.endswith(b"\n"):
            line = stream.readline(_READ_CHUNK)
        yield number, None


def _too_long(max_bytes: int) -> str:
    mebibytes, rest = divmod(max_bytes, 1024 * 1024)
    limit = f"{mebibytes} MiB" if mebibytes and not rest else f"{max_bytes} bytes"
    return f"the line is longer than {limit}"


# --- JSON lines -----------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[SourceRow]:
    """One purchase order per line (the JSON an agency POSTs, DESIGN §4), UTF-8.

    Each line is parsed with :func:`ledger.canonical.parse_json_strict`, so a
    duplicate key, NaN or invalid UTF-8 is that line's error: the ledger must
    never hash one of two readings of an ambiguous line. Blank lines are skipped.
    """
    with path.open("rb") as stream:
        for number, raw in _physical_lines(stream, _JSONL_LINE_MAX):
            if raw is None:
                yield SourceRow(number, None, _too_long(_JSONL_LINE_MAX))
                continue
            if number == 1 and raw.startswith(_UTF8_BOM):
                # Windows tools write a BOM before the first line; it marks the
                # encoding and is no part of the first order.
                raw = raw[len(_UTF8_BOM) :]
            if not raw.strip():
                continue
            try:
                value = parse_json_strict(raw.rstrip(b"\r\n"))
            except CanonicalError as exc:
                # The parser counts lines within the text it was given: one line.
                yield SourceRow(number, None, str(exc).replace(" at line 1 column ", " at column "))
                continue
            if not isinstance(value, dict):
                yield SourceRow(
                    number, None, f"each line must be one JSON object, not {json_kind(value)}"
                )
                continue
            yield SourceRow(number, value)


# --- Perú Compras' monthly report (ReportePCBienesYYYYMM.csv) -------------------------

# The report's columns (DESIGN §4), in the order Perú Compras publishes them.
PERUCOMPRAS_COLUMNS: Final = (
    "FECHA_PROCESO",
    "RUC_PROVEEDOR",
    "PROVEEDOR",
    "RUC_ENTIDAD",
    "ENTIDAD",
    "TIPO_PROCEDIMIENTO",
    "ORDEN_ELECTRÓNICA",
    "ORDEN_ELECTRÓNICA_GENERADA",
    "ESTADO_ORDEN_ELECTRÓNICA",
    "DOCUMENTO_ESTADO_OCAM",
    "FECHA_FORMALIZACIÓN",
    "FECHA_ÚLTIMO_ESTADO",
    "SUB_TOTAL",
    "IGV",
    "TOTAL",
    "ORDEN_DIGITALIZADA",
    "DESCRIPCIÓN_ESTADO",
    "DESCRIPCIÓN_CESIÓN_DERECHOS",
    "ACUERDO_MARCO",
)
# The columns an order is built from; a header without one of them is not the
# report (or its format changed) and nothing is guessed. The others
# (FECHA_PROCESO, DOCUMENTO_ESTADO_OCAM, FECHA_ÚLTIMO_ESTADO, DESCRIPCIÓN_*) are
# not part of the order and may be absent (FECHA_ÚLTIMO_ESTADO,
# DOCUMENTO_ESTADO_OCAM and DESCRIPCIÓN_ESTADO make the status event of a state
# change, ReportedState); unknown extra columns are ignored, so a column Perú
# Compras adds does not stop imports.
_MAPPED_COLUMNS: Final = (
    "RUC_PROVEEDOR",
    "PROVEEDOR",
    "RUC_ENTIDAD",
    "ENTIDAD",
    "TIPO_PROCEDIMIENTO",
    "ORDEN_ELECTRÓNICA",
    "ORDEN_ELECTRÓNICA_GENERADA",
    "ESTADO_ORDEN_ELECTRÓNICA",
    "FECHA_FORMALIZACIÓN",
    "SUB_TOTAL",
    "IGV",
    "TOTAL",
    "ORDEN_DIGITALIZADA",
    "ACUERDO_MARCO",
)
_DELIMITER: Final = ";"
# How much of a bad header an error message quotes.
_SHOWN_MAX: Final = 300
# Peru (America/Lima) has kept UTC-05:00 all year since 1994, so a report's
# local times take this offset without a time-zone database.
_PERU_OFFSET: Final = "-05:00"
# FECHA_FORMALIZACIÓN as the report writes it: "2026-01-31 09:57:50".
_REPORT_TIME_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
# Document titles (DESIGN §4 example: "Orden electrónica").
_GENERATED_ORDER_TITLE: Final = "Orden electrónica"
_SCANNED_ORDER_TITLE: Final = "Orden digitalizada"
# The document of a state change (DOCUMENTO_ESTADO_OCAM), in its status event.
_STATE_DOCUMENT_TITLE: Final = "Documento de estado"


def _fold(name: str) -> str:
    """A header name without accents, in capitals, with ``_`` between words."""
    decomposed = unicodedata.normalize("NFKD", name.strip().lstrip(_BOM))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[\s-]+", "_", bare.upper())


def _skeleton(name: str) -> str:
    """Only the ASCII letters, digits and ``_`` of a folded-free name.

    A header whose accented letters were damaged on the way -- UTF-8 read as
    Latin-1 (``ORDEN_ELECTRÃ“NICA``), Latin-1 read as UTF-8
    (``ORDEN_ELECTR\\ufffdNICA``) or an ASCII export (``ORDEN_ELECTR?NICA``) --
    keeps the same skeleton as the real name (``ORDEN_ELECTRNICA``).
    """
    return re.sub(r"[^A-Z0-9_]", "", re.sub(r"[\s-]+", "_", name.strip().upper()))


def _header_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for column in PERUCOMPRAS_COLUMNS:
        for key in (_fold(column), _skeleton(column)):
            if index.setdefault(key, column) != column:
                raise AssertionError(f"header key {key} is ambiguous")  # pragma: no cover
    return index


_HEADER_INDEX: Final = _header_index()


def _column_of(name: str) -> str | None:
    """Which report column a header cell names, or None if it names none."""
    candidates = [_fold(name), _skeleton(name)]
    try:
        # UTF-8 bytes that were decoded as cp1252 somewhere upstream.
        candidates.append(_fold(name.encode("cp1252").decode("utf-8")))
    except UnicodeError:
        pass
    for key in candidates:
        if key in _HEADER_INDEX:
            return _HEADER_INDEX[key]
    return None


def detect_csv_encoding(path: Path) -> str:
    """``"utf-8"`` if the file is valid UTF-8 (with or without a BOM), else cp1252 or latin-1.

    Valid UTF-8 is tried first because Latin-1 text is almost never valid
    UTF-8 (an accented letter is a lone byte >= 0x80, which UTF-8 forbids),
    while the reverse guess would silently turn "Ú" into "Ãš". Otherwise
    cp1252 rather than ISO-8859-1: the report is "Latin-1" as Windows writes
    it, and cp1252 only differs in 0x80-0x9F, where it has printable
    characters (``€ ‘ ’ “ ” – —``) and ISO-8859-1 has C1 control codes that no
    real name holds. If even cp1252 fails (one of its five undefined bytes),
    latin-1 decodes every byte; the model then refuses the row holding the
    control character, with its position, instead of the whole file failing.
    A file that starts with a UTF-8 BOM is declared UTF-8: it is read as such
    and lines that are not valid UTF-8 become row errors.

    The whole file is scanned, in chunks (flat memory): the header alone would
    decide only when it carries accents, and a single "Ñ" deep in the file
    must not be misread.
    """
    decoders = {name: codecs.getincrementaldecoder(name)() for name in ("utf-8", "cp1252")}
    with path.open("rb") as stream:
        if stream.read(len(_UTF8_BOM)) == _UTF8_BOM:
            return "utf-8"
        stream.seek(0)
        while decoders:
            chunk = stream.read(_READ_CHUNK)
            for name, decoder in list(decoders.items()):
                try:
                    # final=True at the end: a truncated UTF-8 sequence is invalid.
                    decoder.decode(chunk, not chunk)
                except UnicodeDecodeError:
                    del decoders[name]
            if not chunk:
                break
    if "utf-8" in decoders:
        return "utf-8"
    return "cp1252" if "cp1252" in decoders else "latin-1"


def _check_encoding(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ImportFormatError(f"unknown encoding {encoding!r}") from None
    # Lines are split on the byte 0x0A and cells on ";", so the encoding must
    # read ASCII as ASCII (UTF-16 and UTF-32 do not).
    probe = b"\n;0aZ"
    if probe.decode(encoding, errors="replace") != probe.decode("ascii"):
        raise ImportFormatError(f"encoding {encoding!r} is not ASCII-compatible")
    return name


def read_perucompras_csv(path: Path, *, encoding: str | None = None) -> Iterator[SourceRow]:
    """Orders from Perú Compras' monthly report ``ReportePCBienesYYYYMM.csv`` (DESIGN §4).

    ``;``-separated with a header row; ``encoding`` is detected when not given
    (:func:`detect_csv_encoding`). Each row maps to the purchase-order JSON:
    cells are stripped (padding is not content, and the model refuses
    surrounding spaces), empty optional cells leave their field out, amounts
    are kept exactly as written (see :func:`_order_from_cells`). A row whose
    number of cells differs from the header's, or whose line cannot be decoded
    or converted, is a row error; the next row is read all the same.

    Raises :class:`ImportFormatError` when the file has no header naming the
    report's columns.
    """
    codec = _check_encoding(encoding) if encoding is not None else detect_csv_encoding(path)
    # Physical lines that could not be decoded (or were too long), by number;
    # reported on the row that holds them.
    line_errors: dict[int, str] = {}
    with path.open("rb") as stream:
        reader = csv.reader(_decoded_lines(stream, codec, line_errors), delimiter=_DELIMITER)
        header: list[str] | None = None
        columns: dict[str, int] = {}
        last_line = 0
        while True:
            first_line = last_line + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                last_line = reader.line_num
                for number in range(first_line, last_line + 1):
                    line_errors.pop(number, None)
                yield SourceRow(first_line, None, f"unreadable CSV: {exc}")
                continue
            last_line = reader.line_num
            problems = [
                (f"line {n}: " if n != first_line else "") + line_errors.pop(n)
                for n in range(first_line, last_line + 1)
                if n in line_errors
            ]
            if header is None:
                if not any(cell.strip() for cell in cells):
                    continue
                # A header cell damaged by a decoding error is still matched
                # by its skeleton (see _skeleton); the data rows are what count.
                header, columns = cells, _match_header(cells, first_line)
                continue
            if problems:
                yield SourceRow(first_line, None, "; ".join(problems))
                continue
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                span = (
                    f" (a quoted cell runs on to line {last_line})"
                    if last_line > first_line
                    else ""
                )
                yield SourceRow(
                    first_line,
                    None,
                    f"expected {len(header)} cells separated by {_DELIMITER!r},"
                    f" found {len(cells)}{span}",
                )
                continue
            values = {name: cells[i].strip() for name, i in columns.items()}
            try:
                order = _order_from_cells(values)
            except ValueError as exc:
                yield SourceRow(first_line, None, str(exc))
                continue
            yield SourceRow(first_line, order, state=ReportedState.of(values))
    if header is None:
        raise ImportFormatError(f"{path.name} is empty: expected a header row naming the columns")


def _decoded_lines(stream: IO[bytes], codec: str, errors: dict[int, str]) -> Iterator[str]:
    for number, raw in _physical_lines(stream, _CSV_LINE_MAX):
        if raw is None:
            errors[number] = _too_long(_CSV_LINE_MAX)
            yield "\n"
            continue
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            errors[number] = (
                f"not valid {codec}: byte 0x{raw[exc.start]:02X}"
                f" at byte {exc.start + 1} of the line (is the file in another encoding?)"
            )
            text = raw.decode(codec, errors="replace")
        if number == 1:
            text = text.lstrip(_BOM)
        yield text


def _match_header(cells: list[str], line: int) -> dict[str, int]:
    """Report column -> cell index; raise ImportFormatError unless every mapped column is there."""
    columns: dict[str, int] = {}
    for index, cell in enumerate(cells):
        column = _column_of(cell)
        if column is None:
            continue
        if column in columns:
            raise ImportFormatError(
                f"line {line}: column {column} appears twice"
                f" (cells {columns[column] + 1} and {index + 1})"
            )
        columns[column] = index
    missing = [column for column in _MAPPED_COLUMNS if column not in columns]
    if missing:
        seen = "; ".join(cell.strip() for cell in cells)
        if len(seen) > _SHOWN_MAX:
            seen = seen[:_SHOWN_MAX] + "…"
        raise ImportFormatError(
            f"line {line} is not the header of a Perú Compras report"
            f" (columns separated by {_DELIMITER!r}): missing {', '.join(missing)};"
            f" found: {seen}"
        )
    return columns


def _report_time(text: str, column: str = "FECHA_FORMALIZACIÓN") -> str:
    """A time of the report (Peru time, no offset) in ISO 8601 with Peru's offset."""
    if not _REPORT_TIME_RE.fullmatch(text):
        raise ValueError(
            f'{column} must be a date and time such as "2026-01-31 09:57:50", not {text!r}'
        )
    try:
        # Only the calendar is checked here (the shape is the regex's); the
        # offset is added below. fromisoformat, not strptime: ~10x faster.
        datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a real date and time") from None
    return f"{text.replace(' ', 'T')}{_PERU_OFFSET}"


def _order_from_cells(cells: Mapping[str, str]) -> dict[str, Any]:
    """The purchase-order JSON for one report row (cells already stripped).

    Amounts are copied as written: the model accepts 0 to 2 decimals
    (``"4912.7"`` as well as ``"4912.70"``), so nothing needs rewriting, and
    rewriting would hash something the report never said. The report writes
    two decimals (``174064.00``); a value the model refuses (``"1.234,50"``,
    three decimals) is reported, never guessed at.
    Required fields left empty are omitted so the model reports them as
    missing, under their own names.
    """
    order: dict[str, Any] = {}

    def put(target: dict[str, Any], name: str, column: str) -> None:
        if cells[column]:
            target[name] = cells[column]

    put(order, "order_number", "ORDEN_ELECTRÓNICA")
    for party, ruc_column, name_column in (
        ("buyer", "RUC_ENTIDAD", "ENTIDAD"),
        ("supplier", "RUC_PROVEEDOR", "PROVEEDOR"),
    ):
        member: dict[str, Any] = {}
        put(member, "ruc", ruc_column)
        put(member, "name", name_column)
        order[party] = member
    if cells["FECHA_FORMALIZACIÓN"]:
        order["issued_at"] = _report_time(cells["FECHA_FORMALIZACIÓN"])
    # The report's amounts are in soles.
    order["currency"] = "PEN"
    put(order, "subtotal", "SUB_TOTAL")
    put(order, "tax", "IGV")
    put(order, "total", "TOTAL")
    put(order, "framework_agreement", "ACUERDO_MARCO")
    put(order, "procurement_method", "TIPO_PROCEDIMIENTO")
    put(order, "status", "ESTADO_ORDEN_ELECTRÓNICA")
    documents = [
        {"title": title, "url": cells[column]}
        for title, column in (
            (_GENERATED_ORDER_TITLE, "ORDEN_ELECTRÓNICA_GENERADA"),
            (_SCANNED_ORDER_TITLE, "ORDEN_DIGITALIZADA"),
        )
        if cells[column]
    ]
    if documents:
        order["documents"] = documents
    return order


@dataclass(frozen=True, slots=True)
class ReportedState:
    """What a row of the report says about its order's state, cells as written (stripped).

    The report is a snapshot: each month's lists the orders with their state
    then (ESTADO_ORDEN_ELECTRÓNICA), when it took effect (FECHA_ÚLTIMO_ESTADO),
    the state's document (DOCUMENTO_ESTADO_OCAM, a URL) and its description
    (DESCRIPCIÓN_ESTADO). Only ESTADO is part of the order (its ``status``);
    when an already recorded order's state changed, these make the ``status``
    event appended to its history (:meth:`event`).
    """

    status: str
    changed_at: str
    document_url: str
    description: str

    @classmethod
    def of(cls, cells: Mapping[str, str]) -> ReportedState | None:
        """The state of a row (None when ESTADO is empty: the row says nothing of it)."""
        status = cells["ESTADO_ORDEN_ELECTRÓNICA"]
        if not status:
            return None
        return cls(
            status,
            cells.get("FECHA_ÚLTIMO_ESTADO", ""),
            cells.get("DOCUMENTO_ESTADO_OCAM", ""),
            cells.get("DESCRIPCIÓN_ESTADO", ""),
        )

    def event(self) -> dict[str, Any]:
        """The members of the ``status`` event (DESIGN §2) of this state, without the
        order and ``prev``: ``status`` verbatim, FECHA_ÚLTIMO_ESTADO as
        ``occurred_at`` in Peru time (as FECHA_FORMALIZACIÓN is mapped),
        DESCRIPCIÓN_ESTADO as ``note``, DOCUMENTO_ESTADO_OCAM as a document.

        Raises ValueError when FECHA_ÚLTIMO_ESTADO is empty or not a date and
        time: a change of state is recorded with the time it took effect.
        """
        if not self.changed_at:
            raise ValueError("FECHA_ÚLTIMO_ESTADO is empty: a change of state needs its time")
        event: dict[str, Any] = {
            "type": "status",
            "occurred_at": _report_time(self.changed_at, "FECHA_ÚLTIMO_ESTADO"),
            "status": self.status,
        }
        if self.description:
            event["note"] = self.description
        if self.document_url:
            event["documents"] = [{"title": _STATE_DOCUMENT_TITLE, "url": self.document_url}]
        return event


# Where the members of a status event come from in the report, for its errors.
_STATE_COLUMNS: Final = {
    "occurred_at": "FECHA_ÚLTIMO_ESTADO",
    "status": "ESTADO_ORDEN_ELECTRÓNICA",
    "note": "DESCRIPCIÓN_ESTADO",
    "documents": "DOCUMENTO_ESTADO_OCAM",
}


# --- OCDS packages ---------------------------------------------------------------------


def read_ocds(path: Path) -> Iterator[SourceRow]:
    """The contracts of an OCDS release or record package, one row each.

    The package is parsed whole with :func:`ledger.canonical.parse_json_strict`
    and mapped by :func:`app.opendata.ocds_in.orders_from_ocds`: every contract
    (and every release or record that yields none) is a row, numbered from 1,
    with its JSON pointer and, when it cannot be an order, the reason. A file
    that is not strict JSON has no rows: :class:`ImportFormatError`.
    """
    try:
        package = parse_json_strict(path.read_bytes())
    except CanonicalError as exc:
        raise ImportFormatError(str(exc)) from None
    for number, item in enumerate(orders_from_ocds(package), start=1):
        yield SourceRow(number, item.order, item.problem, item.pointer)


def read_rows(
    path: Path, file_format: Format, *, encoding: str | None = None
) -> Iterator[SourceRow]:
    """The rows of ``path`` read as ``file_format``, lazily (nothing is read before the first).

    ``encoding`` is the Perú Compras report's (detected when not given); the
    other formats are UTF-8. ``events-jsonl`` is read as JSON lines: one event
    per line (record it with ``import_rows(..., events=True)``).
    """
    if file_format in ("jsonl", "events-jsonl"):
        return read_jsonl(path)
    if file_format == "perucompras-csv":
        return read_perucompras_csv(path, encoding=encoding)
    return read_ocds(path)


# --- Recording --------------------------------------------------------------------------


def _reason(exc: ValidationError, schema: RecordSchema = SCHEMA) -> str:
    errors = validation_errors(exc, whole=schema.whole)
    return "; ".join(f"{error['field']}: {error['message']}" for error in errors)


def import_rows(
    *,
    session_factory: Callable[[], Session],
    rows: Iterable[SourceRow],
    source: str,
    chunk_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    events: bool = False,
) -> ImportReport:
    """Validate and record ``rows``, ``chunk_size`` rows at a time, one session per chunk.

    Idempotent: an order already recorded with the same content counts as
    ``existing``. The same buyer + order number with other content is judged
    against the order as recorded (:func:`_judge_recorded`): a report row
    whose only difference is its state appends a ``status`` event (or is
    ``existing`` when the order's history already stands at that state); any
    other difference is a ``conflict`` reported with its line and the names
    of the fields that differ (a recorded order never changes). Each chunk
    is committed before the next is read, so an import that stops half-way
    (a database error propagates) can simply be run again.
    ``progress`` receives the number of rows processed so far after each chunk.

    ``events``: the rows are order events in the shape of ``POST
    /v1/events/bulk`` items (``{"buyer_ruc", "order_number", "prev", "type",
    "occurred_at", …}``), recorded in file order; a row may chain to an
    earlier row's hash. A refused event is reported with its outcome:
    ``conflict`` (its prev is not the order's head, which the reason names;
    or the order is cancelled), ``not_found`` (no such order) or ``invalid``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    schema = EVENT_SCHEMA if events else SCHEMA
    parse: Callable[[object], ValidRecord] = parse_event if events else PurchaseOrder.model_validate
    record_chunk = _record_event_chunk if events else _record_chunk
    report = ImportReport()
    processed = 0
    pending: list[tuple[SourceRow, Any]] = []
    in_chunk = 0
    for row in rows:
        processed += 1
        in_chunk += 1
        if row.error is not None or row.order is None:
            report.invalid += 1
            report.problems.append(row.problem("invalid", row.error or f"no {schema.noun}"))
        else:
            try:
                pending.append((row, parse(row.order)))
            except ValidationError as exc:
                report.invalid += 1
                report.problems.append(row.problem("invalid", _reason(exc, schema)))
        if in_chunk >= chunk_size:
            record_chunk(session_factory, source, pending, report)
            pending, in_chunk = [], 0
            if progress is not None:
                progress(processed)
    if in_chunk:
        record_chunk(session_factory, source, pending, report)
        if progress is not None:
            progress(processed)
    # Problems in file order, whichever chunk step found them.
    report.problems.sort(key=lambda problem: problem.line)
    return report


def _record_chunk(
    session_factory: Callable[[], Session],
    source: str,
    pending: list[tuple[SourceRow, PurchaseOrder]],
    report: ImportReport,
) -> None:
    if not pending:
        return
    with session_factory() as session:
        results = record_items(
            session=session,
            agency=None,
            schema=SCHEMA,
            items=[order for _, order in pending],
            source=source,
        )
        # Orders recorded with other content: one read of their histories for
        # the whole chunk (rows of unchanged orders never get here).
        recorded_differently = [
            (pending[result.index][0], pending[result.index][1], result)
            for result in results
            if result.outcome == "conflict" and result.existing_hash is not None
        ]
        if recorded_differently:
            _judge_recorded(session, source, recorded_differently, report)
    for result in results:
        row = pending[result.index][0]
        if result.outcome == "created":
            report.created += 1
        elif result.outcome == "exists":
            report.existing += 1
        elif result.outcome == "conflict":
            if result.existing_hash is None:  # pragma: no cover - orders chain to nothing
                report.conflicts += 1
                report.problems.append(row.problem("conflict", result.detail or "conflict"))
        else:  # pragma: no cover - record_items gives only the above without an agency
            report.invalid += 1
            report.problems.append(row.problem("invalid", result.detail or result.outcome))


def _differences(
    row: Mapping[str, Any], recorded: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """The dotted names of the members that differ (``supplier.name``, ``items.0.quantity``),
    in the order of ``row``'s members, then those only ``recorded`` has."""
    names: list[str] = []
    missing = object()
    for key in [*row, *(key for key in recorded if key not in row)]:
        mine, theirs = row.get(key, missing), recorded.get(key, missing)
        if mine == theirs:
            continue
        name = f"{prefix}{key}"
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            names += _differences(mine, theirs, f"{name}.")
        elif isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
            for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
                if a == b:
                    continue
                if isinstance(a, Mapping) and isinstance(b, Mapping):
                    names += _differences(a, b, f"{name}.{index}.")
                else:
                    names.append(f"{name}.{index}")
        else:
            names.append(name)
    return names


def _judge_recorded(
    session: Session,
    source: str,
    rows: list[tuple[SourceRow, PurchaseOrder, ItemResult]],
    report: ImportReport,
) -> None:
    """Rows whose order is recorded with other content: a state change, or a conflict.

    *The recorded order* a row is compared with is the order as issued (the
    purchase-order record at position 0 of its history), without ``status``:

    * the report describes each order as Perú Compras issued it, plus its
      state now; the state is the one member of the order a later report may
      change (the other state columns are not part of the order), so it is
      the only one left out. Any other member that differs (a total, a
      supplier's name, a document link) is a different order under the same
      number, reported by name; nothing is recorded for that row;
    * not the order "as it stands now": an amendment recorded later (an
      ``amended`` event) changes that, and the report still describes the
      order it issued.

    The row's state is then compared with the order's current state (its
    last ``status`` event, or its own ``status``): the same state is
    ``existing`` (so importing the same report twice appends once); another
    state is appended as a ``status`` event whose ``prev`` is the order's
    head, unless the row's FECHA_ÚLTIMO_ESTADO is earlier than the current
    state's (a report older than one already imported: appending it would
    write a change back to a superseded state). Rows of JSON lines or OCDS
    carry no state columns: for them ``status`` is compared like the rest.

    The orders' histories are read in one go (:func:`load_chains`) and
    folded as ingest folds them; the events are then recorded together by
    :func:`record_items`, which judges each against its history again inside
    the write lock, so a concurrent writer cannot make the history fork.
    """
    roots = {
        (PURCHASE_ORDER_SCHEMA, order_identity(order.buyer.ruc, order.order_number)): EVENT_SCHEMA
        for _, order, _ in rows
    }
    chains = load_chains(session.connection(), roots)
    # End the read before writing: record_items reads the heads again under the write lock.
    session.rollback()
    states: dict[tuple[str, str], OrderState] = {}
    appending: list[tuple[SourceRow, EventBody]] = []
    for row, order, result in rows:
        key = (PURCHASE_ORDER_SCHEMA, order_identity(order.buyer.ruc, order.order_number))
        name = f"order {order.order_number} of buyer {order.buyer.ruc}"
        chain = chains[key]
        if chain.broken is not None or chain.state is None:
            report.conflicts += 1
            reason = (
                f"{name} is recorded with other content (hash {result.existing_hash}), and its "
                f"history breaks its rules {chain.broken}; nothing is appended to it until an "
                "operator has looked (`ancla verify`)"
                if chain.broken is not None
                else result.detail or "conflict"
            )
            report.problems.append(row.problem("conflict", reason))
            continue
        state = states.get(key, chain.state)
        assert isinstance(state, OrderState)  # noqa: S101 - the order-event chain's state
        state_cells = row.state
        mine = order.to_record()["purchase_order"]
        issued = dict(state.issued)
        if state_cells is not None:
            mine.pop("status", None)
            issued.pop("status", None)
        differing = _differences(mine, issued)
        if differing:
            report.conflicts += 1
            report.problems.append(
                row.problem(
                    "conflict",
                    f"{name} differs from the recorded order (hash {result.existing_hash}) in: "
                    f"{', '.join(differing)}; nothing is recorded for this row (a recorded "
                    "order never changes)",
                )
            )
            continue
        if state_cells is None or state_cells.status == state.last_status:
            report.existing += 1
            continue
        try:
            members = state_cells.event()
        except ValueError as exc:
            report.invalid += 1
            report.problems.append(
                row.problem("invalid", f"{name} changed state to {state_cells.status}, but {exc}")
            )
            continue
        item = {
            "buyer_ruc": order.buyer.ruc,
            "order_number": order.order_number,
            "prev": state.head,
            **members,
        }
        try:
            body = parse_event(item)
        except ValidationError as exc:
            report.invalid += 1
            report.problems.append(
                row.problem(
                    "invalid",
                    f"{name} changed state to {state_cells.status}, but its status event "
                    f"is invalid: {_state_reason(exc)}",
                )
            )
            continue
        record = body.record()
        try:
            # The history's own rules first (not before the order was issued,
            # nothing after a cancellation), as record_items will judge them.
            following = apply_event(state, record_hash(record), record)
        except ChainRefusal as refusal:
            kind: ProblemKind = "conflict" if refusal.outcome == "conflict" else "invalid"
            _count(report, kind)
            report.problems.append(
                row.problem(
                    kind, f"{name} changed state to {state_cells.status}, but {refusal.detail}"
                )
            )
            continue
        occurred = datetime.fromisoformat(members["occurred_at"])
        if state.last_status_at is not None and occurred < state.last_status_at:
            report.conflicts += 1
            report.problems.append(
                row.problem(
                    "conflict",
                    f"{name} is in state {state.last_status} since "
                    f"{state.last_status_at.isoformat()}, later than this row's state "
                    f"{state_cells.status} of {members['occurred_at']} (a report older than "
                    "one already imported?); nothing is appended",
                )
            )
            continue
        states[key] = following
        appending.append((row, body))
    if not appending:
        return
    results = record_items(
        session=session,
        agency=None,
        schema=EVENT_SCHEMA,
        items=[body for _, body in appending],
        source=source,
    )
    for result in results:
        row = appending[result.index][0]
        if result.outcome == "created":
            report.status_events += 1
        else:
            _count_result(report, row, result)


def _state_reason(exc: ValidationError) -> str:
    """A status event's errors, named by the report columns they come from."""
    problems = []
    for error in validation_errors(exc, whole=EVENT_SCHEMA.whole):
        top = error["field"].split(".", 1)[0]
        problems.append(f"{_STATE_COLUMNS.get(top, error['field'])}: {error['message']}")
    return "; ".join(problems)


# The outcomes of record_items an import reports as they are; any other is invalid.
_PROBLEM_KINDS: Final[dict[str, ProblemKind]] = {"conflict": "conflict", "not_found": "not_found"}


def _count(report: ImportReport, kind: ProblemKind) -> None:
    if kind == "conflict":
        report.conflicts += 1
    elif kind == "not_found":
        report.not_found += 1
    else:
        report.invalid += 1


def _count_result(report: ImportReport, row: SourceRow, result: ItemResult) -> None:
    """Count a result other than ``created``; a refused one is a problem of its row."""
    if result.outcome == "exists":
        report.existing += 1
        return
    kind = _PROBLEM_KINDS.get(result.outcome, "invalid")
    _count(report, kind)
    reason = result.detail or result.outcome
    if result.errors:
        fields = "; ".join(f"{error['field']}: {error['message']}" for error in result.errors)
        reason = f"{reason}: {fields}"
    report.problems.append(row.problem(kind, reason))


def _record_event_chunk(
    session_factory: Callable[[], Session],
    source: str,
    pending: list[tuple[SourceRow, EventBody]],
    report: ImportReport,
) -> None:
    if not pending:
        return
    with session_factory() as session:
        results = record_items(
            session=session,
            agency=None,
            schema=EVENT_SCHEMA,
            items=[event for _, event in pending],
            source=source,
        )
    for result in results:
        row = pending[result.index][0]
        if result.outcome == "created":
            report.created += 1
        else:
            _count_result(report, row, result)


# --- Format detection -------------------------------------------------------------------

_JSONL_SUFFIXES: Final = (".jsonl", ".ndjson")
_SNIFF_BYTES: Final = 64 * 1024
# What the top-level scan looks at: strings, brackets (depth), ":" after a
# member name and "," after a value; everything else is skipped unread.
_JSON_TOKEN_RE: Final = re.compile(r'["{}\[\]:,]')
_JSON_STRING_END_RE: Final = re.compile(r'["\\]')
# Member names are short; of a long string only this much is kept (flat
# memory): at most 16 pieces of 256 characters.
_NAME_PIECES_MAX: Final = 16
_NAME_PIECE_CHARS: Final = 256
# Members every event has and no order has: a JSON-lines file of events.
_EVENT_KEYS: Final = frozenset({"prev", "type"})


def detect_format(path: Path) -> Format:
    """The import format of ``path``: by extension, or by content when that says nothing.

    ``.jsonl``/``.ndjson`` -> ``"jsonl"``, or ``"events-jsonl"`` when the
    first object has ``prev`` and ``type`` members (an order has neither);
    ``.csv`` -> ``"perucompras-csv"``; ``.json`` whose top-level object has a
    ``releases`` or ``records`` member -> ``"ocds"`` (an OCDS release or
    record package). Raises :class:`ImportFormatError` (a ValueError) naming
    what was seen otherwise.
    """
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        # The first object's member names, read as a stream (a line may be long).
        kind, keys = _top_level_keys(path)
        return "events-jsonl" if kind == "an object" and _EVENT_KEYS <= keys else "jsonl"
    if suffix == ".csv":
        return "perucompras-csv"
    if suffix == ".json":
        return _detect_ocds(path)
    return _sniff(path)


def _detect_ocds(path: Path) -> Format:
    kind, keys = _top_level_keys(path)
    if kind != "an object":
        raise ImportFormatError(
            f"{path.name}: expected an OCDS package (a JSON object with releases or records),"
            f" found {kind}"
        )
    if "releases" in keys or "records" in keys:
        return "ocds"
    seen = ", ".join(sorted(keys)) or "no members"
    raise ImportFormatError(
        f"{path.name}: a JSON object without releases or records is not an OCDS package"
        f" (top-level members: {seen}); for one order per line use .jsonl"
    )


def _top_level_keys(path: Path) -> tuple[str, set[str]]:
    """What the JSON document is (``"an object"``, ...), and its top-level member names.

    A streaming scan, chunk by chunk (OCDS packages run to gigabytes), that
    stops at the first ``releases`` or ``records`` member, or where the first
    object ends (of JSON lines, the first line's object). Only the shape is
    looked at; the JSON is not validated here.
    """
    keys: set[str] = set()
    with path.open("r", encoding="utf-8-sig", errors="replace") as stream:
        chunks = iter(lambda: stream.read(_READ_CHUNK), "")
        first = next((chunk.lstrip() for chunk in chunks if chunk.strip()), "")
        if not first:
            return "an empty file", keys
        if not first.startswith("{"):
            kind = "a JSON array" if first.startswith("[") else f"text starting with {first[0]!r}"
            return kind, keys
        depth = 0
        in_string = escaped = False
        pieces: list[str] = []  # the string being read, when it may be a member name
        name: str | None = None  # a top-level string just read, a name if ":" follows
        for buffer in itertools.chain([first], chunks):
            position = 0
            if escaped:
                # The character a backslash at the end of the last chunk escapes.
                if depth == 1 and len(pieces) < _NAME_PIECES_MAX:
                    pieces.append(buffer[0])
                position, escaped = 1, False
            while position < len(buffer):
                if in_string:
                    end = _JSON_STRING_END_RE.search(buffer, position)
                    if end is None or end.group() == "\\":
                        # Up to and with the escaped character (names are shown as written).
                        stop = len(buffer) if end is None else end.end() + 1
                    else:
                        stop = end.start()
                    if depth == 1 and len(pieces) < _NAME_PIECES_MAX:
                        pieces.append(buffer[position:stop][:_NAME_PIECE_CHARS])
                    if end is None:
                        break
                    if end.group() == "\\":
                        # Skip the escaped character, even in the next chunk.
                        position = stop
                        escaped = position > len(buffer)
                        continue
                    in_string = False
                    position = end.end()
                    name = "".join(pieces) if depth == 1 else None
                    continue
                token = _JSON_TOKEN_RE.search(buffer, position)
                if token is None:
                    break
                position = token.end()
                mark = token.group()
                if mark == '"':
                    in_string, pieces = True, []
                    continue
                if mark == ":" and depth == 1 and name is not None:
                    keys.add(name)
                    if name in ("releases", "records"):
                        return "an object", keys
                elif mark in "{[":
                    depth += 1
                elif mark in "}]":
                    depth -= 1
                    if depth == 0:
                        return "an object", keys
                name = None
    return "an object", keys


def _sniff(path: Path) -> Format:
    """Guess from the first line, for a file whose extension says nothing."""
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    first_line = head.split(b"\n", 1)[0].removeprefix(_UTF8_BOM).strip()
    text = first_line.decode("utf-8", errors="replace")
    if text.startswith("{"):
        try:
            value = parse_json_strict(first_line)
        except CanonicalError:
            # Not a whole object on one line: a (pretty-printed) JSON document.
            return _detect_ocds(path)
        if isinstance(value, dict) and ("releases" in value or "records" in value):
            return "ocds"
        if isinstance(value, dict) and _EVENT_KEYS <= value.keys():
            return "events-jsonl"
        return "jsonl"
    cells = text.split(_DELIMITER)
    if {_column_of(cell) for cell in cells} >= set(_MAPPED_COLUMNS):
        return "perucompras-csv"
    shown = text[:80] + ("…" if len(text) > 80 else "")
    raise ImportFormatError(
        f"cannot tell the format of {path.name}: the extension {path.suffix or '(none)'!r}"
        " is none of .jsonl, .ndjson, .csv, .json and the first line is neither a JSON"
        f" object nor a Perú Compras report header: {shown!r}"
    )
