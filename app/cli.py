"""The ``ancla`` command line (Typer + Rich).

Every command maps Ancla's error roots to exit codes in one place
(:func:`_fail`); no traceback or web3 exception reaches the user.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast

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

# soft_wrap: lines are never broken mid-message when output goes to a pipe or a log.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

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


def _configure_logging(*, json_logs: bool = True) -> None:
    from app import logs

    logs.configure(json_logs=json_logs)


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
    from app.verification import CannotCheck, InvalidAnswer, Service
    from ledger.hashing import from_hex32

    if not api:
        _fail("--hash needs --api URL of the service to fetch the receipt from")
    try:
        from_hex32(record_hash, what="--hash")
    except ValueError as exc:
        _fail(str(exc))
    try:
        with Service(api) as service:
            return service.receipt(record_hash)
    except InvalidAnswer as exc:
        _fail(str(exc), EXIT_INVALID)
    except CannotCheck as exc:
        _fail(str(exc))


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


ApiOption = Annotated[
    str | None, typer.Option("--api", help="Base URL of the Ancla service to check")
]
ConfirmationsOption = Annotated[
    int, typer.Option(min=1, help="Confirmations every anchor must have")
]


def _auditor_urls(api: str | None, rpc: str | None, command: str) -> tuple[str, str]:
    """(--api, --rpc or ANCLA_RPC_URL), the chain's checked; --api is required (else exit 2)."""
    from app.verification import CannotCheck, check_url

    if not api:
        _fail(f"{command} needs --api URL of the service to fetch the records from")
    try:
        return api, check_url(rpc or _settings().rpc_url, what="--rpc")
    except CannotCheck as exc:
        _fail(str(exc))


def _audit_call(fn: Any, api: str, *, as_json: bool, invalid: dict[str, Any], **kwargs: Any) -> Any:
    """``fn(Service(api), **kwargs)``: the service's answer that backs nothing (no such
    order) is the verdict invalid, with ``invalid`` as the report (exit 1); not being able
    to ask the service or the chain exits 2."""
    from app.verification import CannotCheck, InvalidAnswer, Service

    try:
        with Service(api) as service:
            return fn(service, **kwargs)
    except InvalidAnswer as exc:
        _verdict({**invalid, "valid": False, "records": []}, str(exc), as_json)
    except CannotCheck as exc:
        _fail(str(exc))
    except ChainError as exc:
        _fail(f"could not check against the chain: {exc}")
    except LedgerError as exc:
        _fail(str(exc))


def _checks_table(title: str, checks: list[Any], columns: tuple[str, ...], order: bool) -> Table:
    """One row per record: each check pass/FAIL (blank: not run), then what failed."""
    from app.verification import CONTENT_STEPS

    table = Table(title=title, show_lines=False)
    for name in ("seq", "type", "hash") if not order else ("order", "type", "hash"):
        table.add_column(name, overflow="fold")
    for name in (*columns, "on chain"):
        table.add_column(name)
    table.add_column("detail", overflow="fold")

    def mark(ok: bool | None) -> str:
        return "" if ok is None else "[green]pass[/]" if ok else "[bold red]FAIL[/]"

    for check in checks:
        ran = {step.step: step.ok for step in check.steps}
        chain = [step.ok for step in check.steps if step.step not in CONTENT_STEPS]
        cells = [mark(ran.get(name)) for name in columns]
        if "prev" in columns and check.seq == 0:
            cells[columns.index("prev")] = "-"
        on_chain = mark(None if not chain else all(chain))
        detail = (
            f"{check.failed_step}: {check.failure.message}"
            if check.failure is not None
            else check.steps[-1].detail
        )
        if not order:
            first = str(check.seq)
        else:  # the record's order, once its bytes are checked
            first = (
                f"{check.order['order_number']} of {check.order['buyer_ruc']}"
                if check.order
                else ""
            )
        table.add_row(first, check.type or "?", check.hash, *cells, on_chain, detail)
    return table


