"""The layering of DESIGN §1, as rules a test enforces (not a convention).

1. ``ledger/`` is the protocol, importable alone: it imports nothing of
   ``app``, and no SQL, HTTP-framework or migration library.
2. Route and page modules (every module under ``app/api/`` and ``app/web/``
   that makes an ``APIRouter``) are thin: they build no query, open no
   session and run no statement. They import nothing of SQLAlchemy,
   ``app.models`` or ``app.db``, and call no ``execute``, ``scalar(s)``,
   ``commit``, session factory or method of a ``session``: reads and writes are service calls.
   (``app/api/deps.py`` is where FastAPI's dependencies open the
   per-request session, as its one job.)
3. The generic parts (ingest, sealing, receipts, batches, anchoring, audit)
   do not know which record schemas exist: they import no schema module,
   only ``app.records.registry``.
4. Record schemas are data rules: ``app/records/`` imports no service,
   route, model or database module.

Each rule is checked on the modules' syntax trees, so a violation names
the file and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]

SQL_AND_HTTP = ("sqlalchemy", "fastapi", "starlette", "alembic", "psycopg", "uvicorn")
GENERIC_PARTS = (
    "app/services/ingest.py",
    "app/services/batching.py",
    "app/services/receipts.py",
    "app/services/batches.py",
    "app/services/anchoring.py",
    "app/services/audit.py",
    "app/services/chains.py",
    "app/services/histories.py",
)
# Calls a route must leave to services.
STATEMENT_CALLS = {"execute", "scalar", "scalars", "commit", "rollback"}
SESSION_MAKERS = {"session_factory", "read_session_factory", "Session", "sessionmaker"}


def modules(folder: str, root: Path = ROOT) -> list[Path]:
    return sorted((root / folder).rglob("*.py"))


def imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = path.relative_to(root).parent.parts
                base = ".".join(package[: len(package) - node.level + 1])
                yield node.lineno, f"{base}.{node.module}" if node.module else base
            elif node.module:
                yield node.lineno, node.module
                for alias in node.names:
                    yield node.lineno, f"{node.module}.{alias.name}"


def under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def where(path: Path, line: int, root: Path = ROOT) -> str:
    return f"{path.relative_to(root)}:{line}"


def route_modules(root: Path = ROOT) -> list[Path]:
    return [
        path
        for path in modules("app/api", root) + modules("app/web", root)
        if "APIRouter(" in path.read_text("utf-8")
    ]


def route_offences(root: Path = ROOT) -> list[str]:
    """Every import or call of a route module that rule 2 forbids."""
    offences = []
    for path in route_modules(root):
        offences += [
            f"{where(path, line, root)} imports {module}"
            for line, module in imports(path, root)
            if under(module, "sqlalchemy", "app.models", "app.db")
        ]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            called = node.func
            name = (
                called.attr
                if isinstance(called, ast.Attribute)
                else called.id
                if isinstance(called, ast.Name)
                else None
            )
            on_session = (
                isinstance(called, ast.Attribute)
                and isinstance(called.value, ast.Name)
                and called.value.id == "session"
            )
            if name in STATEMENT_CALLS or name in SESSION_MAKERS or on_session:
                offences.append(f"{where(path, node.lineno, root)} calls {name}()")
    return offences


def test_ledger_imports_neither_the_service_nor_sql_nor_http() -> None:
    offences = [
        f"{where(path, line)} imports {module}"
        for path in modules("ledger")
        for line, module in imports(path)
        if under(module, "app", *SQL_AND_HTTP)
    ]
    assert offences == []


def test_route_modules_build_no_query_and_open_no_session() -> None:
    assert {p.name for p in route_modules()} >= {"orders.py", "public.py", "export.py", "ops.py"}
    assert route_offences() == []


def test_generic_parts_know_no_record_schema() -> None:
    offences = [
        f"{where(ROOT / name, line)} imports {module}"
        for name in GENERIC_PARTS
        for line, module in imports(ROOT / name)
        if under(module, "app.records") and not under(module, "app.records.registry")
    ]
    assert offences == []


def test_record_schemas_import_no_service_route_or_database() -> None:
    offences = [
        f"{where(path, line)} imports {module}"
        for path in modules("app/records")
        for line, module in imports(path)
        if under(module, "app.services", "app.api", "app.web", "app.models", "app.db", "sqlalchemy")
    ]
    assert offences == []


def test_the_route_rule_sees_a_violation(tmp_path: Path) -> None:
    """The check above is not vacuous: a route that runs a query is caught."""
    api = tmp_path / "app" / "api"
    api.mkdir(parents=True)
    (api / "probe.py").write_text(
        "from fastapi import APIRouter\nfrom sqlalchemy import select\n"
        "router = APIRouter()\n\ndef f(runtime):\n"
        "    with runtime.session_factory() as session:\n"
        "        session.get(object, 1)\n"
        "        return session.execute(select(1))\n",
        "utf-8",
    )
    assert route_offences(tmp_path) == [
        "app/api/probe.py:2 imports sqlalchemy",
        "app/api/probe.py:2 imports sqlalchemy.select",
        "app/api/probe.py:6 calls session_factory()",
        "app/api/probe.py:7 calls get()",
        "app/api/probe.py:8 calls execute()",
    ]
