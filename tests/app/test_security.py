"""Access control, rate limits, CORS, security headers, request ids, secrets kept out of logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.middleware import RateLimiter
from app.logs import JSONFormatter
from app.main import create_app
from app.runtime import Runtime
from app.services.agencies import add_agency, split_key
from tests.support.orders import BUYER_RUC, order

pytestmark = [pytest.mark.db, pytest.mark.chain]


def key_for(runtime: Runtime) -> str:
    with runtime.session_factory() as session:
        return add_agency(session=session, ruc=BUYER_RUC, name="MINISTERIO PÚBLICO").api_key


def test_rate_limit_is_429_with_retry_after(make_settings: Any) -> None:
    runtime = Runtime.create(make_settings(rate_limit_per_second=0.5, rate_limit_burst=2))
    key = key_for(runtime)
    with TestClient(create_app(runtime=runtime)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        statuses = [
            client.post("/v1/purchase-orders", json=order(i), headers=headers).status_code
            for i in range(3)
        ]
        assert statuses == [202, 202, 429]
        limited = client.post("/v1/purchase-orders", json=order(9), headers=headers)
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.headers["retry-after"] == "2"
        assert "exceeded 0.5 requests per second" in limited.json()["detail"]
        # Reads are public and not limited per key.
        assert client.get("/v1/purchase-orders").status_code == 200


def test_token_bucket_refills() -> None:
    limiter = RateLimiter(rate=10, burst=2)
    assert limiter.take("k", now=0.0) is None
    assert limiter.take("k", now=0.0) is None
    wait = limiter.take("k", now=0.0)
    assert wait == pytest.approx(0.1)
    assert limiter.take("k", now=0.1) is None
    assert limiter.take("other", now=0.1) is None
    assert RateLimiter(rate=0, burst=1).take("k") is None


def test_security_headers_cors_and_request_id(client: TestClient) -> None:
    response = client.get(
        "/healthz", headers={"X-Request-ID": "abc-123", "Origin": "https://periodista.pe"}
    )
    assert response.headers["x-request-id"] == "abc-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    injected = client.get("/healthz", headers={"X-Request-ID": "bad\nid"})
    assert (
        injected.headers["x-request-id"] != "bad\nid"
        and len(injected.headers["x-request-id"]) == 32
    )
    preflight = client.options(
        "/v1/purchase-orders",
        headers={
            "Origin": "https://periodista.pe",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    # Browsers may not send API keys cross-origin: keys belong to agencies' servers.
    assert preflight.status_code == 400
    assert "content-security-policy" not in client.get("/docs").headers


def test_secrets_never_reach_logs_errors_or_metrics(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    key = key_for(runtime)
    signer_key = runtime.settings.signer_key
    assert signer_key is not None
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(runtime=runtime)) as client:
        client.post(
            "/v1/purchase-orders", json=order(1), headers={"Authorization": f"Bearer {key}"}
        )
        client.post(
            "/v1/purchase-orders", json=order(2), headers={"Authorization": f"Bearer {key}x"}
        )
        client.post(
            "/v1/purchase-orders",
            content=b"{bad",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        metrics = client.get("/metrics").text
        runtime.make_worker().tick(force_seal=True)
    formatted = "\n".join(JSONFormatter().format(r) for r in caplog.records)
    # The secret half as the service splits it (it may itself hold "_").
    _, key_secret = split_key(key)
    for secret in (key, key_secret, signer_key.get_secret_value()):
        assert secret not in formatted
        assert secret not in metrics
    assert secret_free_settings_repr(runtime)
    # Access logs are JSON lines with the request id and no headers.
    access = [
        json.loads(JSONFormatter().format(r)) for r in caplog.records if r.name == "ancla.access"
    ]
    assert access and all({"request_id", "status", "path", "duration_ms"} <= set(a) for a in access)


def secret_free_settings_repr(runtime: Runtime) -> bool:
    signer_key = runtime.settings.signer_key
    assert signer_key is not None
    return signer_key.get_secret_value() not in repr(runtime.settings)


def test_revocation_takes_effect_within_the_key_cache_time(make_settings: Any) -> None:
    import time

    from app.services.agencies import revoke_agency

    runtime = Runtime.create(make_settings(api_key_cache_seconds=0.2))
    key = key_for(runtime)
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(runtime=runtime)) as client:
        assert client.post("/v1/purchase-orders", json=order(1), headers=headers).status_code == 202
        with runtime.session_factory() as session:
            revoke_agency(session=session, ruc=BUYER_RUC)
        time.sleep(0.3)
        refused = client.post("/v1/purchase-orders", json=order(2), headers=headers)
        assert refused.status_code == 401
        assert refused.json()["detail"] == "the API key has been revoked"