@app.command("verify-order")
def verify_order_command(
    buyer_ruc: Annotated[str, typer.Argument(metavar="BUYER_RUC", help="The buyer's RUC")],
    order_number: Annotated[
        str, typer.Argument(metavar="ORDER_NUMBER", help="e.g. OCAM-2026-1556-7-0")
    ],
    api: ApiOption = None,
    rpc: RpcOption = None,
    confirmations: ConfirmationsOption = 1,
    as_json: JsonOption = False,
) -> None:
    """Verify an order's whole history from a service, trusting only the chain: every
    record re-hashed, its schema, order and prev link, the history's rules, every receipt
    on chain.

    Exit 0: valid. 1: invalid (the failing record and step are named; also when the
    service has no such order). 2: could not check (bad arguments, service or chain
    unreachable, an answer that is not one).
    """
    from app import verification

    api_url, rpc_url = _auditor_urls(api, rpc, "verify-order")
    try:
        buyer = verification.check_buyer_ruc(buyer_ruc)
        number = verification.check_order_number(order_number)
    except verification.CannotCheck as exc:
        _fail(str(exc))
    result = _audit_call(
        verification.verify_order,
        api_url,
        as_json=as_json,
        invalid={"order": {"buyer_ruc": buyer, "order_number": number}},
        buyer_ruc=buyer,
        order_number=number,
        rpc_url=rpc_url,
        confirmations=confirmations,
    )
    report = result.to_dict()
    if not as_json:
        out.print(
            _checks_table(
                f"order {number} of buyer {buyer}: {len(result.records)} records from {api_url}",
                result.records,
                ("record", "schema", "order", "prev", "rules"),
                order=False,
            )
        )
    _verdict(
        report,
        result.error,
        as_json,
        valid=f"every record of order {number} of buyer {buyer} is as recorded, "
        "linked to the one before it, and anchored on chain",
    )


@app.command("verify-document")
def verify_document_command(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="The file to look up")],
    api: ApiOption = None,
    rpc: RpcOption = None,
    confirmations: ConfirmationsOption = 1,
    as_json: JsonOption = False,
) -> None:
    """Hash a file (SHA-256, streamed), find the records that bind it on a service, and
    verify each against the chain.

    Exit 0: at least one record binds the file and all verify. 1: no record binds it, or
    one fails. 2: could not check (unreadable file, service or chain unreachable).
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from app import verification

    api_url, rpc_url = _auditor_urls(api, rpc, "verify-document")
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        disable=as_json or not err.is_terminal,
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task(f"hashing {path.name}", total=path.stat().st_size)
            sha256, size = verification.file_sha256(
                path, progress=lambda n: progress.advance(task, n)
            )
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")
    result = _audit_call(
        verification.verify_document,
        api_url,
        as_json=as_json,
        invalid={"file": str(path), "sha256": sha256, "size": size},
        sha256=sha256,
        size=size,
        rpc_url=rpc_url,
        confirmations=confirmations,
    )
    report = {"file": str(path), **result.to_dict()}
    if not as_json:
        out.print(f"{path}: SHA-256 {sha256} ({size:,} bytes)", highlight=False)
        if result.records:
            out.print(
                _checks_table(
                    f"records that bind it, from {api_url}",
                    result.records,
                    ("record", "schema", "binds"),
                    order=True,
                )
            )
    _verdict(
        report,
        result.error,
        as_json,
        valid=f"{len(result.records)} record(s) bind this file, each as recorded and "
        "anchored on chain",
    )


def _verdict(report: dict[str, Any], error: str | None, as_json: bool, valid: str = "") -> NoReturn:
    """The machine report, or the verdict's line; then the exit code of the verdict."""
    if as_json:
        _print_json({**report, "error": error})
    elif error is None:
        out.print(f"[bold green]valid[/]: {valid}", highlight=False)
    else:
        err.print(f"[bold red]invalid[/]: {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_VALID if error is None else EXIT_INVALID)


# -- database -------------------------------------------------------------------

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision`` to ``database_url`` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


# The Alembic scripts ship inside the package: setup.py installs the checkout's
# migrations/ folder as this subpackage (an editable install maps it there too).
MIGRATIONS_PACKAGE = "app.migrations"


def migrations_directory() -> Path:
    """Where the installed package's Alembic scripts are (env.py, versions/).

    Found through the import system, never through the working directory, so an
    installed ``ancla`` migrates from anywhere with no checkout and no alembic.ini.
    """
    from importlib.resources import files

    try:
        location = files(MIGRATIONS_PACKAGE)
    except ModuleNotFoundError:
        _fail(f"cannot find the migrations: no {MIGRATIONS_PACKAGE} package; reinstall ancla")
    if not isinstance(location, Path) or not (location / "env.py").is_file():
        _fail(f"cannot find the migrations: no env.py in {location}; reinstall ancla")
    return location


def alembic_config(database_url: str) -> Any:
    """Alembic's configuration for ``database_url``, with the package's migrations.

    Built in code, not read from alembic.ini (which stays at the checkout's root
    for ``alembic upgrade head``): migrations/env.py needs only the URL, and
    ``configure_logging`` off so that no logging setup is expected from a file.
    """
    from alembic.config import Config

    from app.db import normalise_url

    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="[env: ANCLA_DATABASE_URL]")
]


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Apply all migrations (creates the SQLite file under ./var by default)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    settings = _settings(database_url=database_url)
    try:
        upgrade_database(settings.database_url)
    except SQLAlchemyError as exc:
        _fail(
            f"cannot migrate the database: {exc.__class__.__name__}: "
            f"{getattr(exc, 'orig', None) or exc}"
        )
    except CommandError as exc:
        # e.g. the database is at a revision these migrations do not have (newer code's).
        _fail(f"cannot migrate the database: {exc}")
    out.print("database is at the latest schema")


