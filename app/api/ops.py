"""Operations: liveness, readiness (database and chain), Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import RuntimeDep
from app.models import utcnow
from app.services.anchoring import oldest_unanchored
from ledger.errors import LedgerError

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database and chain reachable")
def readyz(runtime: RuntimeDep) -> Response:
    checks: dict[str, Any] = {}
    ready = True
    try:
        with runtime.session_factory() as session:
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
        head = runtime.client.head()
        registry = runtime.registry()
        contract_ok = registry is not None and len(runtime.client.code_at(registry.address)) > 0
        checks["chain"] = {
            "ok": contract_ok,
            "chain_id": runtime.client.chain_id,
            "head": head,
            "contract": registry.address if registry else None,
        }
        if not contract_ok:
            checks["chain"]["error"] = "no AnchorRegistry code at the configured address"
            ready = False
    except LedgerError as exc:
        ready = False
        checks["chain"] = {"ok": False, "error": str(exc)}
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
