"""The one way a bulk request is recorded and answered (orders and events alike)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from fastapi import Response
from fastapi.concurrency import run_in_threadpool

from app.records.registry import RecordSchema
from app.runtime import Runtime
from app.services.agencies import KeyHolder
from app.services.ingest import ItemResult, Prepared, count_outcomes, parse_items, prepare_items


async def record_bulk(
    runtime: Runtime, agency: KeyHolder, schema: RecordSchema, items: list[Any]
) -> Response:
    """Validate, hash and store ``items`` of ``schema``; one result per item, in order.

    Items accepted are durable when this answers.
    """

    # Validating and hashing up to 10,000 records is CPU work: off the event loop.
    def prepare() -> tuple[list[ItemResult | None], list[Prepared]]:
        return prepare_items(agency, schema, parse_items(schema, items))

    results, prepared = await run_in_threadpool(prepare)
    await runtime.recorder.store(prepared)
    recorded = count_outcomes(results)
    summary = dict(Counter(result.outcome for result in recorded))
    # Encoded here with orjson: FastAPI's jsonable_encoder walked the 10,000
    # results in Python first.
    body = {"summary": summary, "results": [r.to_dict() for r in recorded]}
    return Response(orjson.dumps(body), media_type="application/json")