def _session(settings: Any) -> Any:
    from app.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.database_url, pool_size=1))()


# -- agencies -------------------------------------------------------------------

agency_app = typer.Typer(help="Agencies and their API keys.", no_args_is_help=True)
app.add_typer(agency_app, name="agency")


def _service_call(fn: Any, **kwargs: Any) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    from app.errors import AnclaError

    try:
        return fn(**kwargs)
    except AnclaError as exc:
        _fail(exc.detail, 1)
    except SQLAlchemyError as exc:
        _fail(
            f"database error: {exc.__class__.__name__} "
            "(is the schema up to date? run `ancla db upgrade`)"
        )


@agency_app.command("add")
def agency_add(
    ruc: Annotated[str, typer.Option(help="The agency's RUC (11 digits)")],
    name: Annotated[str, typer.Option(help="The agency's name")],
    database_url: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register an agency and print its API key (shown once; only its hash is stored)."""
    from app.services.agencies import add_agency

    settings = _settings(database_url=database_url)
    with _session(settings) as session:
        created = _service_call(add_agency, session=session, ruc=ruc, name=name)
    if as_json:
        _print_json(
            {"ruc": created.agency.ruc, "name": created.agency.name, "api_key": created.api_key}
        )
        return
    out.print(f"agency {created.agency.ruc} ({created.agency.name}) added")
    out.print(f"API key (shown once): [bold]{created.api_key}[/]", highlight=False)


@agency_app.command("list")
def agency_list(database_url: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """List agencies (never their keys)."""
    from app.services.agencies import list_agencies

    settings = _settings(database_url=database_url)
    with _session(settings) as session:
        agencies = _service_call(list_agencies, session=session)
    rows = [
        {
            "ruc": a.ruc,
            "name": a.name,
            "created_at": a.created_at.isoformat(),
            "revoked_at": a.revoked_at.isoformat() if a.revoked_at else None,
        }
        for a in agencies
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table("RUC", "name", "created", "revoked")
    for row in rows:
        table.add_row(
            row["ruc"], row["name"], row["created_at"][:19], (row["revoked_at"] or "")[:19]
        )
    out.print(table)


@agency_app.command("revoke")
def agency_revoke(
    ruc: Annotated[str, typer.Option(help="The agency's RUC")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke an agency's API key at once (its records stay)."""
    from app.services.agencies import revoke_agency

    settings = _settings(database_url=database_url)
    with _session(settings) as session:
        agency = _service_call(revoke_agency, session=session, ruc=ruc)
    out.print(f"agency {agency.ruc}: API key revoked")


# -- service, worker, anchoring ---------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run `ancla worker` apart")
    ] = False,
) -> None:
    """Run the production API (settings from ANCLA_* variables)."""
    import os

    from app.serving import ServeError
    from app.serving import serve as run_uvicorn

    settings = _settings()  # refuse bad settings before forking workers
    if not no_worker and not settings.contract_address:
        _fail("ANCLA_CONTRACT_ADDRESS is not set: deploy with `ancla deploy`, or serve --no-worker")
    # The API processes never anchor: the anchor worker is a process of its own
    # beside them (app.serving.AnchorProcess), unless --no-worker.
    os.environ["ANCLA_RUN_WORKER"] = "0"
    try:
        run_uvicorn(host=host, port=port, workers=workers, anchor=not no_worker)
    except ServeError as exc:
        _fail(str(exc))


