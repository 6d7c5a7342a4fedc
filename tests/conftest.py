"""Shared fixtures: a real Hardhat node per test session, fresh registries per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger.chain import ChainClient, Registry
from tests.support.hardhat import DEV_KEY_0, HardhatNode, start_node


@pytest.fixture(scope="session")
def hardhat_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatNode]:
    node = start_node(tmp_path_factory.mktemp("hardhat"))
    yield node
    node.stop()


@pytest.fixture(scope="session")
def rpc_url(hardhat_node: HardhatNode) -> str:
    return hardhat_node.url


@pytest.fixture
def chain(rpc_url: str) -> ChainClient:
    return ChainClient(rpc_url)


@pytest.fixture(scope="session")
def signer() -> LocalAccount:
    account: LocalAccount = Account.from_key(DEV_KEY_0)
    return account


@pytest.fixture
def registry(chain: ChainClient, signer: LocalAccount) -> Registry:
    """A freshly deployed AnchorRegistry (batch ids start again at 1)."""
    address, _ = chain.deploy_registry(signer)
    return chain.registry(address)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


# -- databases and the service -------------------------------------------------------

from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from app.main import create_app  # noqa: E402
from app.runtime import Runtime  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.support.database import backends, fresh_database  # noqa: E402


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every test that uses a database runs on SQLite and, when configured, on
    # PostgreSQL: no skipped variants when PostgreSQL is not configured.
    if "backend" in metafunc.fixturenames:
        chosen = backends()
        if metafunc.definition.get_closest_marker("postgresql_only"):
            # Empty when ANCLA_TEST_DATABASE_URL is unset: reported as skipped.
            chosen = [b for b in chosen if b == "postgresql"]
        metafunc.parametrize("backend", chosen, scope="function")


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def make_settings(database_url: str, rpc_url: str, registry: Registry) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "rpc_url": rpc_url,
            "contract_address": registry.address,
            "signer_key": DEV_KEY_0,
            "batch_max_size": 100,
            "batch_max_age_seconds": 3600,
            "confirmations": 1,
            # Limits are tested on their own (test_security); elsewhere tests
            # send faster than any agency would.
            "rate_limit_per_second": 0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def runtime(make_settings: Callable[..., Settings]) -> Iterator[Runtime]:
    rt = Runtime.create(make_settings())
    yield rt
    rt.stop()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as test_client:
        yield test_client
