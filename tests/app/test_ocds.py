"""OCDS 1.1 open data: export validated offline against the official 1.1.5 schemas, import.

The schemas are vendored under tests/vectors/ocds/ (see SOURCES.md there); the
package schemas `$ref` the release schema by its https URL, which a
`referencing` Registry maps to the local file, so nothing is fetched.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from sqlalchemy import select

from app.models import Batch
from app.opendata import export, mapping, ocds_in, packages
from app.records.purchase_order import PURCHASE_ORDER_EXAMPLE, SCHEMA, PurchaseOrder
from app.runtime import Runtime
from app.services.ingest import record_items
from app.services.receipts import get_receipt
from ledger.anchors import Anchor
from ledger.canonical import record_hash
from tests.support.orders import BUYER_RUC, OTHER_BUYER_RUC, order

# The OCDS 1.1.5 schemas and published packages, vendored (SOURCES.md says from where).
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ocds"
REAL = VECTORS / "real"
FICTIONAL = VECTORS / "fictional-sample-data"
SCHEMA_BASE = "https://standard.open-contracting.org/schema/1__1__5/"
PERU = timezone(timedelta(hours=-5))
BASE_URL = "https://ancla.example/"  # RFC 2606: a name that is never anyone's host
PACKAGE = packages.PackageInfo(
    uri="https://ancla.example/ocds/releases.json",
    published_date=datetime(2026, 2, 1, 8, 0, 14, tzinfo=PERU),
    publisher_name="Ancla (tests)",
    extension_url=mapping.extension_url(BASE_URL),
    license="https://opendatacommons.org/licenses/pddl/1.0/",
)
SPACED_URL = (
    "https://saeusceprod01.blob.core.windows.net/contentidad/uploads/"
    "OCAM-2026-1556-7_30-01-26 21-27-40_FISICA.pdf"
)

# --- offline validation ------------------------------------------------------------------

# jsonschema checks no format unless told how; these two are the ones OCDS uses,
# checked strictly (RFC 3339 date-time, absolute RFC 3986 URI) with no extra package.
FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.ASCII)


@FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or _RFC3339.fullmatch(value) is not None


@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return _URI.fullmatch(value) is not None and bool(urlsplit(value).netloc)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: how an OCDS extension's schema applies to the release schema."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def release_schema(*, extended: bool) -> dict[str, Any]:
    schema = load_json(VECTORS / "release-schema.json")
    if extended:
        schema = merge_patch(schema, load_json(mapping.EXTENSION_DIR / "release-schema.json"))
    return schema  # type: ignore[no-any-return]


def validator(package_schema: str, *, extended: bool) -> Draft4Validator:
    """A draft-4 validator of a package schema whose $refs resolve to local files only."""
    resources = [
        (
            SCHEMA_BASE + "release-schema.json",
            Resource.from_contents(release_schema(extended=extended), DRAFT4),
        ),
        (
            SCHEMA_BASE + "versioned-release-validation-schema.json",
            Resource.from_contents(
                load_json(VECTORS / "versioned-release-validation-schema.json"), DRAFT4
            ),
        ),
    ]
    # A Registry with no retrieve function cannot fetch: an unknown $ref fails.
    registry: Registry[Any] = Registry().with_resources(resources)
    return Draft4Validator(
        load_json(VECTORS / package_schema), registry=registry, format_checker=FORMATS
    )


def errors_of(package_schema: str, package: Any, *, extended: bool) -> list[str]:
    found = validator(package_schema, extended=extended).iter_errors(package)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found)


def assert_valid(package: dict[str, Any], package_schema: str) -> None:
    # Valid for any OCDS tool (official schema: `ancla` is an additional field) and
    # valid with the extension applied (which does check the `ancla` object).
    assert errors_of(package_schema, package, extended=False) == []
    assert errors_of(package_schema, package, extended=True) == []


# --- orders ------------------------------------------------------------------------------


def example(number: str, **changes: Any) -> dict[str, Any]:
    """The DESIGN example (items, documents, Acuerdo Marco) under another order number."""
    data = copy.deepcopy(PURCHASE_ORDER_EXAMPLE)
    data["order_number"] = number
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def minimal(i: int) -> dict[str, Any]:
    """Only the required fields: no items, documents, framework, method or status."""
    data = order(i)
    for key in ("framework_agreement", "procurement_method", "status", "documents"):
        data.pop(key)
    return data


WITH_ITEMS = example("OCAM-2026-1556-7-0")  # anchored
NO_ITEMS = order(1)  # anchored; Acuerdo Marco, documents, no items
OTHER_BUYER = order(
    2,
    buyer_ruc=OTHER_BUYER_RUC,
    buyer={"ruc": OTHER_BUYER_RUC, "name": "MUNICIPALIDAD PROVINCIAL DEL CUSCO"},
    status="RECHAZADA",
    documents=[{"title": "Orden digitalizada", "url": SPACED_URL, "sha256": "ab" * 32}],
)  # anchored
PENDING_MINIMAL = minimal(3)  # pending
PENDING_ITEMS = example(
    "OCAM-2026-1556-8-0", framework_agreement=None, status="PUBLICADA"
)  # pending, items, no framework
ANCHORED = [WITH_ITEMS, NO_ITEMS, OTHER_BUYER]
PENDING = [PENDING_MINIMAL, PENDING_ITEMS]


def record(runtime: Runtime, orders: list[dict[str, Any]], outcome: str = "created") -> list[str]:
    with runtime.session_factory() as session:
        results = record_items(
            session=session,
            agency=None,
            schema=SCHEMA,
            items=[PurchaseOrder.model_validate(o) for o in orders],
            source="import:test",
        )
    assert [r.outcome for r in results] == [outcome] * len(orders), results
    return [r.hash for r in results if r.hash]


def as_recorded(data: dict[str, Any]) -> dict[str, Any]:
    return PurchaseOrder.model_validate(data).model_dump(mode="json", exclude_none=True)


def releases_of(runtime: Runtime, **filters: Any) -> list[dict[str, Any]]:
    with runtime.session_factory() as session:
        return list(export.export_releases(session=session, base_url=BASE_URL, **filters))


@pytest.fixture
def ledger(runtime: Runtime) -> dict[str, str]:
    """Three anchored orders and two pending ones; order number -> record hash."""
    anchored = record(runtime, ANCHORED)
    runtime.make_worker().tick(force_seal=True)
    pending = record(runtime, PENDING)
    numbers = [o["order_number"] for o in ANCHORED + PENDING]
    return dict(zip(numbers, anchored + pending, strict=True))


# --- export (database and chain) -------------------------------------------------------------


@pytest.mark.db
@pytest.mark.chain
def test_export_is_valid_ocds_with_the_proof(runtime: Runtime, ledger: dict[str, str]) -> None:
    releases = releases_of(runtime)
    assert [r["ancla"]["recordHash"] for r in releases] == list(ledger.values())

    release_package = packages.release_package(releases, PACKAGE)
    assert_valid(release_package, "release-package-schema.json")
    embedded = packages.record_package(releases, PACKAGE)
    assert_valid(embedded, "record-package-schema.json")
    linked = packages.record_package(releases, PACKAGE, release_package_uri=PACKAGE.uri)
    assert_valid(linked, "record-package-schema.json")
    assert linked["packages"] == [PACKAGE.uri]
    assert linked["records"][0]["releases"] == [
        {
            "url": f"{PACKAGE.uri}#{ledger[WITH_ITEMS['order_number']]}",
            "date": "2026-01-31T09:57:50-05:00",
            "tag": ["award", "contract"],
        }
    ]
    compiled = embedded["records"][0]["compiledRelease"]
    assert compiled["tag"] == ["compiled"] and "ancla" not in compiled
    assert compiled["id"] == f"{releases[0]['ocid']}-2026-01-31T09:57:50-05:00"
    assert release_package["extensions"] == ["https://ancla.example/ocds/extension/extension.json"]
    assert release_package["version"] == "1.1"

    by_number = {r["contracts"][0]["id"]: r for r in releases}
    full = by_number[WITH_ITEMS["order_number"]]
    assert full["ocid"] == f"ocds-ancla0-{BUYER_RUC}-OCAM-2026-1556-7-0"
    assert full["id"] == ledger[WITH_ITEMS["order_number"]]
    assert full["tag"] == ["award", "contract"] and full["initiationType"] == "tender"
    assert full["parties"] == [
        {
            "id": f"PE-RUC-{BUYER_RUC}",
            "name": WITH_ITEMS["buyer"]["name"],
            "identifier": {
                "scheme": "PE-RUC",
                "id": BUYER_RUC,
                "legalName": WITH_ITEMS["buyer"]["name"],
            },
            "roles": ["buyer"],
        },
        {
            "id": "PE-RUC-10412742694",
            "name": "FACUNDO SALAS TELLY CESAR",
            "identifier": {
                "scheme": "PE-RUC",
                "id": "10412742694",
                "legalName": "FACUNDO SALAS TELLY CESAR",
            },
            "roles": ["supplier"],
        },
    ]
    assert full["buyer"] == {"id": f"PE-RUC-{BUYER_RUC}", "name": WITH_ITEMS["buyer"]["name"]}
    assert full["tender"] == {
        "id": "OCAM-2026-1556-7-0",
        "procurementMethodDetails": "Compra ordinaria",
    }
    assert full["awards"][0]["suppliers"] == [
        {"id": "PE-RUC-10412742694", "name": "FACUNDO SALAS TELLY CESAR"}
    ]
    contract = full["contracts"][0]
    assert contract["awardID"] == full["awards"][0]["id"] == "OCAM-2026-1556-7-0"
    # Numbers in OCDS; the exact strings stay in the hashed record.
    assert contract["value"] == {
        "amount": 5796.99,
        "currency": "PEN",
        "amountNet": 4912.7,
        "amountGross": 5796.99,
    }
    assert isinstance(contract["value"]["amount"], float)
    assert (contract["status"], contract["statusDetails"]) == ("active", "ACEPTADA")
    assert contract["dateSigned"] == "2026-01-31T09:57:50-05:00"
    assert contract["items"][0] == {
        "id": "1",
        "description": "PAPEL BOND 75 G/M2 TAMAÑO A4 X 500 HOJAS",
        "quantity": 150,
        "unit": {"name": "PAQUETE", "value": {"amount": 24.9, "currency": "PEN"}},
        "classification": {"scheme": "UNSPSC", "id": "14111507"},
    }
    assert "classification" not in contract["items"][2]
    assert full["relatedProcesses"] == [
        {
            "id": "1",
            "relationship": ["framework"],
            "title": "ÚTILES DE ESCRITORIO, PAPELES Y CARTONES",
            "scheme": "X-ANCLA-ACUERDO-MARCO",
            "identifier": "ÚTILES DE ESCRITORIO, PAPELES Y CARTONES",
        }
    ]

    # The proof is the receipt's, field for field.
    with runtime.session_factory() as session:
        receipt = get_receipt(session=session, record_hash=full["id"], genesis=None)
        batch = session.scalars(select(Batch)).one()
    assert receipt.anchor is not None and receipt.merkle is not None
    assert full["ancla"] == {
        "recordSchema": "ancla/purchase-order/1",
        "recordHash": full["id"],
        "recordUrl": f"https://ancla.example/v1/records/{full['id']}",
        "receiptUrl": f"https://ancla.example/v1/receipts/{full['id']}",
        "status": receipt.status,
        "batchId": batch.id,
        "merkleRoot": batch.root,
        "chainId": 31337,
        "contract": batch.contract,
        "transactionHash": batch.tx_hash,
        "blockNumber": batch.block_number,
    }
    assert receipt.status in ("anchored", "final")

    plain = by_number[NO_ITEMS["order_number"]]["contracts"][0]
    assert "items" not in plain and plain["value"]["amount"] == 1180.01
    assert by_number[NO_ITEMS["order_number"]]["relatedProcesses"][0]["relationship"] == [
        "framework"
    ]

    refused = by_number[OTHER_BUYER["order_number"]]
    assert refused["buyer"]["id"] == f"PE-RUC-{OTHER_BUYER_RUC}"
    assert refused["contracts"][0]["status"] == "cancelled"
    # OCDS urls are RFC 3986: the space Perú Compras leaves in file names is escaped.
    assert refused["contracts"][0]["documents"] == [
        {
            "id": "1",
            "title": "Orden digitalizada",
            "url": SPACED_URL.replace(" ", "%20"),
            "sha256": "ab" * 32,
        }
    ]

    pending = by_number[PENDING_MINIMAL["order_number"]]
    assert pending["ancla"] == {
        "recordSchema": "ancla/purchase-order/1",
        "recordHash": pending["id"],
        "recordUrl": f"https://ancla.example/v1/records/{pending['id']}",
        "receiptUrl": f"https://ancla.example/v1/receipts/{pending['id']}",
        "status": "pending",
    }
    assert "relatedProcesses" not in pending and "procurementMethodDetails" not in pending["tender"]
    assert "status" not in pending["contracts"][0] and "documents" not in pending["contracts"][0]
    published = by_number[PENDING_ITEMS["order_number"]]["contracts"][0]
    assert (published["status"], len(published["items"])) == ("pending", 3)

    # Filters: the buyer's RUC, and the issue time (aware).
    assert [r["buyer"]["id"] for r in releases_of(runtime, buyer=OTHER_BUYER_RUC)] == [
        f"PE-RUC-{OTHER_BUYER_RUC}"
    ]
    issued = datetime(2026, 1, 31, 9, 57, 50, tzinfo=PERU)
    assert len(releases_of(runtime, since=issued)) == 5
    assert releases_of(runtime, since=issued + timedelta(seconds=1)) == []


@pytest.mark.db
@pytest.mark.chain
def test_streamed_packages_equal_the_in_memory_ones(
    runtime: Runtime, ledger: dict[str, str]
) -> None:
    releases = releases_of(runtime)
    with runtime.session_factory() as session:
        out = io.StringIO()
        count = packages.write_release_package(
            out, export.export_releases(session=session, base_url=BASE_URL), PACKAGE
        )
    assert count == len(ledger)
    in_memory = packages.release_package(releases, PACKAGE)
    assert out.getvalue() == json.dumps(in_memory, ensure_ascii=False)
    assert json.loads(out.getvalue()) == in_memory

    with runtime.session_factory() as session:
        out = io.StringIO()
        count = packages.write_record_package(
            out, export.export_releases(session=session, base_url=BASE_URL), PACKAGE
        )
    assert count == len(ledger)
    assert json.loads(out.getvalue()) == packages.record_package(releases, PACKAGE)


@pytest.mark.db
@pytest.mark.chain
def test_write_export_writes_each_format_with_its_writer(
    runtime: Runtime, ledger: dict[str, str]
) -> None:
    releases = releases_of(runtime)

    def written(file_format: str, **options: Any) -> tuple[int, str]:
        out = io.StringIO(newline="")
        with runtime.session_factory() as session:
            count = export.write_export(
                out, session=session, format=file_format, base_url=BASE_URL, **options
            )
        return count, out.getvalue()

    def head(text: str, uri: str, publisher_name: str) -> packages.PackageInfo:
        # The one part of an export that is not the ledger's: when it was made.
        return packages.PackageInfo(
            uri=uri,
            published_date=datetime.fromisoformat(json.loads(text)["publishedDate"]),
            publisher_name=publisher_name,
            extension_url=mapping.extension_url(BASE_URL),
        )

    count, text = written("ocds", uri=PACKAGE.uri, publisher_name="Ancla (tests)")
    info = head(text, PACKAGE.uri, "Ancla (tests)")
    assert count == len(ledger)
    assert text == json.dumps(packages.release_package(releases, info), ensure_ascii=False)

    count, text = written("ocds-record")  # the package's uri and publisher by default
    info = head(text, "https://ancla.example/v1/export/ocds", "Ancla")
    assert count == len(ledger)
    assert text == json.dumps(packages.record_package(releases, info), ensure_ascii=False)

    with runtime.session_factory() as session:
        out = io.StringIO(newline="")
        export.write_csv(out, session=session)
    assert written("csv") == (len(ledger), out.getvalue())

    # No order of that buyer: no package (OCDS has no empty one), a CSV of its header.
    with pytest.raises(packages.EmptyPackage):
        written("ocds", buyer="20100070970")
    assert written("csv", buyer="20100070970") == (0, ",".join(export.CSV_COLUMNS) + "\r\n")
    with pytest.raises(ValueError, match="format must be one of ocds, ocds-record, csv, not 'xml'"):
        written("xml")


@pytest.mark.db
@pytest.mark.chain
def test_csv_export(runtime: Runtime, ledger: dict[str, str]) -> None:
    with runtime.session_factory() as session:
        out = io.StringIO(newline="")
        assert export.write_csv(out, session=session) == 5
        batch = session.scalars(select(Batch)).one()
    text = out.getvalue()
    assert text.splitlines()[0] == ",".join(export.CSV_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["hash"] for row in rows] == list(ledger.values())
    first = rows[0]
    assert first == {
        "order_number": "OCAM-2026-1556-7-0",
        "buyer_ruc": BUYER_RUC,
        "buyer_name": WITH_ITEMS["buyer"]["name"],
        "supplier_ruc": "10412742694",
        "supplier_name": "FACUNDO SALAS TELLY CESAR",
        "issued_at": "2026-01-31T09:57:50-05:00",  # as recorded, offset kept
        "currency": "PEN",
        "total": "5796.99",  # the recorded string, not a float
        "hash": ledger["OCAM-2026-1556-7-0"],
        "status": first["status"],
        "batch_id": str(batch.id),
        "tx_hash": batch.tx_hash,
        "chain_id": "31337",
        "contract": batch.contract,
    }
    assert first["status"] in ("anchored", "final")
    pending = rows[3]
    assert pending["order_number"] == PENDING_MINIMAL["order_number"]
    assert [pending[c] for c in ("status", "batch_id", "tx_hash", "chain_id", "contract")] == [
        "pending",
        "",
        "",
        "",
        "",
    ]
    with runtime.session_factory() as session:
        out = io.StringIO(newline="")
        assert export.write_csv(out, session=session, buyer=OTHER_BUYER_RUC) == 1
    assert OTHER_BUYER["order_number"] in out.getvalue()


@pytest.mark.db
@pytest.mark.chain
def test_round_trip_export_then_import_gives_the_same_orders(
    runtime: Runtime, ledger: dict[str, str]
) -> None:
    releases = releases_of(runtime)
    expected = [as_recorded(o) for o in ANCHORED + PENDING]
    # The one change the export makes: an RFC 3986 URL (same resource).
    expected[2]["documents"][0]["url"] = SPACED_URL.replace(" ", "%20")

    for package in (
        packages.release_package(releases, PACKAGE),
        packages.record_package(releases, PACKAGE),  # through compiledRelease
    ):
        # As a consumer reads it: JSON text, numbers parsed as floats.
        items = list(ocds_in.orders_from_ocds(json.loads(json.dumps(package))))
        assert [item.problem for item in items] == [None] * 5
        assert [item.order for item in items] == expected

    # Recorded again, the orders hash to the recorded records: identical content.
    package = packages.release_package(releases, PACKAGE)
    imported = [i.order for i in ocds_in.orders_from_ocds(package)]
    assert record(runtime, [o for o in imported if o is not None][:2], "exists") == [
        ledger[WITH_ITEMS["order_number"]],
        ledger[NO_ITEMS["order_number"]],
    ]
    assert record(runtime, [o for o in imported if o is not None][3:], "exists") == [
        ledger[PENDING_MINIMAL["order_number"]],
        ledger[PENDING_ITEMS["order_number"]],
    ]


# --- pure: releases, packages, writers -----------------------------------------------------


def release_of(data: dict[str, Any], status: str = "pending", **kwargs: Any) -> dict[str, Any]:
    recorded = PurchaseOrder.model_validate(data).to_record()
    digest = record_hash(recorded)
    return mapping.release_for(
        recorded,
        record_hash=digest,
        receipt_url=f"https://ancla.example/v1/receipts/{digest}",
        status=status,
        **kwargs,
    )


ANCHOR = Anchor(
    chain_id=31337,
    contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    batch_id=7,
    root="0x" + "11" * 32,
    leaf_count=3,
    tx_hash="0x" + "22" * 32,
    block_number=42,
    block_hash="0x" + "33" * 32,
    log_index=0,
    timestamp=1_770_000_000,
)


@pytest.mark.unit
def test_release_for_unit_values_and_status_rules() -> None:
    release = release_of(WITH_ITEMS, "final", anchor=ANCHOR)
    assert release["ancla"]["recordUrl"] == f"https://ancla.example/v1/records/{release['id']}"
    assert release["ancla"]["batchId"] == 7 and release["ancla"]["status"] == "final"
    assert_valid(packages.release_package([release], PACKAGE), "release-package-schema.json")

    with pytest.raises(ValueError, match="must not come with its anchor"):
        release_of(WITH_ITEMS, "pending", anchor=ANCHOR)
    with pytest.raises(ValueError, match="must come with its anchor"):
        release_of(WITH_ITEMS, "anchored")
    with pytest.raises(ValueError, match="status must be"):
        release_of(WITH_ITEMS, "sealed")
    with pytest.raises(ValueError, match="ocid prefix"):
        release_of(WITH_ITEMS, ocid_prefix="ocds-ancla00")  # a prefix is 6 characters
    assert release_of(WITH_ITEMS, ocid_prefix="ocds-213czf")["ocid"].startswith("ocds-213czf-")
    with pytest.raises(ValueError, match="form Ancla records"):
        mapping.release_for(
            {"schema": "ancla/purchase-order/1", "purchase_order": {**NO_ITEMS, "status": None}},
            record_hash="0x" + "00" * 32,
            receipt_url="https://ancla.example/v1/receipts/x",
            status="pending",
        )

    zero_hash = "0x" + "00" * 32
    with pytest.raises(ValueError, match="but the record hashes to 0x"):
        mapping.release_for(
            PurchaseOrder.model_validate(WITH_ITEMS).to_record(),
            record_hash=zero_hash,
            receipt_url=f"https://ancla.example/v1/receipts/{zero_hash}",
            status="pending",
        )

    number = mapping.ocds_number
    assert number("5796.99") == 5796.99 and repr(number("5796.99")) == "5796.99"
    assert number("1000.00") == 1000 and isinstance(number("1000.00"), int)
    assert repr(number("9999999999999.99")) == "9999999999999.99"
    assert repr(number("0.123456")) == "0.123456"
    assert mapping.ocds_datetime("2026-01-31 09:57:50-05:00") == "2026-01-31T09:57:50-05:00"
    assert mapping.ocds_datetime("2026-01-31T14:57:50Z") == "2026-01-31T14:57:50+00:00"


@pytest.mark.unit
def test_extension_schema_checks_the_proof() -> None:
    good = release_of(WITH_ITEMS, "anchored", anchor=ANCHOR)
    no_tx = copy.deepcopy(good)
    del no_tx["ancla"]["transactionHash"]
    bad_hash = copy.deepcopy(good)
    bad_hash["ancla"]["recordHash"] = "0xABC"
    bad_digest = copy.deepcopy(good)
    bad_digest["contracts"][0]["documents"] = [{"id": "1", "sha256": "not hex"}]
    for broken, where in (
        (no_tx, "releases/0/ancla"),
        (bad_hash, "releases/0/ancla/recordHash"),
        (bad_digest, "releases/0/contracts/0/documents/0/sha256"),
    ):
        package = packages.release_package([broken], PACKAGE)
        # The official schema lets extension fields through; the extension checks them.
        assert errors_of("release-package-schema.json", package, extended=False) == []
        errors = errors_of("release-package-schema.json", package, extended=True)
        assert len(errors) == 1 and errors[0].startswith(f"{where}:"), errors

    # The validator is not vacuous: a real package missing its publisher fails.
    paraguay = load_json(REAL / "paraguay-dncp" / "release-package_1.1-1.json")
    assert "'publisher' is a required property" in " ".join(
        errors_of("release-package-schema.json", paraguay, extended=False)
    )


@pytest.mark.unit
def test_extension_files() -> None:
    metadata = load_json(mapping.EXTENSION_DIR / "extension.json")
    assert set(metadata["name"]) == set(metadata["description"]) == {"en", "es"}
    assert metadata["compatibility"] == ["1.1"]
    assert metadata["schemas"] == ["release-schema.json"]
    served = mapping.extension_metadata(BASE_URL)
    assert served["documentationUrl"] == {
        "en": "https://ancla.example/ocds/extension/README.md",
        "es": "https://ancla.example/ocds/extension/README.md",
    }
    assert (mapping.EXTENSION_DIR / "README.md").is_file()
    patched = release_schema(extended=True)
    Draft4Validator.check_schema(patched)
    # omitWhenMerged beside a $ref would be lost: draft 4 ignores a $ref's siblings, and so
    # do the tools that dereference (jsonref, hence ocdsmerge), so the proof is inline.
    proof = patched["properties"]["ancla"]
    assert proof["omitWhenMerged"] is True and "$ref" not in proof
    assert proof["type"] == "object" and "recordHash" in proof["required"]
    assert ("ancla",) in packages.merge_rules() and "ancla" not in patched["required"]
    # The patch only adds: every official property is still there, unchanged.
    official = release_schema(extended=False)
    assert all(patched["properties"][key] == value for key, value in official["properties"].items())


@pytest.mark.unit
def test_writers_stream_one_release_at_a_time() -> None:
    releases = [release_of(order(i)) for i in range(3)]
    out = io.StringIO()

    def lazily() -> Iterator[dict[str, Any]]:
        for index, release in enumerate(releases):
            if index:
                # The previous release is already written when the next is asked for.
                assert releases[index - 1]["id"] in out.getvalue()
            yield release

    assert packages.write_release_package(out, lazily(), PACKAGE) == 3
    assert out.getvalue() == json.dumps(
        packages.release_package(releases, PACKAGE), ensure_ascii=False
    )

    out = io.StringIO()
    assert packages.write_record_package(out, iter(releases), PACKAGE) == 3
    assert out.getvalue() == json.dumps(
        packages.record_package(releases, PACKAGE), ensure_ascii=False
    )

    out = io.StringIO()
    with pytest.raises(packages.EmptyPackage):
        packages.write_release_package(out, iter([]), PACKAGE)
    assert out.getvalue() == ""  # nothing half-written
    with pytest.raises(packages.EmptyPackage):
        packages.release_package([], PACKAGE)
    with pytest.raises(ValueError, match="releases of one ocid are merged, not of 2"):
        packages.compiled_release(releases[:2])
    with pytest.raises(ValueError, match="no releases to merge"):
        packages.compiled_release([])


# --- import: real and fictional packages -------------------------------------------------------

REAL_PACKAGES = sorted(
    path.relative_to(VECTORS).as_posix()
    for path in [*REAL.rglob("*.json"), *FICTIONAL.rglob("*.json")]
)

# For each package, the first item reported: (pointer, fragments of its reason).
FIRST_PROBLEM = {
    "real/mexico-cdmx/release-package-1.json": (
        "/releases/0/contracts/0",
        [
            "buyer (/releases/0/buyer) identifier 'GDF9712054NA' has no scheme; expected PE-RUC",
            "supplier (/releases/0/awards/0/suppliers/0) identifier 'C&C021030KX2' has no scheme",
            "/releases/0/contracts/0/value has no tax breakdown",
        ],
    ),
    "real/mexico-cdmx/release-package-2.json": (
        "/releases/0/contracts/0",
        ["identifier 'GDF9712054NA' has no scheme", "identifier 'BSM971107ME6' has no scheme"],
    ),
    "real/mexico-compranet/record-package-1.json": (
        "/records/0/compiledRelease/contracts/0",
        [
            "buyer (/records/0/compiledRelease/parties/0) has no identifier",
            "supplier (/records/0/compiledRelease/parties/2) identifier scheme is"
            " 'Registro Federal de Contribuyentes de México', not PE-RUC",
        ],
    ),
    "real/mexico-compranet/record-package-2.json": (
        "/records/0/compiledRelease/contracts/0",
        ["buyer (/records/0/compiledRelease/parties/0) has no identifier"],
    ),
    "real/paraguay-dncp/release-package_1.1-2.json": (
        "/releases/0/contracts/0",
        [
            "no buyer: the release has no buyer field and no party with role buyer",
            "contract awardID '246807-adqusicion-guantes-otros-insumos-medicos' matches no"
            " award in /releases/0/awards",
            "/releases/0/contracts/0/items/0/classification needs both a scheme and an id",
        ],
    ),
    "real/paraguay-dncp/release-package_1.1-1.json": (
        "/releases/0",
        ["release has no contracts (tag ['compiled'])"],
    ),
    "real/paraguay-dncp/record-package_1.1.json": (
        "/records/0/compiledRelease",
        ["release has no contracts (tag ['compiled'])"],
    ),
    "real/chile-framework-examples/open_multiple_second_stage.json": (
        "/releases/0",
        ["release has no contracts (tag ['tender'])"],
    ),
    "fictional-sample-data/ocds-213czf-000-00001.json": (
        "/releases/0",
        ["release has no contracts (tag ['planning'])"],
    ),
    "fictional-sample-data/record-ocds-213czf-000-00001.json": (
        "/records/0/compiledRelease/contracts/0",
        [
            "buyer (/records/0/compiledRelease/parties/0) identifier scheme is 'GB-LAC',"
            " not PE-RUC",
            "supplier (/records/0/compiledRelease/parties/1) identifier scheme is 'GB-COH'",
        ],
    ),
}


def releases_read(package: dict[str, Any]) -> list[dict[str, Any]]:
    """The releases the importer reads: each release, or each record's compiled release."""
    if "releases" in package:
        return list(package["releases"])
    return [r["compiledRelease"] for r in package["records"]]