@app.command()
def worker() -> None:
    """Run the anchor worker alone: seal, anchor, confirm (one leader at a time)."""
    import signal
    import threading

    from app.runtime import Runtime

    settings = _settings()
    _configure_logging(json_logs=settings.json_logs)
    runtime = Runtime.create(settings)
    try:
        anchor_worker = runtime.make_worker()
    except (LedgerError, RuntimeError) as exc:
        _fail(str(exc))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    err.print(f"anchor worker: chain {settings.rpc_url}, contract {settings.contract_address}")
    anchor_worker.run(runtime.engine, stop)
    runtime.engine.dispose()


@app.command()
def anchor(as_json: JsonOption = False) -> None:
    """Seal what is pending now and anchor every sealed batch, then exit."""
    from app.runtime import Runtime
    from app.services.leader import LeaderLock

    settings = _settings()
    runtime = Runtime.create(settings)
    try:
        anchor_worker = runtime.make_worker()
        lock = LeaderLock(runtime.engine)
        if not lock.try_acquire():
            _fail("another anchor worker is leading; it will anchor pending records itself", 1)
        try:
            report = anchor_worker.tick(force_seal=True)
        finally:
            lock.release()
    except (LedgerError, RuntimeError) as exc:
        _fail(str(exc))
    finally:
        runtime.engine.dispose()
    data = {
        "sealed": report.sealed,
        "anchored": report.anchored,
        "final": report.finalized,
        "reset": report.reset,
    }
    if as_json:
        _print_json(data)
    else:
        out.print(
            f"sealed {len(report.sealed)} batch(es), anchored {len(report.anchored)}, "
            f"final {len(report.finalized)}"
        )


