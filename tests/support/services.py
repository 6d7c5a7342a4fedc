"""Drive the services directly (no HTTP) in worker and recovery tests."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from sqlalchemy import func, select

from app.db import SessionFactory
from app.models import Agency, Batch, PendingRecord
from app.records.purchase_order import SCHEMA, PurchaseOrder
from app.services.agencies import add_agency
from app.services.ingest import record_items
from app.settings import Settings
from tests.support.orders import BUYER_RUC, order


def ensure_agency(session_factory: SessionFactory) -> Agency:
    with session_factory() as session:
        agency = session.scalar(select(Agency).where(Agency.ruc == BUYER_RUC))
        if agency is None:
            agency = add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").agency
        return agency


def ingest(session_factory: SessionFactory, numbers: range) -> list[str]:
    agency = ensure_agency(session_factory)
    with session_factory() as session:
        results = record_items(
            session=session,
            agency=agency,
            schema=SCHEMA,
            items=[PurchaseOrder.model_validate(order(i)) for i in numbers],
        )
    assert all(r.outcome == "created" for r in results), results
    return [r.hash for r in results if r.hash]


def counts(session_factory: SessionFactory) -> dict[str, int]:
    with session_factory() as session:
        rows = session.execute(select(Batch.status, func.count()).group_by(Batch.status))
        pending = session.scalar(select(func.count()).select_from(PendingRecord))
    return {**dict(rows.all()), "pending_records": pending or 0}


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment an `ancla` subprocess needs to use the same settings."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ANCLA_ENVIRONMENT": settings.environment,
        "ANCLA_DATABASE_URL": settings.database_url,
        "ANCLA_RPC_URL": settings.rpc_url,
        "ANCLA_CONTRACT_ADDRESS": settings.contract_address or "",
        "ANCLA_SIGNER_KEY": settings.signer_key.get_secret_value() if settings.signer_key else "",
        "ANCLA_BATCH_MAX_SIZE": str(settings.batch_max_size),
        "ANCLA_BATCH_MAX_AGE_SECONDS": str(settings.batch_max_age_seconds),
        "ANCLA_CONFIRMATIONS": str(settings.confirmations),
    }
    env.update(extra)
    return env


def ancla(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def spawn_ancla(*args: str, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def audit(runtime: Any, scope: Any = None, *, window: float = 3600) -> Any:
    """A full `ancla verify` audit of ``runtime``'s ledger against its chain."""
    from datetime import timedelta

    from app.services.audit import Auditor

    registry = runtime.registry()
    assert registry is not None
    return Auditor(
        session_factory=runtime.session_factory,
        client=runtime.client,
        registry=registry,
        confirmations=1,
        pending_window=timedelta(seconds=window),
    ).run(scope)
