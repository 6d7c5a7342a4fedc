"""Readiness: can this process serve and anchor? (``GET /readyz``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.db import SessionFactory
from app.models import utcnow
from app.services.anchoring import oldest_unanchored
from ledger.chain import ChainClient, Registry
from ledger.errors import LedgerError


def readiness(
    *, session_factory: SessionFactory, client: ChainClient, registry: Registry | None
) -> tuple[bool, dict[str, Any]]:
    """(ready?, the checks): the database answers, the chain answers and holds the registry."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        with session_factory() as session:
            session.execute(text("SELECT 1"))
            oldest = oldest_unanchored(session=session)
        checks["database"] = {"ok": True}
        checks["oldest_unanchored_age_seconds"] = (
            None if oldest is None else round((utcnow() - oldest).total_seconds(), 3)
        )
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said plainly
        ready = False
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        head = client.head()
        contract_ok = registry is not None and len(client.code_at(registry.address)) > 0
        checks["chain"] = {
            "ok": contract_ok,
            "chain_id": client.chain_id,
            "head": head,
            "contract": registry.address if registry else None,
        }
        if not contract_ok:
            checks["chain"]["error"] = "no AnchorRegistry code at the configured address"
            ready = False
    except LedgerError as exc:
        ready = False
        checks["chain"] = {"ok": False, "error": str(exc)}
    return ready, checks