@pytest.mark.unit
@pytest.mark.parametrize("name", REAL_PACKAGES)
def test_real_packages_report_every_contract(name: str) -> None:
    package = load_json(VECTORS / name)
    items = list(ocds_in.orders_from_ocds(package))
    releases = releases_read(package)
    contracts = sum(len(r.get("contracts") or []) for r in releases)
    without = sum(1 for r in releases if not r.get("contracts"))
    contract_items = [i for i in items if re.search(r"/contracts/\d+$", i.pointer)]

    # Nothing silently dropped: every contract is mapped or reported, and every
    # release without contracts is reported too.
    assert len(contract_items) == contracts
    assert len(items) == contracts + without
    assert all((i.order is None) != (i.problem is None) for i in items)
    # None of these parties has a Peruvian RUC: all reported, each with its reason.
    assert [i.order for i in items] == [None] * len(items)
    reasons = ("not PE-RUC", "expected PE-RUC", "no buyer", "has no identifier")
    for item in contract_items:
        assert any(reason in (item.problem or "") for reason in reasons), item
    if name in FIRST_PROBLEM:
        pointer, fragments = FIRST_PROBLEM[name]
        assert items[0].pointer == pointer
        for fragment in fragments:
            assert fragment in (items[0].problem or ""), (fragment, items[0].problem)


