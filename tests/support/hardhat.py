"""Hardhat nodes for tests (the launcher itself is app.devchain, shared with `ancla dev`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.devchain import DEV_KEY_0, HardhatNode, free_port, hardhat_cli, start_node

HARDHAT_CLI = hardhat_cli()

# Hardhat's default account #1 (a public development key), used as an outsider.
DEV_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"

__all__ = [
    "DEV_KEY_0",
    "DEV_KEY_1",
    "HARDHAT_CLI",
    "HardhatNode",
    "free_port",
    "start_node",
    "wait_until",
]


def wait_until(
    predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Poll ``predicate()`` until true; tests wait on conditions, never on sleeps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
