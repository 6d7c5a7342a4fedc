"""Receipts by hash from anywhere: the CLI fetches from a real service, trusts only the chain;
POST /v1/verify and the CLI give the same per-step report."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import update

from app.main import create_app
from app.models import Batch
from app.runtime import Runtime
from tests.support.live import live_server
from tests.support.services import ancla, ingest

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.chain]

ENV = {"PATH": "/usr/bin:/bin"}


def test_verify_receipt_by_hash_from_a_service(runtime: Runtime) -> None:
    hashes = ingest(runtime.session_factory, range(5))
    runtime.make_worker().tick(force_seal=True)
    rpc = runtime.settings.rpc_url
    with live_server(create_app(runtime=runtime)) as base:
        fetched = ancla(
            "verify-receipt", "--hash", hashes[2], "--api", base, "--rpc", rpc, "--json", env=ENV
        )
        assert fetched.returncode == 0, fetched.stderr
        cli_report = json.loads(fetched.stdout)
        api_report = httpx.post(f"{base}/v1/verify", json={"hash": hashes[2]}).json()
        # The same steps, verdicts and evidence; the API also checked the stored record.
        assert [s for s in api_report["steps"] if s["step"] != "record"] == cli_report["steps"]
        assert api_report["valid"] is cli_report["valid"] is True

        record = tmp_record(base, hashes[2])
        with_record = ancla(
            "verify-receipt",
            "--hash",
            hashes[2],
            "--api",
            base,
            "--rpc",
            rpc,
            "--record",
            record,
            "--json",
            env=ENV,
        )
        assert json.loads(with_record.stdout)["steps"] == api_report["steps"]

        unknown = ancla(
            "verify-receipt", "--hash", "0x" + "cd" * 32, "--api", base, "--rpc", rpc, env=ENV
        )
        assert unknown.returncode == 1 and "the service has no receipt for" in unknown.stderr
        malformed = ancla(
            "verify-receipt", "--hash", "0xnope", "--api", base, "--rpc", rpc, env=ENV
        )
        assert malformed.returncode == 2 and "--hash must be 0x followed by 64" in malformed.stderr

        # A service that lies (its stored root was changed) cannot make the CLI say valid:
        # the verdict comes from the chain, not from the service.
        with runtime.session_factory() as session:
            session.execute(update(Batch).values(root="0x" + "22" * 32))
            session.commit()
        lied = ancla(
            "verify-receipt", "--hash", hashes[2], "--api", base, "--rpc", rpc, "--json", env=ENV
        )
        assert lied.returncode == 1
        assert json.loads(lied.stdout)["failed_step"] == "proof"
        api_lied = httpx.post(f"{base}/v1/verify", json={"hash": hashes[2]}).json()
        assert api_lied["valid"] is False and api_lied["failed_step"] == "proof"


def tmp_record(base: str, record_hash: str) -> str:
    import tempfile

    handle = tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False)  # noqa: SIM115
    handle.write(httpx.get(f"{base}/v1/records/{record_hash}").content)
    handle.close()
    return handle.name


def test_no_api_given_for_hash_is_exit_2(runtime: Runtime) -> None:
    result = ancla(
        "verify-receipt", "--hash", "0x" + "ab" * 32, "--rpc", runtime.settings.rpc_url, env=ENV
    )
    assert result.returncode == 2 and "--hash needs --api" in result.stderr