@app.command("verify")
def verify_command(
    batch: Annotated[int | None, typer.Option("--batch", min=1, help="Only this batch")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
            help="Only what was accepted or sealed since this date (UTC)",
        ),
    ] = None,
    buyer: Annotated[str | None, typer.Option(help="Only this buyer's records (RUC)")] = None,
    window: Annotated[
        float | None,
        typer.Option(
            min=0, help="Seconds a record may stay unanchored [default: batch max age + 300]"
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Processes checking ranges of batches at once (default: 1)"
        ),
    ] = 1,
    rpc: RpcOption = None,
    database_url: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-verify the whole ledger: every record re-hashed, every batch root rebuilt, every
    anchor checked on chain. Exit 0 clean, 1 discrepancies, 2 could not run."""
    if jobs > 1:
        from app.processes import start_worker_server

        # First: the server the workers are forked from imports the audit while
        # this process imports it too.
        start_worker_server("app.services.audit")
    from datetime import UTC, timedelta

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import make_engine, make_session_factory
    from app.services.audit import Auditor, AuditScope, WorkerSetup
    from ledger.chain import ChainClient

    settings = _settings(rpc_url=rpc, database_url=database_url)
    if not settings.contract_address:
        _fail("ANCLA_CONTRACT_ADDRESS is not set: the registry to check anchors against")
    if buyer is not None and not (len(buyer) == 11 and buyer.isdigit()):
        _fail(f"--buyer must be an 11-digit RUC, got {buyer!r}")
    scope = AuditScope(
        batch_id=batch, since=since.replace(tzinfo=UTC) if since else None, buyer=buyer
    )
    engine = make_engine(settings.database_url, pool_size=2)
    client = ChainClient(settings.rpc_url, timeout=settings.rpc_timeout_seconds)
    pending = timedelta(
        seconds=window if window is not None else settings.batch_max_age_seconds + 300
    )
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=as_json or not err.is_terminal,
        transient=True,
    )
    try:
        with progress:
            auditor = Auditor(
                session_factory=make_session_factory(engine),
                client=client,
                registry=client.registry(settings.contract_address),
                confirmations=settings.confirmations,
                pending_window=pending,
            )
            task = progress.add_task("records", total=auditor.count_records(scope))
            auditor.progress = lambda n: progress.advance(task, n)
            worker = WorkerSetup(
                database_url=settings.database_url,
                rpc_url=settings.rpc_url,
                contract=settings.contract_address,
                rpc_timeout=settings.rpc_timeout_seconds,
            )
            report = auditor.run(scope, jobs=jobs, worker=worker)
    except LedgerError as exc:
        _fail(f"could not check against the chain: {exc}")
    except SQLAlchemyError as exc:
        _fail(
            f"could not read the database: {exc.__class__.__name__}: "
            f"{getattr(exc, 'orig', None) or exc}"
        )
    finally:
        engine.dispose()
    if as_json:
        _print_json(report.to_dict())
    else:
        _print_audit(report)
    raise typer.Exit(EXIT_VALID if report.ok else EXIT_INVALID)


def _print_audit(report: Any) -> None:
    out.print(
        f"checked {report.records_checked:,} records, {report.batches_checked:,} batches, "
        f"{report.anchors_checked:,} anchors"
    )
    if report.ok:
        out.print("[bold green]no discrepancies[/]")
        return
    table = Table("kind", "batch", "record", "detail", title="discrepancies")
    for d in report.discrepancies:
        table.add_row(
            d.kind, "" if d.batch_id is None else str(d.batch_id), d.record_hash or "", d.detail
        )
    out.print(table)
    err.print(f"[bold red]{len(report.discrepancies)} discrepancies[/]")


@app.command("import")
def import_command(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="JSON lines (orders or events), Perú Compras CSV (ReportePCBienesYYYYMM.csv) "
            "or an OCDS package",
        ),
    ],
    file_format: Annotated[
        str,
        typer.Option("--format", help="auto, jsonl, events-jsonl, perucompras-csv or ocds"),
    ] = "auto",
    encoding: Annotated[
        str | None, typer.Option(help="CSV encoding (default: detected; usually Latin-1)")
    ] = None,
    database_url: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record purchase orders (or order events) from a file. Rows that fail are reported with
    their line (or JSON pointer) and reason and do not stop the rest; importing again records
    nothing twice. A later Perú Compras report appends each recorded order's change of state
    to its history as a status event."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import make_engine, make_session_factory
    from app.opendata import importing

    if file_format not in ("auto", "jsonl", "events-jsonl", "perucompras-csv", "ocds"):
        _fail(
            "--format must be auto, jsonl, events-jsonl, perucompras-csv or ocds, "
            f"not {file_format!r}"
        )
    if not path.is_file():
        _fail(f"cannot read {path}: no such file")
    settings = _settings(database_url=database_url)
    try:
        kind = (
            importing.detect_format(path)
            if file_format == "auto"
            else cast("importing.Format", file_format)
        )
    except ValueError as exc:
        _fail(str(exc))
    # Record.source holds at most 200 characters.
    source = f"import:{path.name}"[:200]
    try:
        rows = importing.read_rows(path, kind, encoding=encoding)
        engine = make_engine(settings.database_url, pool_size=2)
        progress = Progress(
            SpinnerColumn(),
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=as_json or not err.is_terminal,
            transient=True,
        )
        try:
            with progress:
                task = progress.add_task(f"importing {path.name}", total=None)
                report = importing.import_rows(
                    session_factory=make_session_factory(engine),
                    rows=rows,
                    source=source,
                    progress=lambda n: progress.update(task, completed=n),
                    events=kind == "events-jsonl",
                )
        finally:
            engine.dispose()
    except (ValueError, OSError) as exc:
        _fail(f"cannot import {path}: {exc}")
    except SQLAlchemyError as exc:
        _fail(
            f"database error: {exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc} "
            "(rows already committed stay; run the import again to finish)"
        )
    data = report.to_dict()
    if as_json:
        _print_json({"file": str(path), "format": kind, **data})
    else:
        for problem in data["problems"]:
            where = problem.get("pointer") or f"line {problem['line']}"
            err.print(
                f"{where}: {problem['kind']}: {problem['reason']}", highlight=False, soft_wrap=True
            )
        unknown = f"{data['not_found']} of unknown orders, " if data["not_found"] else ""
        out.print(
            f"{path.name}: {data['rows']} rows: {data['created']} recorded, "
            f"{data['status_events']} status changes appended, "
            f"{data['existing']} already recorded, {data['conflicts']} conflicts, "
            f"{unknown}{data['invalid']} invalid"
        )
    raise typer.Exit(0 if not data["problems"] else 1)


@app.command("export")
def export_command(
    file_format: Annotated[
        str, typer.Option("--format", help="ocds (release package), ocds-record or csv")
    ] = "ocds",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
    buyer: Annotated[str | None, typer.Option(help="Only this buyer's orders (RUC)")] = None,
    since: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Orders issued since (UTC)")
    ] = None,
    base_url: Annotated[
        str, typer.Option(help="Public URL of the service, for receipt links")
    ] = "http://127.0.0.1:8000",
    database_url: DatabaseOption = None,
) -> None:
    """Open data out: OCDS 1.1 release or record package, or CSV (one row per order)."""
    from datetime import UTC

    from sqlalchemy.exc import SQLAlchemyError

    from app.db import make_engine, make_session_factory
    from app.opendata import export
    from app.opendata.packages import EmptyPackage

    if file_format not in export.EXPORT_FORMATS:
        _fail(f"--format must be ocds, ocds-record or csv, not {file_format!r}")
    if buyer is not None and not (len(buyer) == 11 and buyer.isdigit()):
        _fail(f"--buyer must be an 11-digit RUC, got {buyer!r}")
    settings = _settings(database_url=database_url)
    engine = make_engine(settings.database_url, pool_size=1)
    since_utc = since.replace(tzinfo=UTC) if since else None
    try:
        with make_session_factory(engine)() as session:
            target = (
                output.open("w", encoding="utf-8", newline="")
                if output
                else open(sys.stdout.fileno(), "w", encoding="utf-8", newline="", closefd=False)
            )
            with target:
                count = export.write_export(
                    target,
                    session=session,
                    format=file_format,
                    buyer=buyer,
                    since=since_utc,
                    base_url=base_url,
                    genesis=_genesis_or_none(settings),
                )
    except OSError as exc:
        _fail(f"cannot write {output}: {exc}")
    except EmptyPackage:
        _fail("no recorded orders match; an OCDS package cannot be empty", 1)
    except SQLAlchemyError as exc:
        _fail(f"database error: {exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}")
    finally:
        engine.dispose()
    if output is not None:
        err.print(f"wrote {count} orders to {output}")


def _genesis_or_none(settings: Any) -> str | None:
    """The genesis hash of the configured chain (None if it cannot be read now), so an
    export says the statuses the service's receipts say (app.services.receipts)."""
    from ledger.chain import ChainClient

    try:
        return ChainClient(settings.rpc_url, timeout=settings.rpc_timeout_seconds).genesis_hash()
    except LedgerError:
        return None


