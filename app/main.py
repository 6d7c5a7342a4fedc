"""create_app(settings): routers, problem+json handlers, strict JSON bodies, lifespan."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api import events, export, ops, orders, problems, public
from app.api.middleware import RequestContextMiddleware
from app.api.strict_json import StrictJSONMiddleware
from app.db import is_sqlite
from app.runtime import Runtime
from app.settings import Settings
from app.web import install as install_pages

DESCRIPTION = """
Ancla records purchase orders, anchors them on an EVM chain in Merkle batches and
serves receipts that anyone can verify against the chain without trusting Ancla.

Errors are RFC 9457 `application/problem+json`. Agencies authenticate with
`Authorization: Bearer <API key>`; every read is public.
"""


def create_app(
    settings: Settings | None = None, *, runtime: Runtime | None = None, worker: bool = False
) -> FastAPI:
    runtime = runtime or Runtime.create(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if worker:
            runtime.start_worker()
        try:
            yield
        finally:
            runtime.stop()

    app = FastAPI(
        title="Ancla",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    problems.install(app)
    app.include_router(events.router)
    app.include_router(orders.router)
    app.include_router(public.router)
    app.include_router(export.router)
    app.include_router(ops.router)
    # The public pages (DESIGN §9): /, /o/, /r/, /b/, /verificar and /static/.
    install_pages(app)
    app.add_middleware(StrictJSONMiddleware, max_body_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=runtime.settings.cors_origins,
        allow_methods=["GET", "POST"],
        # No Authorization: API keys are for agencies' servers, never browser pages.
        allow_headers=["Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
        allow_credentials=False,
        max_age=3600,
    )
    app.add_middleware(RequestContextMiddleware)
    return app


# Cyclic garbage collector thresholds for a serving process (Python's default
# is 700, 10, 10). A bulk request allocates tens of thousands of containers
# that live until it is answered, so with the defaults they were promoted and
# full collections walked the whole heap (SQLAlchemy, pydantic, web3) again
# and again: a third of a bulk request's CPU, measured (9,066 -> 12,435
# records/s with one client). Requests make little cyclic garbage; memory is
# reclaimed by reference counting as before.
SERVING_GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc_for_serving() -> None:
    """Move everything built at start-up out of the collector's way, and collect less often."""
    gc.collect()
    # Objects alive now (modules, the app, the runtime) live as long as the
    # process: freezing them keeps full collections from walking them.
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)


# SQLite: a thread holding the database's write lock (the group commit, the
# sealer) gives up the GIL at each statement and must win it back from the
# request threads of its process, up to a switch interval later (default 5
# ms), while every writer of every process waits for the lock: about ten
# times per group of orders, 40% of the lock's hold under bulk load. A 1 ms
# interval bounds each of those waits; in alternating runs it sealed 17,800-
# 18,700 records/s against 14,800-17,700 (bench/ingest.py, 3 workers).
SQLITE_SWITCH_INTERVAL_SECONDS = 0.001


def tune_threads_for_serving(settings: Settings) -> None:
    if is_sqlite(settings.database_url):
        sys.setswitchinterval(SQLITE_SWITCH_INTERVAL_SECONDS)


def app_from_environment() -> FastAPI:
    """uvicorn factory for `ancla serve` (one per worker process)."""
    import os

    from app import logs

    settings = Settings()
    logs.configure(json_logs=settings.json_logs)
    app = create_app(settings, worker=os.environ.get("ANCLA_RUN_WORKER", "1") == "1")
    tune_gc_for_serving()
    tune_threads_for_serving(settings)
    return app