# --- import: synthetic PE-RUC data, and the problems ------------------------------------------


def organization(ruc: str, name: str, roles: list[str], scheme: str = "PE-RUC") -> dict[str, Any]:
    return {
        "id": f"org-{ruc}",
        "name": name,
        "identifier": {"scheme": scheme, "id": ruc, "legalName": name},
        "roles": roles,
    }


def pe_release(**changes: Any) -> dict[str, Any]:
    """An OCDS release as another Peruvian publisher might write it (not Ancla's export)."""
    release: dict[str, Any] = {
        "ocid": "ocds-dgv273-seacev3-1234",
        "id": "seacev3-1234-contract",
        "date": "2026-01-30T19:19:03Z",
        "tag": ["contract"],
        "initiationType": "tender",
        "parties": [
            organization(OTHER_BUYER_RUC, "MUNICIPALIDAD PROVINCIAL DEL CUSCO", ["buyer"]),
            {
                # The RUC as an additional identifier; the main one from another list.
                "id": "org-supplier",
                "name": "INTISSUR PUNO E.I.R.L.",
                "identifier": {"scheme": "X-PE-RNP", "id": "S0012345"},
                "additionalIdentifiers": [{"scheme": "PE-RUC", "id": "20611694629"}],
                "roles": ["supplier"],
            },
        ],
        "buyer": {"id": f"org-{OTHER_BUYER_RUC}", "name": "MUNICIPALIDAD PROVINCIAL DEL CUSCO"},
        "tender": {"id": "1234", "procurementMethodDetails": "Gran Compra"},
        "awards": [
            {
                "id": "award-1",
                "suppliers": [{"id": "org-supplier", "name": "INTISSUR PUNO E.I.R.L."}],
            }
        ],
        "contracts": [
            {
                "id": "OCAM-2026-300684-2-0",
                "awardID": "award-1",
                "statusDetails": "ACEPTADA",
                "value": {
                    "amount": 205395.52,
                    "currency": "PEN",
                    "amountNet": 174064,
                    "amountGross": 205395.52,
                },
                "items": [
                    {
                        "id": "1",
                        "description": "ARROZ PILADO SUPERIOR X 50 KG",
                        "quantity": 1087,
                        "unit": {"name": "SACO", "value": {"amount": 160, "currency": "PEN"}},
                        "classification": {"scheme": "UNSPSC", "id": 50221101},
                    },
                    {
                        "id": "2",
                        "description": "ACEITE VEGETAL X 20 L",
                        "quantity": 1.0,
                        "unit": {"name": "BIDON", "value": {"amount": 144.0}},
                    },
                ],
            }
        ],
        "relatedProcesses": [
            {
                "id": "1",
                "relationship": ["framework"],
                "title": "CEREALES, ACEITE, AZUCARES Y MENESTRAS",
            }
        ],
    }
    release.update(changes)
    return release


