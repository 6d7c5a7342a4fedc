"""FastAPI dependencies as Annotated aliases (routes stay thin)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.errors import TooManyRequests
from app.models import Agency
from app.runtime import Runtime
from app.services.agencies import authenticate
from app.settings import Settings


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    with runtime.session_factory() as session:
        yield session


def get_settings(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Settings:
    return runtime.settings


_bearer = HTTPBearer(auto_error=False, description="The agency's API key")


def get_agency(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    session: Annotated[Session, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Agency:
    agency = authenticate(session=session, api_key=credentials.credentials if credentials else None)
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
SettingsDep = Annotated[Settings, Depends(get_settings)]
AgencyDep = Annotated[Agency, Depends(get_agency)]
