"""The ``ledger`` package: its names, imported when first used."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import ledger


@pytest.mark.parametrize("name", ledger.__all__)
def test_each_public_name_is_its_modules_own(name: str) -> None:
    home = importlib.import_module(ledger._HOMES[name])
    assert getattr(ledger, name) is getattr(home, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'ledger' has no attribute 'verify_it'"):
        ledger.verify_it  # noqa: B018 - the access is the test


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return set(out.stdout.split())


def test_importing_one_module_imports_not_the_chain_client() -> None:
    # web3.py and eth-account cost every `ancla` command 0.75 s of start-up when
    # ledger/__init__.py imported every module (app/cli.py imports ledger.errors).
    for code in ("import ledger.errors", "import app.cli"):
        modules = _imported_after(code)
        assert not {"web3", "eth_account", "ledger.chain"} & modules, code
    assert "ledger.receipt" in _imported_after("from ledger import Receipt")
