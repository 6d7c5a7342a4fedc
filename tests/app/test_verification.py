"""The auditor's module (app/verification.py) on its own: streamed file hashing in bounded
memory, argument checks, and an import that brings in no database or service code."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from app.verification import (
    CHUNK_SIZE,
    CannotCheck,
    check_buyer_ruc,
    check_order_number,
    check_url,
    file_sha256,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [0, 1, 6, 7, 8, 13, 14, 15, 1000])
def test_file_sha256_is_sha256_of_the_bytes_across_chunk_boundaries(
    tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    seen: list[int] = []
    assert file_sha256(path, chunk_size=7, progress=seen.append) == (
        hashlib.sha256(data).hexdigest(),
        size,
    )
    assert sum(seen) == size and all(0 < n <= 7 for n in seen)
    assert file_sha256(path) == (hashlib.sha256(data).hexdigest(), size)


def test_file_sha256_streams_a_large_file_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "session-recording.mp4"
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for i in range(48):
            handle.write(block[i:] + block[:i])
    size = path.stat().st_size
    assert size == 48 << 20
    with path.open("rb") as handle:
        expected = hashlib.file_digest(handle, "sha256").hexdigest()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        digest = file_sha256(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == (expected, size)
    # One reused buffer of CHUNK_SIZE bytes, and little else: never the file's 48 MiB.
    assert peak < CHUNK_SIZE + (256 << 10), peak


def test_file_sha256_of_an_unreadable_path_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing")
    with pytest.raises(IsADirectoryError):
        file_sha256(tmp_path)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_buyer_ruc, "2060002742", "BUYER_RUC '2060002742' is not a RUC: must be 11 digits"),
        (check_buyer_ruc, "20600027427", "is not a RUC: check digit is 7, expected 6"),
        (check_buyer_ruc, "30600027426", "must start with 10, 15, 17 or 20, not 30"),
        (check_order_number, "", "ORDER_NUMBER '' is not an order number: must be 1 to 64"),
        (check_order_number, "OC?x=1", "must start with a letter or digit and hold only"),
    ],
)
def test_arguments_are_checked_up_front(check: object, value: str, message: str) -> None:
    with pytest.raises(CannotCheck, match=message.replace("?", r"\?")):
        check(value)  # type: ignore[operator]


def test_good_arguments_pass() -> None:
    assert check_buyer_ruc("20600027426") == "20600027426"
    assert check_order_number("OCAM-2026-1556-7-0") == "OCAM-2026-1556-7-0"
    assert check_url("https://ancla.example/", what="--api") == "https://ancla.example/"
    assert check_url("http://127.0.0.1:8545", what="--rpc") == "http://127.0.0.1:8545"


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8000", "ancla.example", "ftp://ancla.example", "http://", "http://[::1"]
)
def test_urls_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(CannotCheck, match=r"--api must be an http:// or https:// URL, not"):
        check_url(url, what="--api")


def test_the_auditor_path_imports_no_database_and_no_service() -> None:
    probe = (
        "import sys, app.verification\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'fastapi', 'starlette', 'alembic', 'psycopg', 'uvicorn') "
        "or m.startswith(('app.db', 'app.models', 'app.services', 'app.api', 'app.settings')))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
