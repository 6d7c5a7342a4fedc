"""Open data out: OCDS release/record packages and CSV, plus the OCDS extension they use."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from app.api.deps import SessionDep
from app.errors import NotFound
from app.opendata import export, mapping, packages

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
    package: Annotated[Literal["release", "record"], Query()] = "release",
    buyer: Annotated[str | None, Query(pattern=r"^\d{11}$")] = None,
    since: Annotated[date | None, Query(description="Orders issued since (UTC date)")] = None,
) -> StreamingResponse:
    """Each order is a contract; Ancla's record hash and receipt URL ride along in the
    documented `ancla` extension (see `/ocds/extension/extension.json`)."""
    base = str(request.base_url).rstrip("/")
    releases = export.export_releases(
        session=session, buyer=buyer, since=_since(since), base_url=base
    )
    spool, text = _spool()
    info = packages.export_package_info(
        base_url=base, uri=str(request.url), publisher_name=PUBLISHER
    )
    writer = (
        packages.write_release_package if package == "release" else packages.write_record_package
    )
    try:
        writer(text, releases, info)
    except packages.EmptyPackage:
        spool.close()
        # OCDS packages hold at least one release; there is nothing to publish.
        raise NotFound("no recorded orders match; an OCDS package cannot be empty") from None
    text.flush()
    text.detach()
    return StreamingResponse(_stream(spool), media_type="application/json")


@router.get(
    "/v1/export/csv",
    summary="One CSV row per order with its hash, status and anchor",
    responses={200: {"content": {"text/csv": {}}}, 422: PROBLEM},
)
def export_csv(
    session: SessionDep,
    buyer: Annotated[str | None, Query(pattern=r"^\d{11}$")] = None,
    since: Annotated[date | None, Query(description="Orders issued since (UTC date)")] = None,
) -> StreamingResponse:
    spool, text = _spool()
    export.write_csv(text, session=session, buyer=buyer, since=_since(since))
    text.flush()
    text.detach()
    return StreamingResponse(_stream(spool), media_type="text/csv; charset=utf-8")


@router.get("/ocds/extension/{name}", summary="Ancla's OCDS extension files")
def extension_file(name: str, request: Request) -> Any:
    if name == "extension.json":
        return mapping.extension_metadata(str(request.base_url))
    path = Path(mapping.EXTENSION_DIR) / name
    if name not in ("release-schema.json", "README.md") or not path.is_file():
        raise NotFound(f"no extension file {name!r}")
    media = "application/json" if name.endswith(".json") else "text/markdown; charset=utf-8"
    return FileResponse(path, media_type=media)


def _spool() -> tuple[Any, io.TextIOWrapper]:
    """A temporary file (in memory, then on disk) and a UTF-8 text view of it."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b")  # noqa: SIM115
    return spool, io.TextIOWrapper(spool, encoding="utf-8", newline="")
