"""FastAPI dependencies as Annotated aliases (routes stay thin)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.errors import TooManyRequests
from app.runtime import Runtime
from app.services.agencies import KeyHolder, check_key, find_key_holder, split_key
from app.settings import Settings


async def get_runtime(request: Request) -> Runtime:
    # async: a sync dependency would cost a hop to the thread pool.
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    with runtime.session_factory() as session:
        yield session


def get_read_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    """A session for a read of one statement (Runtime.read_session_factory)."""
    with runtime.read_session_factory() as session:
        yield session


async def get_settings(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Settings:
    return runtime.settings


_bearer = HTTPBearer(auto_error=False, description="The agency's API key")


async def get_agency(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeyHolder:
    """The key's agency, from the per-process cache or the database (one thread hop)."""
    key_id, secret = split_key(credentials.credentials if credentials else None)
    cached, holder = runtime.key_holder(key_id)
    if not cached:

        def lookup() -> KeyHolder | None:
            with runtime.session_factory() as session:
                return find_key_holder(session=session, key_id=key_id)

        holder = await run_in_threadpool(lookup)
        if holder is not None:
            runtime.remember_key_holder(key_id, holder)
    agency = check_key(holder, secret)
    wait = runtime.rate_limiter.take(agency.key_id)
    if wait is not None:
        retry_after = str(max(1, math.ceil(wait)))
        raise TooManyRequests(
            f"this API key exceeded {runtime.settings.rate_limit_per_second:g} requests per "
            f"second; retry after {retry_after} s",
            headers={"Retry-After": retry_after},
        )
    return agency


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AgencyDep = Annotated[KeyHolder, Depends(get_agency)]
