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
