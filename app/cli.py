"""The ``ancla`` command line (Typer + Rich).

Every command maps Ancla's error roots to exit codes in one place
(:func:`_fail`); no traceback or web3 exception reaches the user.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ledger.errors import ChainError, LedgerError, ReceiptFormatError, VerificationError

app = typer.Typer(
    name="ancla",
    help="Ancla: a blockchain-anchored purchase-order ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console()
err = Console(stderr=True)

# Exit codes of verification commands (DESIGN §5).
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_CANNOT_CHECK = 2


def _fail(message: str, code: int = EXIT_CANNOT_CHECK) -> NoReturn:
    """One readable line on stderr, then a non-zero exit."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings(**overrides: Any) -> Any:
    from app.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        _fail(f"invalid settings: {problems}")


def _signer(settings: Any) -> Any:
    from ledger.chain import load_signer

    return load_signer(
        key=settings.signer_key.get_secret_value() if settings.signer_key else None,
        keystore=settings.signer_keystore,
        password=settings.signer_password.get_secret_value() if settings.signer_password else None,
    )


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


RpcOption = Annotated[
    str | None,
    typer.Option("--rpc", help="JSON-RPC URL of the chain [env: ANCLA_RPC_URL]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout")]


@app.command()
def deploy(
    rpc: RpcOption = None,
    admin: Annotated[
        str | None, typer.Option(help="Address that manages roles (default: the signer)")
    ] = None,
    anchorer: Annotated[
        str | None, typer.Option(help="Address allowed to anchor (default: the signer)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy AnchorRegistry with the configured signer and print its address."""
    from ledger.chain import ChainClient

    settings = _settings(rpc_url=rpc)
    try:
        signer = _signer(settings)
        client = ChainClient(settings.rpc_url, timeout=settings.rpc_timeout_seconds)
        address, tx_hash = client.deploy_registry(
            signer,
            admin=admin,
            anchorer=anchorer,
            legacy=settings.legacy_transactions,
            gas_price=settings.gas_price_wei,
        )
        chain_id = client.chain_id
    except LedgerError as exc:
        _fail(str(exc))
    if as_json:
        _print_json({"address": address, "chain_id": chain_id, "tx_hash": tx_hash})
    else:
        out.print(f"AnchorRegistry deployed at [bold]{address}[/] on chain {chain_id}")
        out.print(f"transaction {tx_hash}")
        out.print(f"export ANCLA_CONTRACT_ADDRESS={address}", highlight=False)


def _read_json_file(path: Path, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {what} {path}: {exc.strerror or exc}")


@app.command("verify-receipt")
def verify_receipt_command(
    receipt_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[RECEIPT]", help="Receipt JSON file ('-' for stdin)", show_default=False
        ),
    ] = None,
    record_file: Annotated[
        Path | None,
        typer.Option("--record", help="The record JSON, to check it hashes to the receipt"),
    ] = None,
    record_hash: Annotated[
        str | None, typer.Option("--hash", help="Fetch the receipt of this hash from --api")
    ] = None,
    api: Annotated[
        str | None, typer.Option(help="Base URL of an Ancla service to fetch the receipt from")
    ] = None,
    rpc: RpcOption = None,
    confirmations: Annotated[
        int, typer.Option(min=1, help="Confirmations the anchor must have")
    ] = 1,
    as_json: JsonOption = False,
) -> None:
    """Verify one receipt against the chain alone.

    Exit 0: valid. 1: invalid (the failing step is named). 2: could not check
    (unreadable or malformed input, chain unreachable).
    """
    from ledger.canonical import parse_record
    from ledger.receipt import Receipt
    from ledger.verify import verify_receipt

    if (receipt_file is None) == (record_hash is None):
        _fail("give a receipt file, or --hash with --api, not both")
    rpc_url = rpc or _settings().rpc_url
    try:
        if receipt_file is not None:
            receipt = Receipt.from_json(_read_json_file(receipt_file, "receipt"))
        else:
            receipt = _fetch_receipt(str(record_hash), api)
        record = None
        if record_file is not None:
            record = parse_record(_read_json_file(record_file, "record"))
        report = verify_receipt(receipt, record, rpc_url=rpc_url, confirmations=confirmations)
    except VerificationError as exc:
        _report(exc.report.to_dict() if exc.report else None, as_json, error=str(exc))
        raise typer.Exit(EXIT_INVALID) from None
    except ReceiptFormatError as exc:
        _fail(str(exc))
    except ChainError as exc:
        _fail(f"could not check against the chain: {exc}")
    except LedgerError as exc:
        _fail(str(exc))
    _report(report.to_dict(), as_json, error=None)


def _fetch_receipt(record_hash: str, api: str | None) -> Any:
    """GET {api}/v1/receipts/{hash}; the service's own verdict is never used."""
    import httpx

    from ledger.hashing import from_hex32
    from ledger.receipt import Receipt

    if not api:
        _fail("--hash needs --api URL of the service to fetch the receipt from")
    try:
        from_hex32(record_hash, what="--hash")
    except ValueError as exc:
        _fail(str(exc))
    url = f"{api.rstrip('/')}/v1/receipts/{record_hash}"
    try:
        response = httpx.get(url, timeout=10.0)
    except httpx.HTTPError as exc:
        _fail(f"cannot fetch {url}: {exc}")
    if response.status_code == 404:
        _fail(f"the service has no receipt for {record_hash}", EXIT_INVALID)
    if response.status_code != 200:
        _fail(f"{url} answered HTTP {response.status_code}")
    receipt = Receipt.from_json(response.content)
    if receipt.hash != record_hash:
        _fail(f"the service returned a receipt for {receipt.hash}, not {record_hash}", EXIT_INVALID)
    return receipt


def _report(report: dict[str, Any] | None, as_json: bool, *, error: str | None) -> None:
    if as_json:
        _print_json({**(report or {"valid": False, "steps": []}), "error": error})
        return
    if report is not None:
        table = Table(title=f"receipt {report['hash']}", show_lines=False)
        table.add_column("step")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        for step in report["steps"]:
            mark = "[green]pass[/]" if step["ok"] else "[bold red]FAIL[/]"
            table.add_row(step["step"], mark, step["detail"])
        out.print(table)
    if error is None:
        out.print("[bold green]valid[/]: the record is anchored as the receipt says")
    else:
        err.print(f"[bold red]invalid[/]: {error}", highlight=False, soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
