"""RFC 9457 problem details: every error a client can cause, in one shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import AnclaError
from ledger.errors import ChainError, LedgerError, ReceiptFormatError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("ancla.api")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        # FastAPI prefixes "body"/"query"/"path"; the client's field follows.
        source = loc[0] if loc else "body"
        where = ".".join(loc[1:] if source in ("body", "query", "path", "header") else loc)
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        errors.append({"field": where or f"({source})", "in": source, "message": message})
    return errors


def storage_problem(exc: DBAPIError) -> str:
    """Say what is wrong with the storage in words an operator can act on."""
    text = str(exc.orig).lower()
    if "disk is full" in text or "no space left" in text:
        return "the database's disk is full"
    if "readonly" in text or "read-only" in text:
        return "the database is read-only"
    if "unable to open database file" in text:
        # SQLite in WAL mode must write its -shm file even to read: on a
        # read-only file system this is the error it gives.
        return "the database file cannot be opened for writing (read-only or missing storage)"
    return "the database is unavailable"


def install(app: FastAPI) -> None:
    @app.exception_handler(AnclaError)
    async def ancla_error(request: Request, exc: AnclaError) -> JSONResponse:
        return problem(
            exc.status,
            exc.title,
            exc.detail,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, "Invalid input", summary, instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {
            404: "Not found",
            405: "Method not allowed",
            413: "Content too large",
            415: "Unsupported media type",
            429: "Too many requests",
        }
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem(
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            detail,
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(ReceiptFormatError)
    async def receipt_error(request: Request, exc: ReceiptFormatError) -> JSONResponse:
        return problem(422, "Invalid receipt", str(exc), instance=request.url.path)

    @app.exception_handler(ChainError)
    async def chain_error(request: Request, exc: ChainError) -> JSONResponse:
        return problem(
            503, "Chain unavailable", f"could not reach the chain: {exc}", instance=request.url.path
        )

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        return problem(422, "Invalid input", str(exc), instance=request.url.path)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return problem(
            503,
            "Service unavailable",
            f"{storage_problem(exc)}; nothing of this request was recorded, retry later",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        log.error("database error: %s", exc.orig)
        return problem(
            503,
            "Service unavailable",
            "the database failed; nothing was recorded, retry later",
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500, "Internal error", "an unexpected error occurred", instance=request.url.path
        )
