"""Fuzz every route of the OpenAPI schema with schemathesis (bounded): no 5xx, and every
error a client can cause is problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from app.main import create_app
from app.runtime import Runtime
from app.services.agencies import add_agency
from tests.support.orders import BUYER_RUC

pytestmark = [pytest.mark.reliability, pytest.mark.db, pytest.mark.chain]


@pytest.fixture
def fuzzed_app(runtime: Runtime) -> Iterator[tuple[FastAPI, str]]:
    with runtime.session_factory() as session:
        key = add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key
    yield create_app(runtime=runtime), key


def test_every_route_survives_fuzzing(fuzzed_app: tuple[FastAPI, str]) -> None:
    app, key = fuzzed_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            where = (case.method, case.formatted_path, response.status_code, response.text[:300])
            assert response.status_code < 500, where
            if response.status_code >= 400:
                content_type = response.headers["content-type"]
                if isinstance(content_type, list):
                    content_type = content_type[0]
                assert content_type.startswith("application/problem+json"), where
                body = response.json()
                assert body["status"] == response.status_code and body["detail"], where

        check()
