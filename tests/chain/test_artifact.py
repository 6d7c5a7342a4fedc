"""The committed ABI/bytecode Python deploys equals a fresh compile of the source."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ledger.chain import registry_artifact
from tests.support.hardhat import HARDHAT_CLI

pytestmark = pytest.mark.chain


def test_committed_artifact_matches_a_fresh_compile(repo_root: Path, tmp_path: Path) -> None:
    # Compile into a private folder so a stale ./var/hardhat cache cannot hide drift.
    env = {**os.environ, "ANCLA_HARDHAT_BUILD_DIR": str(tmp_path)}
    result = subprocess.run(
        ["node", str(HARDHAT_CLI), "export-artifact", "--check"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "committed artifact matches a fresh compile" in result.stdout
    fresh = json.loads(
        (tmp_path / "artifacts/contracts/AnchorRegistry.sol/AnchorRegistry.json").read_text()
    )
    committed = registry_artifact()
    assert fresh["abi"] == committed["abi"]
    assert fresh["bytecode"] == committed["bytecode"]
    assert fresh["deployedBytecode"] == committed["deployedBytecode"]