PE_ORDER = {
    "order_number": "OCAM-2026-300684-2-0",
    "buyer": {"ruc": OTHER_BUYER_RUC, "name": "MUNICIPALIDAD PROVINCIAL DEL CUSCO"},
    "supplier": {"ruc": "20611694629", "name": "INTISSUR PUNO E.I.R.L."},
    "issued_at": "2026-01-30T19:19:03Z",  # no dateSigned: the release date
    "currency": "PEN",
    "subtotal": "174064.00",
    "tax": "31331.52",
    "total": "205395.52",
    "framework_agreement": "CEREALES, ACEITE, AZUCARES Y MENESTRAS",
    "procurement_method": "Gran Compra",
    "status": "ACEPTADA",
    "items": [
        {
            "description": "ARROZ PILADO SUPERIOR X 50 KG",
            "quantity": "1087",
            "unit": "SACO",
            "unit_price": "160.00",
            "classification": {"scheme": "UNSPSC", "id": "50221101"},
        },
        {
            "description": "ACEITE VEGETAL X 20 L",
            "quantity": "1",
            "unit": "BIDON",
            "unit_price": "144.00",
        },
    ],
}


def contract_with(**changes: Any) -> dict[str, Any]:
    contract: dict[str, Any] = copy.deepcopy(pe_release()["contracts"][0])
    contract.update(changes)
    return contract


