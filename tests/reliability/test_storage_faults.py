"""Database faults produced for real: PostgreSQL going away behind a TCP proxy, a SQLite
disk that fills up, a SQLite file system remounted read-only. Requests fail with a 503
problem+json, nothing is half-written, and the service recovers without a restart."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.cli import upgrade_database
from app.db import dispose_engine
from app.main import create_app
from app.models import Batch, BatchEntry, PendingRecord, Record
from app.runtime import Runtime
from app.services.agencies import add_agency
from tests.support.orders import BUYER_RUC, order
from tests.support.proxy import FaultyProxy
from tests.support.services import audit

pytestmark = [pytest.mark.reliability, pytest.mark.db, pytest.mark.chain]


def agency_headers(runtime: Runtime) -> dict[str, str]:
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key
    return {"Authorization": f"Bearer {key}"}


def record_count(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Record)) or 0


def assert_503(response: Any, detail: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]
    assert response.headers["retry-after"] == "5"


@pytest.mark.postgresql_only
def test_postgresql_outage_is_503_and_recovers(database_url: str, make_settings: Any) -> None:
    url = make_url(database_url)
    proxy = FaultyProxy(url.host or "127.0.0.1", url.port or 5432)
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    runtime = Runtime.create(make_settings(database_url=through_proxy))
    try:
        headers = agency_headers(runtime)
        with TestClient(create_app(runtime=runtime)) as client:
            assert (
                client.post("/v1/purchase-orders", json=order(1), headers=headers).status_code
                == 202
            )
            proxy.set_mode("down")
            bulk = {"purchase_orders": [order(i) for i in range(10, 60)]}
            assert_503(
                client.post("/v1/purchase-orders/bulk", json=bulk, headers=headers),
                "the database is unavailable",
            )
            assert_503(client.get("/v1/purchase-orders"), "the database is unavailable")
            proxy.set_mode("up")
            # No restart: the pool notices dead connections and opens new ones.
            assert (
                client.post("/v1/purchase-orders", json=order(2), headers=headers).status_code
                == 202
            )
            assert record_count(runtime) == 2  # nothing of the failed bulk request
            again = client.post("/v1/purchase-orders/bulk", json=bulk, headers=headers)
            assert again.json()["summary"] == {"created": 50}
        runtime.make_worker().tick(force_seal=True)
        assert audit(runtime).ok
    finally:
        runtime.stop()
        proxy.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_sqlite_disk_full_then_freed(tiny_disk: Path, make_settings: Any) -> None:
    url = f"sqlite:///{tiny_disk}/ancla.db"
    upgrade_database(url)
    runtime = Runtime.create(make_settings(database_url=url, batch_max_size=100))
    try:
        headers = agency_headers(runtime)
        with TestClient(create_app(runtime=runtime)) as client:
            accepted = 0
            filler = tiny_disk / "filler"
            filler.write_bytes(b"\0" * (2 * 1024 * 1024))
            full = None
            for start in range(0, 2000, 100):
                body = {"purchase_orders": [order(i) for i in range(start, start + 100)]}
                response = client.post("/v1/purchase-orders/bulk", json=body, headers=headers)
                if response.status_code != 200:
                    full = response
                    break
                accepted += 100
            assert full is not None, "the disk never filled up"
            assert_503(full, "the database's disk is full")
            assert record_count(runtime) == accepted  # the failed request left nothing
            # A seal that hits the full disk fails as a whole: the batches sealed
            # before it are complete, and every record is in one of them or queued.
            with pytest.raises(OperationalError, match="disk is full"):
                runtime.make_worker().tick(force_seal=True)
            with runtime.session_factory() as session:
                sealed = session.scalar(select(func.coalesce(func.sum(Batch.size), 0)))
                entries = session.scalar(select(func.count()).select_from(BatchEntry))
                queued = session.scalar(select(func.count()).select_from(PendingRecord))
            assert sealed is not None and sealed < accepted
            assert (entries, entries + (queued or 0)) == (sealed, accepted)
            filler.unlink()
            response = client.post("/v1/purchase-orders/bulk", json=body, headers=headers)
            assert response.status_code == 200 and response.json()["summary"] == {"created": 100}
        worker = runtime.make_worker()
        worker.tick(force_seal=True)
        with runtime.session_factory() as session:
            sizes = session.scalars(select(Batch.size)).all()
        assert sum(sizes) == accepted + 100
        assert audit(runtime).ok
    finally:
        runtime.stop()


def test_sqlite_read_only_then_writable(tiny_disk: Path, make_settings: Any) -> None:
    url = f"sqlite:///{tiny_disk}/ancla.db"
    upgrade_database(url)
    runtime = Runtime.create(make_settings(database_url=url))
    try:
        headers = agency_headers(runtime)
        with TestClient(create_app(runtime=runtime)) as client:
            assert (
                client.post("/v1/purchase-orders", json=order(1), headers=headers).status_code
                == 202
            )
            # Every handle on the file closed (the pool's and the WAL
            # checkpointer's), or the kernel refuses to remount: "busy".
            dispose_engine(runtime.engine)
            subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
            try:
                assert_503(
                    client.post("/v1/purchase-orders", json=order(2), headers=headers),
                    "read-only",
                )
            finally:
                subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
            dispose_engine(runtime.engine)
            assert (
                client.post("/v1/purchase-orders", json=order(2), headers=headers).status_code
                == 202
            )
            assert record_count(runtime) == 2
        runtime.make_worker().tick(force_seal=True)
        assert audit(runtime).ok
    finally:
        runtime.stop()


def _pg_cluster() -> list[str] | None:
    """The pg_ctlcluster arguments of the local PostgreSQL, if this machine runs one."""
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").is_dir() else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main"]


@pytest.mark.postgresql_only
def test_postgresql_server_restarted_while_serving(database_url: str, make_settings: Any) -> None:
    """The real server stopped and started again (not a proxy): 503 while it is down,
    nothing half-written, and the same process serves again once it is back."""
    cluster = _pg_cluster()
    host = make_url(database_url).host
    if cluster is None or host not in ("127.0.0.1", "localhost"):
        pytest.skip("needs the machine's own PostgreSQL (pg_ctlcluster)")
    runtime = Runtime.create(make_settings())
    try:
        headers = agency_headers(runtime)
        with TestClient(create_app(runtime=runtime)) as client:
            assert (
                client.post("/v1/purchase-orders", json=order(1), headers=headers).status_code
                == 202
            )
            subprocess.run([*cluster, "stop", "--mode", "fast"], check=True)
            try:
                bulk = {"purchase_orders": [order(i) for i in range(10, 40)]}
                assert_503(
                    client.post("/v1/purchase-orders/bulk", json=bulk, headers=headers),
                    "the database is unavailable",
                )
            finally:
                subprocess.run([*cluster, "start"], check=True)
            assert (
                client.post("/v1/purchase-orders", json=order(2), headers=headers).status_code
                == 202
            )
            assert record_count(runtime) == 2
        runtime.make_worker().tick(force_seal=True)
        assert audit(runtime).ok
    finally:
        runtime.stop()
