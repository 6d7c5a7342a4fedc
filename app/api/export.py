"""Open data out: OCDS release/record packages and CSV, plus the OCDS extension they use."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from app.api.deps import RuntimeDep, SessionDep
from app.errors import NotFound
from app.opendata import export, mapping
from app.opendata.packages import EmptyPackage

router = APIRouter(tags=["open data"])
PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
PUBLISHER = "Ancla"
# Spool to disk beyond this, so a large export never sits in memory.
_SPOOL_BYTES = 4 * 1024 * 1024


def _stream(spool: Any) -> Iterator[bytes]:
    try:
        spool.seek(0)
        while chunk := spool.read(64 * 1024):
            yield chunk
    finally:
        spool.close()


def _since(value: date | None) -> datetime | None:
    return None if value is None else datetime.combine(value, time(), UTC)


@router.get(
    "/v1/export/ocds",
    summary="OCDS 1.1 release package (or record package) of the recorded orders",
    responses={200: {"content": {"application/json": {}}}, 404: PROBLEM, 422: PROBLEM},
)
def export_ocds(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    package: Annotated[Literal["release", "record"], Query()] = "release",
    buyer: Annotated[str | None, Query(pattern=r"^\d{11}$")] = None,
    since: Annotated[date | None, Query(description="Orders issued since (UTC date)")] = None,
) -> StreamingResponse:
    """Each order is a contract; Ancla's record hash and receipt URL ride along in the
    documented `ancla` extension (see `/ocds/extension/extension.json`)."""
    try:
        return _spooled(
            "application/json",
            lambda fp: export.write_export(
                fp,
                session=session,
                format="ocds" if package == "release" else "ocds-record",
                buyer=buyer,
                since=_since(since),
                base_url=str(request.base_url),
                uri=str(request.url),
                publisher_name=PUBLISHER,
                genesis=runtime.chain_genesis(),
            ),
        )
    except EmptyPackage:
        # OCDS packages hold at least one release; there is nothing to publish.
        raise NotFound("no recorded orders match; an OCDS package cannot be empty") from None


@router.get(
    "/v1/export/csv",
    summary="One CSV row per order with its hash, status and anchor",
    responses={200: {"content": {"text/csv": {}}}, 422: PROBLEM},
)
def export_csv(
    session: SessionDep,
    runtime: RuntimeDep,
    buyer: Annotated[str | None, Query(pattern=r"^\d{11}$")] = None,
    since: Annotated[date | None, Query(description="Orders issued since (UTC date)")] = None,
) -> StreamingResponse:
    return _spooled(
        "text/csv; charset=utf-8",
        lambda fp: export.write_export(
            fp,
            session=session,
            format="csv",
            buyer=buyer,
            since=_since(since),
            genesis=runtime.chain_genesis(),
        ),
    )


@router.get("/ocds/extension/{name}", summary="Ancla's OCDS extension files")
def extension_file(name: str, request: Request) -> Any:
    if name == "extension.json":
        return mapping.extension_metadata(str(request.base_url))
    path = Path(mapping.EXTENSION_DIR) / name
    if name not in ("release-schema.json", "README.md") or not path.is_file():
        raise NotFound(f"no extension file {name!r}")
    media = "application/json" if name.endswith(".json") else "text/markdown; charset=utf-8"
    return FileResponse(path, media_type=media)


def _spooled(media_type: str, write: Callable[[IO[str]], object]) -> StreamingResponse:
    """What ``write`` writes (an export), as a response.

    It is written whole into a temporary file (in memory, then on disk) while
    the request's session is open, then streamed from there; the file is
    closed if writing fails.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b")  # noqa: SIM115
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    try:
        write(text)
        text.flush()
        text.detach()
    except BaseException:
        spool.close()
        raise
    return StreamingResponse(_stream(spool), media_type=media_type)