@pytest.mark.unit
def test_synthetic_peruvian_package_maps_to_valid_orders() -> None:
    package = {
        "uri": "https://example.gob.pe/ocds/1.json",
        "version": "1.1",
        "publishedDate": "2026-02-01T08:00:14-05:00",
        "publisher": {"name": "OSCE"},
        "releases": [pe_release()],
    }
    (item,) = ocds_in.orders_from_ocds(package)
    assert item == ocds_in.OcdsItem("/releases/0/contracts/0", PE_ORDER, None)
    assert PurchaseOrder.model_validate(item.order).to_record()["purchase_order"] == PE_ORDER

    # A record package: compiledRelease if present, else the last embedded release.
    record_pkg = {"records": [{"ocid": "x", "releases": [pe_release(contracts=[]), pe_release()]}]}
    assert [(i.pointer, i.order) for i in ocds_in.orders_from_ocds(record_pkg)] == [
        ("/records/0/releases/1/contracts/0", PE_ORDER)
    ]
    compiled_pkg = {"records": [{"ocid": "x", "releases": [], "compiledRelease": pe_release()}]}
    assert [i.order for i in ocds_in.orders_from_ocds(compiled_pkg)] == [PE_ORDER]

    # OCDS 1.0 style: the buyer and supplier are whole organizations, not references.
    inline = pe_release(parties=[], buyer=organization(OTHER_BUYER_RUC, "MPC", ["buyer"]))
    inline["awards"][0]["suppliers"] = [organization("20611694629", "INTISSUR", ["supplier"])]
    (item,) = ocds_in.orders_from_ocds({"releases": [inline]})
    assert item.order is not None
    assert (item.order["buyer"]["name"], item.order["supplier"]["ruc"]) == ("MPC", "20611694629")

    # No buyer field: the one party with role buyer.
    assert problem_of(pe_release(buyer=None)) == (
        "buyer (/releases/0/buyer) is null, not an organization reference"
    )
    no_field = pe_release()
    del no_field["buyer"]
    (item,) = ocds_in.orders_from_ocds({"releases": [no_field]})
    assert item.order == PE_ORDER


