"""`ancla import` and `ancla export`, and the open-data routes, end to end."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.runtime import Runtime
from tests.app.test_ocds import assert_valid
from tests.support.services import ancla, settings_env

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.chain]

IMPORTS = Path(__file__).parents[1] / "vectors" / "import"
REAL_OCDS = Path(__file__).parents[1] / "vectors" / "ocds" / "real"


def run_json(*args: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = ancla(*args, "--json", env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_import_perucompras_report_twice(runtime: Runtime, tmp_path: Path) -> None:
    env = settings_env(runtime.settings)
    report = tmp_path / "ReportePCBienes202602.csv"
    shutil.copy(IMPORTS / "ReportePCBienes202602.csv", report)
    code, first = run_json("import", str(report), env=env)
    assert (code, first["format"], first["created"], first["invalid"]) == (
        0,
        "perucompras-csv",
        2,
        0,
    )
    code, again = run_json("import", str(report), env=env)
    assert (code, again["created"], again["existing"]) == (0, 0, 2)
    human = ancla("import", str(report), env=env)
    assert (
        "2 rows: 0 recorded, 0 status changes appended, 2 already recorded, 0 conflicts, "
        "0 invalid" in human.stdout
    )


def test_import_a_later_report_appends_the_change_of_state(
    runtime: Runtime, tmp_path: Path
) -> None:
    from app.main import create_app

    env = settings_env(runtime.settings)
    code, first = run_json("import", str(IMPORTS / "ReportePCBienes202602.csv"), env=env)
    assert (code, first["created"]) == (0, 2)
    later = tmp_path / "ReportePCBienes202603.csv"
    shutil.copy(IMPORTS / "ReportePCBienes202603.csv", later)
    code, result = run_json("import", str(later), env=env)
    # One order delivered (appended), one with other amounts (reported, exit 1).
    assert code == 1
    assert {k: result[k] for k in ("rows", "created", "status_events", "existing")} == {
        "rows": 2,
        "created": 0,
        "status_events": 1,
        "existing": 0,
    }
    (problem,) = result["problems"]
    assert (problem["line"], problem["kind"]) == (3, "conflict")
    assert "OCAM-2026-300684-2-0" in problem["reason"]
    assert "differs from the recorded order" in problem["reason"]
    assert problem["reason"].split(" in: ")[1].startswith("subtotal, tax, total;")

    with TestClient(create_app(runtime=runtime)) as client:
        view = client.get("/v1/purchase-orders/20600027426/OCAM-2026-1556-7-0").json()
        assert [entry["type"] for entry in view["history"]] == ["issued", "status"]
        assert view["current"]["last_status"] == "ENTREGADA"
        assert view["purchase_order"]["status"] == "ACEPTADA"
        event = client.get(view["history"][1]["record_url"]).json()
        assert event["prev"] == view["history"][0]["hash"]
        assert event["event"]["occurred_at"] == "2026-02-12T16:41:05-05:00"
        assert event["event"]["documents"][0]["title"] == "Documento de estado"
        other = client.get("/v1/purchase-orders/20177217043/OCAM-2026-300684-2-0").json()
        assert [entry["type"] for entry in other["history"]] == ["issued"]

    # The same later report again: the change is already recorded.
    human = ancla("import", str(later), env=env)
    assert human.returncode == 1
    assert (
        "2 rows: 0 recorded, 0 status changes appended, 1 already recorded, 1 conflicts, "
        "0 invalid" in human.stdout
    )
    assert "line 3: conflict: order OCAM-2026-300684-2-0" in human.stderr
    with TestClient(create_app(runtime=runtime)) as client:
        view = client.get("/v1/purchase-orders/20600027426/OCAM-2026-1556-7-0").json()
        assert len(view["history"]) == 2


def test_import_event_lines(runtime: Runtime, tmp_path: Path) -> None:
    env = settings_env(runtime.settings)
    run_json("import", str(IMPORTS / "ReportePCBienes202602.csv"), env=env)
    code, result = run_json("import", str(IMPORTS / "events.jsonl"), env=env)
    assert (code, result["format"], result["created"]) == (1, "events-jsonl", 2)
    assert [(p["line"], p["kind"]) for p in result["problems"]] == [
        (3, "conflict"),
        (4, "not_found"),
        (5, "invalid"),
    ]
    assert "is not the head" in result["problems"][0]["reason"]
    # Chosen by --format when the name says nothing; what is recorded exists.
    copy = tmp_path / "events.txt"
    shutil.copy(IMPORTS / "events.jsonl", copy)
    human = ancla("import", str(copy), "--format", "events-jsonl", env=env)
    assert human.returncode == 1
    assert (
        "5 rows: 0 recorded, 0 status changes appended, 2 already recorded, 1 conflicts, "
        "1 of unknown orders, 1 invalid" in human.stdout
    )
    assert "line 4: not_found: order OCAM-2026-1556-99-0" in human.stderr


def test_import_reports_bad_rows_and_keeps_the_good(runtime: Runtime) -> None:
    env = settings_env(runtime.settings)
    code, result = run_json("import", str(IMPORTS / "ReportePCBienes202602-bad.csv"), env=env)
    assert code == 1
    assert result["created"] == 3
    assert result["invalid"] == len(result["problems"]) > 0
    assert all(p["line"] >= 2 and p["reason"] for p in result["problems"])


def test_import_real_ocds_package_reports_what_cannot_be_mapped(runtime: Runtime) -> None:
    env = settings_env(runtime.settings)
    package = REAL_OCDS / "paraguay-dncp" / "release-package_1.1-2.json"
    code, result = run_json("import", str(package), env=env)
    assert code == 1 and result["format"] == "ocds" and result["created"] == 0
    assert result["problems"] and all(p["pointer"].startswith("/") for p in result["problems"])


def test_import_refuses_unusable_input(runtime: Runtime, tmp_path: Path) -> None:
    env = settings_env(runtime.settings)
    missing = ancla("import", str(tmp_path / "nope.csv"), env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    odd = tmp_path / "data.bin"
    odd.write_bytes(b"\x00\x01")
    unknown = ancla("import", str(odd), env=env)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    wrong = ancla("import", str(odd), "--format", "xml", env=env)
    assert wrong.returncode == 2 and "--format must be" in wrong.stderr
    broken = tmp_path / "package.json"
    broken.write_bytes(b'{"releases": [1, }')
    refused = ancla("import", str(broken), env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"cannot import {broken}: invalid JSON: Expecting value" in refused.stderr


def test_export_ocds_and_csv(runtime: Runtime, tmp_path: Path) -> None:
    from app.main import create_app

    env = settings_env(runtime.settings)
    empty = ancla("export", "--format", "ocds", env=env)
    assert empty.returncode == 1 and "cannot be empty" in empty.stderr
    ancla("import", str(IMPORTS / "ReportePCBienes202602.csv"), env=env)
    runtime.make_worker().tick(force_seal=True)

    out = tmp_path / "releases.json"
    written = ancla("export", "--format", "ocds", "--output", str(out), env=env)
    assert written.returncode == 0, written.stderr
    package = json.loads(out.read_text())
    assert_valid(package, "release-package-schema.json")
    assert len(package["releases"]) == 2
    assert {r["ancla"]["status"] for r in package["releases"]} == {"final"}

    records = ancla("export", "--format", "ocds-record", env=env)
    assert_valid(json.loads(records.stdout), "record-package-schema.json")

    rows = list(csv.DictReader(io.StringIO(ancla("export", "--format", "csv", env=env).stdout)))
    assert sorted(r["order_number"] for r in rows) == ["OCAM-2026-1556-7-0", "OCAM-2026-300684-2-0"]
    assert all(r["hash"].startswith("0x") and r["tx_hash"].startswith("0x") for r in rows)

    with TestClient(create_app(runtime=runtime)) as client:
        served = client.get("/v1/export/ocds")
        assert served.status_code == 200
        assert_valid(served.json(), "release-package-schema.json")
        extension_url = served.json()["extensions"][0]
        assert extension_url == "http://testserver/ocds/extension/extension.json"
        extension = client.get("/ocds/extension/extension.json").json()
        assert extension["compatibility"] == ["1.1"]
        assert client.get("/ocds/extension/release-schema.json").status_code == 200
        assert client.get("/ocds/extension/secrets.txt").status_code == 404
        assert client.get("/v1/export/ocds", params={"buyer": "20100070970"}).status_code == 404
        assert client.get("/v1/export/ocds", params={"package": "record"}).status_code == 200
        assert client.get("/v1/export/csv").text.count("\n") == 3