@app.command()
def dev(
    rpc: Annotated[
        str | None, typer.Option("--rpc", help="Use this chain instead of starting Hardhat")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    var: Annotated[Path, typer.Option(help="Where the SQLite file and logs live")] = Path("var"),
) -> None:
    """Everything on this machine: SQLite, a local Hardhat node, API + worker + pages."""
    import os
    import signal

    import uvicorn

    from app import dev as devmod
    from app.main import create_app, tune_gc_for_serving

    var.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("ANCLA_DATABASE_URL") or f"sqlite:///{var.resolve()}/ancla.db"
    upgrade_database(database_url)
    signer_key = os.environ.get("ANCLA_SIGNER_KEY") or devmod.DEV_KEY_0
    node = None
    try:
        try:
            rpc_url, node = devmod.start_chain(var, rpc)
            contract = devmod.ensure_contract(var, rpc_url, signer_key)
        except (LedgerError, RuntimeError, FileNotFoundError) as exc:
            _fail(f"cannot set up the dev chain: {exc}")
        api_key = devmod.demo_agency_key(database_url)
        settings = _settings(
            environment="dev",
            database_url=database_url,
            rpc_url=rpc_url,
            contract_address=contract,
            signer_key=signer_key,
            batch_max_age_seconds=float(os.environ.get("ANCLA_BATCH_MAX_AGE_SECONDS", "2")),
            # QR codes lead to this very server unless told otherwise.
            public_url=os.environ.get("ANCLA_PUBLIC_URL") or f"http://{host}:{port}",
        )
        base_url = f"http://{host}:{port}"
        out.print(f"[bold]Ancla dev[/] on {base_url}  (docs: {base_url}/docs)")
        out.print(f"  pages     {base_url}/  (verify in the browser: {base_url}/verificar)")
        out.print(f"  database  {database_url}")
        out.print(f"  chain     {rpc_url}  (AnchorRegistry {contract})")
        out.print(f"  agency    {devmod.DEMO_AGENCY_RUC} {devmod.DEMO_AGENCY_NAME}")
        out.print(f"  API key   [bold]{api_key}[/]", highlight=False)
        out.print("Record an order:", highlight=False)
        out.print(devmod.curl_example(base_url, api_key), highlight=False, soft_wrap=True)
        _configure_logging(json_logs=False)
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; turning
        # them into SystemExit lets the `finally` below stop the Hardhat node.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        dev_app = create_app(settings, worker=True)
        tune_gc_for_serving()
        uvicorn.run(
            dev_app,
            host=host,
            port=port,
            log_level="info",
            log_config=None,
        )
    finally:
        if node is not None:
            node.stop()


# -- monitor --------------------------------------------------------------------------


@app.command("monitor")
def monitor_command(
    api: ApiOption = None,
    rpc: RpcOption = None,
    contract: Annotated[
        str | None,
        typer.Option(help="The AnchorRegistry's address [env: ANCLA_CONTRACT_ADDRESS]"),
    ] = None,
    from_block: Annotated[
        int, typer.Option(min=0, help="First block to read (the registry's deployment block)")
    ] = 0,
    mirror: Annotated[
        str, typer.Option(help="The mirror: a SQLite file, or a postgresql:// URL")
    ] = "mirror.db",
    once: Annotated[
        bool,
        typer.Option(
            "--once/--follow",
            help="Catch up, report and exit (the default), or keep up with new anchors",
        ),
    ] = True,
    as_json: JsonOption = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve Prometheus metrics on 127.0.0.1:PORT"),
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, help="--follow: seconds between passes")
    ] = 15.0,
    recheck: Annotated[
        int, typer.Option(min=0, help="Verified batches fetched again and compared, per pass")
    ] = 10,
    retries: Annotated[int, typer.Option(min=1, help="Attempts per request to the service")] = 4,
    confirmations: ConfirmationsOption = 1,
) -> None:
    """Watch a service without trusting it: learn its batches from the chain, fetch each
    batch's tree and records, check and mirror them, and report findings by kind (§9).

    --once exit 0: clean. 1: findings. 2: could not run (bad arguments, mirror refused,
    service or chain not answering). --follow: findings as JSON lines on stdout.
    """
    import os
    import signal
    import threading

    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from app.services import monitor as mon
    from app.services.mirror import MirrorRefused, describe_url, mirror_url

    if not api:
        _fail("monitor needs --api URL of the service to watch")
    rpc_url = rpc or os.environ.get("ANCLA_RPC_URL")
    address = contract or os.environ.get("ANCLA_CONTRACT_ADDRESS")
    if not rpc_url or not address:
        _fail("monitor needs --rpc URL of the chain and --contract ADDRESS of its registry")
    _configure_logging(json_logs=as_json or not once)
    url = mirror_url(mirror)
    try:
        upgrade_database(url)
    except (SQLAlchemyError, CommandError) as exc:
        _fail(f"cannot open the mirror {describe_url(url)}: {getattr(exc, 'orig', None) or exc}")
    metrics = mon.MonitorMetrics()

    def line(reported: mon.Reported) -> None:
        # --follow: each finding once, when first seen (the mirror keeps them all).
        if reported.new:
            sys.stdout.write(json.dumps(reported.to_dict(), ensure_ascii=False) + "\n")
            sys.stdout.flush()

    try:
        watcher = mon.open_monitor(
            api_url=api,
            rpc_url=rpc_url,
            contract=address,
            mirror_database_url=url,
            from_block=from_block,
            confirmations=confirmations,
            recheck=recheck,
            retry=mon.RetryPolicy(attempts=retries),
            metrics=metrics,
            on_finding=None if once else line,
        )
    except (mon.MonitorError, MirrorRefused) as exc:
        _fail(str(exc))
    except LedgerError as exc:
        _fail(f"cannot read the chain at {rpc_url}: {exc}")
    except SQLAlchemyError as exc:
        _fail(f"mirror database error: {getattr(exc, 'orig', None) or exc}")
    try:
        if metrics_port is not None:
            metrics.serve(metrics_port)
        if not once:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            watcher.follow(stop=stop, interval=interval)
            raise typer.Exit(0)
        report = watcher.run_pass()
        counts = mon.mirror_counts(watcher.engine)
    except OSError as exc:
        _fail(f"cannot serve metrics on port {metrics_port}: {exc.strerror or exc}")
    except SQLAlchemyError as exc:
        _fail(f"mirror database error: {getattr(exc, 'orig', None) or exc}")
    finally:
        watcher.close()
    _monitor_report(report.to_dict(), counts, describe_url(url), as_json)