def problem_of(release: dict[str, Any], **kwargs: Any) -> str:
    (item,) = ocds_in.orders_from_ocds({"releases": [release]}, **kwargs)
    assert item.order is None and item.problem is not None
    return item.problem


@pytest.mark.unit
def test_what_cannot_be_mapped_is_reported_with_its_reason() -> None:
    mx_buyer = pe_release()
    mx_buyer["parties"][0]["identifier"] = {"scheme": "MX-RFC", "id": "GDF9712054NA"}
    assert problem_of(mx_buyer) == (
        "buyer (/releases/0/parties/0) identifier scheme is 'MX-RFC', not PE-RUC"
    )

    bad_ruc = pe_release()
    bad_ruc["parties"][0]["identifier"]["id"] = "20177217044"
    assert problem_of(bad_ruc) == (
        "buyer (/releases/0/parties/0) PE-RUC identifier '20177217044' is not a valid RUC:"
        " check digit is 4, expected 3"
    )

    two_suppliers = pe_release()
    two_suppliers["awards"][0]["suppliers"].append({"id": "org-x", "name": "X"})
    assert problem_of(two_suppliers) == (
        "award /releases/0/awards/0 has 2 suppliers; a purchase order has exactly one"
    )

    assert problem_of(pe_release(awards=[])) == (
        "contract awardID 'award-1' matches no award in /releases/0/awards"
    )

    three_decimals = pe_release(
        contracts=[contract_with(value={"amount": 10.005, "currency": "PEN"})]
    )
    assert problem_of(three_decimals, missing_tax="zero") == (
        "/releases/0/contracts/0/value/amount 10.005 has more than 2 decimals"
    )

    untaxed = pe_release(
        contracts=[contract_with(value={"amount": 100, "currency": "PEN"}, items=[])]
    )
    assert problem_of(untaxed) == (
        "/releases/0/contracts/0/value has no tax breakdown (amountNet, amountGross):"
        " the order's subtotal and IGV are unknown"
    )
    (item,) = ocds_in.orders_from_ocds({"releases": [untaxed]}, missing_tax="zero")
    assert item.order is not None
    assert (item.order["subtotal"], item.order["tax"], item.order["total"]) == (
        "100.00",
        "0.00",
        "100.00",
    )

    wrong_gross = pe_release(
        contracts=[
            contract_with(
                value={"amount": 118, "currency": "PEN", "amountNet": 100, "amountGross": 120}
            )
        ]
    )
    assert problem_of(wrong_gross) == (
        "/releases/0/contracts/0/value/amountGross 120 differs from amount 118"
    )

    # Mapped, then refused by the PurchaseOrder rules: reported with its messages.
    mismatch = pe_release(
        contracts=[
            contract_with(
                items=[
                    {
                        "id": "1",
                        "description": "X",
                        "quantity": 1,
                        "unit": {"name": "UND", "value": {"amount": 1}},
                    }
                ]
            )
        ]
    )
    assert problem_of(mismatch).startswith("not a valid purchase order: (order): the items'")

    no_price = pe_release(
        contracts=[
            contract_with(
                items=[{"id": "1", "description": "X", "quantity": 1, "unit": {"name": "UND"}}]
            )
        ]
    )
    assert problem_of(no_price) == (
        "/releases/0/contracts/0/items/0/unit has no value (the unit price)"
    )

    undocumented = pe_release(contracts=[contract_with(documents=[{"id": "1", "title": "OC"}])])
    assert problem_of(undocumented) == "/releases/0/contracts/0/documents/0 needs a title and a url"

    two_frameworks = pe_release()
    two_frameworks["relatedProcesses"].append(
        {"id": "2", "relationship": ["framework"], "title": "OTRO ACUERDO"}
    )
    assert problem_of(two_frameworks) == (
        "relatedProcesses (/releases/0/relatedProcesses) links 2 framework agreements;"
        " an order is under at most one"
    )

    linked = {"records": [{"ocid": "x", "releases": [{"url": "https://x.example/p.json#1"}]}]}
    assert [tuple(i) for i in ocds_in.orders_from_ocds(linked)] == [
        (
            "/records/0",
            None,
            "record has no compiledRelease and links its releases (url) instead of embedding"
            " them; import the release package they are published in",
        )
    ]
    assert list(ocds_in.orders_from_ocds([])) == [
        ocds_in.OcdsItem("", None, "an OCDS package is a JSON object, not an array")
    ]
    # Kinds are named as app.records.vocabulary.json_kind names them, also for a
    # Python value that json.loads never returns (a tuple was named "tuple").
    assert list(ocds_in.orders_from_ocds(())) == [
        ocds_in.OcdsItem("", None, "an OCDS package is a JSON object, not an array")
    ]
    assert list(ocds_in.orders_from_ocds({"uri": "x"}))[0].pointer == ""


