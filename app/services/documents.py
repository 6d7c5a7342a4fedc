"""Files bound to records by their SHA-256 (``GET /v1/documents/{sha256}``)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import Batch, Record, RecordDocument
from app.services.orders import links
from app.services.receipts import chain_target, public_status, with_batch
from ledger.canonical import parse_json_strict

_SHA256 = re.compile(r"[0-9a-f]{64}")


def parse_sha256(text: str) -> str:
    """A file digest from a URL: 64 lowercase hex digits (what WebCrypto and sha256sum write)."""
    if not _SHA256.fullmatch(text):
        raise InvalidInput(
            "a file digest is the SHA-256 of its bytes as 64 lowercase hex digits,"
            f" not {text[:80]!r}"
        )
    return text


def _binding(record: Record, sha256: str) -> dict[str, Any]:
    """How the record binds the file: an order's document, or an event's."""
    parsed = parse_json_strict(record.canonical)
    if "purchase_order" in parsed:
        documents = parsed["purchase_order"].get("documents", [])
        kind = "issued"
    else:
        event = parsed.get("event", {})
        kind = event.get("type")
        documents = [event["document"]] if kind == "document" else event.get("documents", [])
    titles = [d.get("title") for d in documents if d.get("sha256") == sha256]
    return {"type": kind, "titles": titles}


def records_binding(*, session: Session, sha256: str, genesis: str | None) -> dict[str, Any]:
    """Every record that binds the file with this digest, in the order recorded
    (an empty list: no record binds it)."""
    sha256 = parse_sha256(sha256)
    target = chain_target(session)
    rows = session.execute(
        with_batch(select(Record, Batch))
        .join(RecordDocument, RecordDocument.record_id == Record.id)
        .where(RecordDocument.sha256 == sha256)
        .order_by(Record.id)
    ).all()
    return {
        "sha256": sha256,
        "records": [
            {
                "hash": record.hash,
                "schema": record.schema,
                "buyer_ruc": record.buyer_ruc,
                "order_number": record.order_number,
                **_binding(record, sha256),
                "status": public_status(batch, target, genesis=genesis),
                "order_url": f"/v1/purchase-orders/{record.buyer_ruc}/{record.order_number}",
                **links(record.hash),
            }
            for record, batch in rows
        ],
    }
