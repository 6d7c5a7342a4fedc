"""The public pages (DESIGN §9): search, orders, records, batches, verification, QR seals.

Thin like the API's routes: each handler reads through services (the
API's own, and app.services.public_views for what only pages show) with
``Runtime.read`` and renders a template; none builds a query. An unknown
order, record or batch is a page saying what was not found, with a 404.
Parameters are read by hand, not declared to FastAPI, so a malformed one is
a page too, never a JSON problem.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.api.deps import RuntimeDep
from app.errors import InvalidInput, NotFound
from app.runtime import Runtime
from app.services.documents import records_binding
from app.services.public_views import (
    batch_page,
    latest_orders,
    ledger_state,
    order_page,
    orders_numbered,
    record_page,
    records_of_ruc,
)
from app.services.receipts import get_receipt, parse_hash
from app.web import seal
from app.web.i18n import N_
from app.web.rendering import origin_of, render

router = APIRouter(include_in_schema=False)

_RECORD_HASH: Final = re.compile(r"0x[0-9a-fA-F]{64}")
_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")
_RUC: Final = re.compile(r"\d{11}")
_RUC_AND_NUMBER: Final = re.compile(r"(\d{11})\s*[/ ]\s*(\S{1,64})")
_BATCH_ID: Final = re.compile(r"[1-9]\d{0,18}")
_MAX_BATCH_ID: Final = 2**63 - 1
_IMAGE_CACHE: Final = "public, max-age=86400"


def _rpc(runtime: Runtime, request: Request) -> dict[str, Any]:
    """The JSON-RPC endpoint the page's verification asks: the service's public one, or
    the visitor's own (``?rpc=``), if it is an http(s) URL a policy can name."""
    configured = runtime.settings.browser_rpc_url
    given = (request.query_params.get("rpc") or "").strip()
    chosen = given if given and origin_of(given) else configured
    return {
        "url": chosen,
        "configured": configured,
        "refused": bool(given) and origin_of(given) is None,
        "origins": [origin_of(configured), origin_of(chosen)],
    }


NO_ORDER: Final = N_("There is no purchase order %(number)s of buyer RUC %(ruc)s.")
NO_RECORD: Final = N_("There is no record %(hash)s.")
NOT_A_HASH: Final = N_("%(hash)s is not a record hash (0x followed by 64 hexadecimal digits).")
NO_BATCH: Final = N_("There is no batch %(id)s.")
NOT_A_BATCH: Final = N_("%(id)s is not a batch number.")
NO_PAGE: Final = N_("There is no page at %(path)s.")


def not_found(request: Request, what: str, **params: str) -> HTMLResponse:
    """A page saying what was not found (``what``: a msgid, translated when rendered)."""
    return render(request, "not_found.html", {"what": what, "params": params}, status_code=404)


def _order_path(buyer_ruc: str, order_number: str) -> str:
    return f"/o/{quote(buyer_ruc, safe='')}/{quote(order_number, safe='')}"


@router.get("/", response_class=HTMLResponse)
def home(request: Request, runtime: RuntimeDep) -> Response:
    """Search (an order number, with its buyer's RUC or alone, a RUC, a record hash, a
    file's SHA-256), the latest orders and the ledger's state. An order number alone goes
    to its order when one buyer used it, and lists the orders when several did."""
    q = (request.query_params.get("q") or "").strip()
    ruc = (request.query_params.get("ruc") or "").strip()
    context: dict[str, Any] = {"q": q, "ruc": ruc, "search": None}
    if q or ruc:
        if _RECORD_HASH.fullmatch(q):
            return RedirectResponse(f"/r/{q.lower()}", status_code=303)
        pair = _RUC_AND_NUMBER.fullmatch(q)
        if pair and not ruc:
            return RedirectResponse(_order_path(pair.group(1), pair.group(2)), status_code=303)
        if q and not _RUC.fullmatch(q) and not _SHA256.fullmatch(q) and _RUC.fullmatch(ruc):
            return RedirectResponse(_order_path(ruc, q), status_code=303)
        if _SHA256.fullmatch(q):
            found = runtime.read(records_binding, sha256=q.lower())
            context["search"] = {"kind": "document", **found}
        elif _RUC.fullmatch(q or ruc):
            context["search"] = {"kind": "ruc", **runtime.read(records_of_ruc, ruc=q or ruc)}
        elif q and not ruc:
            found = runtime.read(orders_numbered, order_number=q)
            if len(found["orders"]) == 1:
                (only,) = found["orders"]
                return RedirectResponse(
                    _order_path(only["buyer"]["ruc"], only["order_number"]), status_code=303
                )
            context["search"] = {"kind": "order_number", **found}
        else:
            context["search"] = {"kind": "unknown"}
    context["latest"] = runtime.read(latest_orders, limit=10)
    context["state"] = runtime.read(ledger_state)
    context["contract"] = runtime.settings.contract_address
    return render(request, "index.html", context)