def _set(path: str, value: Any) -> Any:
    """A change to pe_release(): set the value at a /-separated path (None deletes it)."""

    def change(release: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = release
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


C = "contracts/0"
MALFORMED = [
    (_set("contracts", "x"), "/releases/0", "contracts is a string, not an array"),
    (_set(C, 7), "/releases/0/contracts/0", "contract is a number, not an object"),
    (_set(f"{C}/awardID", None), None, "contract has no awardID, so no supplier"),
    (_set(f"{C}/id", True), None, "contract has no id (the order number)"),
    (_set(f"{C}/value", None), None, "contract has no value (/releases/0/contracts/0/value)"),
    (_set(f"{C}/value/currency", None), None, "/value/currency is missing"),
    (_set(f"{C}/value/amount", "205395.52"), None, "value/amount must be a number, not a string"),
    (_set(f"{C}/value/amount", -1), None, "value/amount is negative (-1)"),
    (_set(f"{C}/value/amountNet", 300000), None, "amountNet 300000 exceeds amountGross"),
    (_set(f"{C}/items", {}), None, "/items is an object, not an array"),
    (_set(f"{C}/items/0", "x"), None, "/items/0 is a string, not an item"),
    (_set(f"{C}/items/0/description", None), None, "/items/0 has no description"),
    (_set(f"{C}/items/0/quantity", None), None, "/items/0/quantity must be a number, not null"),
    (_set(f"{C}/items/0/unit", {"value": {"amount": 1}}), None, "/items/0/unit has no name"),
    (
        _set(f"{C}/items/0/unit/value/currency", "USD"),
        None,
        "/items/0/unit/value/currency 'USD' differs from the contract's 'PEN'",
    ),
    (_set(f"{C}/items/0/classification", {"scheme": "UNSPSC"}), None, "needs both a scheme"),
    (_set(f"{C}/documents", "x"), None, "/documents is a string, not an array"),
    (_set(f"{C}/documents", [3]), None, "/documents/0 is a number, not a document"),
    (_set("date", None), None, "contract has no dateSigned and the release no date"),
    (_set("buyer", {"name": "X"}), None, "buyer (/releases/0/buyer) has neither an id nor"),
    (_set("buyer/id", "nobody"), None, "buyer (/releases/0/buyer) id 'nobody' matches no entry"),
    (
        _set(
            "parties/0",
            {
                "id": f"org-{OTHER_BUYER_RUC}",
                "identifier": {"scheme": "PE-RUC", "id": OTHER_BUYER_RUC},
            },
        ),
        None,
        "buyer (/releases/0/parties/0) has no name",
    ),
    (_set("parties/0/identifier", None), None, "buyer (/releases/0/parties/0) has no identifier"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("change", "pointer", "fragment"), MALFORMED)
def test_malformed_input_is_reported(change: Any, pointer: str | None, fragment: str) -> None:
    release = pe_release()
    change(release)
    items = list(ocds_in.orders_from_ocds({"releases": [release]}))
    assert len(items) == 1 and items[0].order is None
    assert items[0].pointer == (pointer or "/releases/0/contracts/0")
    assert fragment in (items[0].problem or ""), items[0].problem


@pytest.mark.unit
def test_buyer_from_roles_and_malformed_packages() -> None:
    two_buyers = pe_release()
    del two_buyers["buyer"]
    two_buyers["parties"].append(organization("20600027426", "MINISTERIO PÚBLICO", ["buyer"]))
    assert problem_of(two_buyers) == ("2 parties have role buyer and no buyer field says which one")
    for package, pointer, problem in (
        ({"releases": ["x"]}, "/releases/0", "release is a string, not an object"),
        ({"records": [1]}, "/records/0", "record is a number, not an object"),
        ({"records": [{"ocid": "x"}]}, "/records/0", "record has no compiledRelease and no"),
        ({"releases": [], "records": []}, "", "not an OCDS release package or record package"),
    ):
        (item,) = ocds_in.orders_from_ocds(package)
        assert (item.pointer, item.order) == (pointer, None)
        assert (item.problem or "").startswith(problem), item


def test_a_package_needs_an_aware_publication_date() -> None:
    # publishedDate is an OCDS date-time with an offset; a naive one would be guessed.
    with pytest.raises(ValueError, match="published_date must be an aware datetime"):
        packages.PackageInfo(
            uri=PACKAGE.uri,
            published_date=datetime(2026, 2, 1, 8, 0, 14),  # noqa: DTZ001 - the point
            publisher_name="Ancla (tests)",
            extension_url=PACKAGE.extension_url,
        )