def _monitor_report(
    report: dict[str, Any], counts: dict[str, int], mirror: str, as_json: bool
) -> NoReturn:
    """--once's report, then its exit code: 2 if the pass stopped, 1 findings, 0 clean."""
    findings = report["findings"]
    if as_json:
        _print_json({**report, "mirror": {"url": mirror, **counts}})
    else:
        for finding in findings:
            mark = "" if finding["new"] else " (seen before)"
            out.print(
                f"[bold red]{finding['kind']}[/]{mark}: {finding['message']}", highlight=False
            )
        scanned = (
            f"read blocks {report['scanned_from']}-{report['scanned_to']}"
            if report["scanned_from"] is not None
            else f"nothing new on chain up to block {report['scanned_to']}"
        )
        new = sum(1 for finding in findings if finding["new"])
        out.print(
            f"{scanned}; {report['batches_checked']} batches checked, "
            f"{report['batches_rechecked']} checked again; the mirror ({mirror}) holds "
            f"{counts['verified']} verified batches, {counts['flawed']} with findings, "
            f"{counts['seen']} not checked yet, {counts['records']:,} records "
            f"({report['records_mirrored']:,} mirrored now); "
            f"{len(findings)} findings ({new} new)",
            highlight=False,
        )
    if report["error"] is not None:
        err.print(
            f"[bold red]error:[/] the pass stopped: {report['error']}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_CANNOT_CHECK)
    raise typer.Exit(EXIT_INVALID if findings else EXIT_VALID)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