@router.get("/o/{buyer_ruc}/{order_number}", response_class=HTMLResponse)
def order(request: Request, runtime: RuntimeDep, buyer_ruc: str, order_number: str) -> Response:
    try:
        found = runtime.read(order_page, buyer_ruc=buyer_ruc, order_number=order_number)
    except NotFound:
        return not_found(request, NO_ORDER, number=order_number, ruc=buyer_ruc)
    return render(request, "order.html", {"order": found, "buyer_ruc": buyer_ruc})


def _record_or_404(request: Request, runtime: Runtime, record_hash: str) -> Any:
    try:
        return runtime.read(record_page, record_hash=record_hash)
    except InvalidInput:
        return not_found(request, NOT_A_HASH, hash=record_hash[:80])
    except NotFound:
        return not_found(request, NO_RECORD, hash=record_hash)


@router.get("/r/{record_hash}", response_class=HTMLResponse)
def record(request: Request, runtime: RuntimeDep, record_hash: str) -> Response:
    found = _record_or_404(request, runtime, record_hash)
    if isinstance(found, Response):
        return found
    rpc = _rpc(runtime, request)
    return render(
        request,
        "record.html",
        {
            "item": found,
            "rpc": rpc,
            "confirmations": _confirmations(request),
            "autostart": request.query_params.get("verify") == "1",
            "url": seal.record_url(runtime.settings.public_url, found["hash"]),
        },
        connect_origins=rpc["origins"],
    )


def _confirmations(request: Request) -> int:
    given = request.query_params.get("confirmations") or ""
    return min(int(given), 10_000) if given.isdigit() and int(given) >= 1 else 1


def _known_record(runtime: Runtime, record_hash: str) -> Any:
    """The receipt of a stored record, or None (unknown or malformed hash)."""
    try:
        return runtime.read(get_receipt, record_hash=parse_hash(record_hash))
    except (InvalidInput, NotFound):
        return None


@router.get("/r/{record_hash}/qr.svg")
def qr_svg(request: Request, runtime: RuntimeDep, record_hash: str) -> Response:
    if _known_record(runtime, record_hash) is None:
        return not_found(request, NO_RECORD, hash=record_hash[:80])
    url = seal.record_url(runtime.settings.public_url, record_hash)
    return Response(
        seal.qr_svg(url), media_type="image/svg+xml", headers={"cache-control": _IMAGE_CACHE}
    )


@router.get("/r/{record_hash}/qr.png")
def qr_png(request: Request, runtime: RuntimeDep, record_hash: str) -> Response:
    if _known_record(runtime, record_hash) is None:
        return not_found(request, NO_RECORD, hash=record_hash[:80])
    url = seal.record_url(runtime.settings.public_url, record_hash)
    return Response(
        seal.qr_png(url), media_type="image/png", headers={"cache-control": _IMAGE_CACHE}
    )


@router.get("/r/{record_hash}/sello.svg")
def seal_svg(request: Request, runtime: RuntimeDep, record_hash: str) -> Response:
    """A printable seal for the order's PDF: the QR code, the short hash, the batch,
    the chain and the date anchored (or that it is not anchored yet)."""
    receipt = _known_record(runtime, record_hash)
    if receipt is None:
        return not_found(request, NO_RECORD, hash=record_hash[:80])
    url = seal.record_url(runtime.settings.public_url, record_hash)
    code, size = seal.qr_inline(url, 200)
    response = render(
        request,
        "sello.svg",
        {"receipt": receipt.to_dict(), "url": url, "code": code, "code_size": size},
        media_type="image/svg+xml",
    )
    response.headers["cache-control"] = "no-cache"
    return response


@router.get("/b/{batch_id}", response_class=HTMLResponse)
def batch(request: Request, runtime: RuntimeDep, batch_id: str) -> Response:
    if not _BATCH_ID.fullmatch(batch_id) or int(batch_id) > _MAX_BATCH_ID:
        return not_found(request, NOT_A_BATCH, id=batch_id[:40])
    start = request.query_params.get("from") or "0"
    try:
        found = runtime.read(
            batch_page,
            batch_id=int(batch_id),
            start=int(start) if start.isdigit() and len(start) < 10 else 0,
        )
    except NotFound:
        return not_found(request, NO_BATCH, id=batch_id)
    return render(request, "batch.html", {"batch": found})


@router.get("/verificar", response_class=HTMLResponse)
def verify_page(request: Request, runtime: RuntimeDep) -> Response:
    """Verify a pasted or uploaded receipt (with its record) in this browser, or find
    the records that bind a file."""
    rpc = _rpc(runtime, request)
    return render(
        request,
        "verificar.html",
        {"rpc": rpc, "confirmations": _confirmations(request)},
        connect_origins=rpc["origins"],
    )


PAGE_PREFIXES: Final = ("/o/", "/r/", "/b/")


def is_page_path(path: str) -> bool:
    """Whether a path is one of the pages' (a 404 there is a page, not a JSON problem)."""
    return path in ("/", "/verificar") or path.startswith(PAGE_PREFIXES)
