"""The wheel, installed in a fresh virtual environment, migrates a database by itself.

`ancla db upgrade` must work where the Docker image and a plain `pip install`
put Ancla: no checkout, no alembic.ini, any working directory. The wheel is
built once per module from the working tree (the files the Dockerfile's build
stage copies), offline, and installed with ``--no-deps`` into a new venv. The
project's dependencies come from the running interpreter's site directories
through a .pth file: a path line there only extends sys.path, and the .pth files
in that directory (among them the editable install's finder, which maps ``app``
onto the checkout) are not run, so nothing of the checkout is importable.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from app.db import normalise_url
from app.models import Base
from tests.support.database import PG_URL_ENV, with_search_path

pytestmark = [pytest.mark.e2e, pytest.mark.db]

REPO = Path(__file__).resolve().parents[2]
# What the Dockerfile's build stage copies before `pip wheel .`.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "ledger", "app", "migrations")
HEAD = ScriptDirectory(str(REPO / "migrations")).get_current_head()


@dataclass(frozen=True)
class Installed:
    venv: Path
    site_packages: Path

    @property
    def ancla(self) -> Path:
        return self.venv / "bin" / "ancla"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=300, **kwargs
    )


def _checked(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = _run(argv, **kwargs)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    # A copy of the build inputs: building in the checkout would write build/
    # there, and setuptools puts stale files left in build/lib into the wheel.
    source = root / "source"
    listed = _checked(
        [
            "git",
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            *BUILD_INPUTS,
        ],
        cwd=REPO,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():  # not deleted in the working tree
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    dist = root / "dist"
    _checked(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", dist, source]
    )
    (wheel,) = dist.glob("ancla-*.whl")

    venv = root / "venv"
    _checked([sys.executable, "-m", "venv", venv])
    site_packages = Path(
        _checked(
            [
                venv / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ]
        ).stdout.strip()
    )
    # This interpreter's site directories, those its own .pth files added included;
    # not the checkout, nor pytest's rootdir, nor the editable finder's path hook.
    dependencies = [
        entry
        for entry in dict.fromkeys(sys.path)
        if Path(entry).name in ("site-packages", "dist-packages") and Path(entry).is_dir()
    ]
    (site_packages / "ancla_test_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    _checked(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel]
    )
    return Installed(venv=venv, site_packages=site_packages)


def _clean_env() -> dict[str, str]:
    """The environment without Ancla's settings or a PYTHONPATH leading back to the checkout."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANCLA_") and k != "PYTHONPATH"}


def test_the_installed_package_is_the_wheel_not_the_checkout(
    installed: Installed, tmp_path: Path
) -> None:
    probe = (
        "import json, sys, app, app.cli, app.migrations, ledger\n"
        "print(json.dumps({'app': app.__file__, 'ledger': ledger.__file__,\n"
        "  'migrations': app.cli.migrations_directory().as_posix(),\n"
        "  'path': sys.path, 'finders': [repr(f) for f in sys.meta_path],\n"
        "  'modules': sorted(m for m in sys.modules if 'editable' in m)}))\n"
    )
    seen = json.loads(
        _checked([installed.python, "-c", probe], cwd=tmp_path, env=_clean_env()).stdout
    )
    for name in ("app", "ledger", "migrations"):
        assert Path(seen[name]).is_relative_to(installed.site_packages), (name, seen[name])
    assert seen["modules"] == [] and not any("editable" in f.lower() for f in seen["finders"])
    # Only the wheel's copy of the packages is reachable on the path.
    with_packages = [p for p in seen["path"] if p and (Path(p) / "app" / "__init__.py").exists()]
    assert with_packages == [str(installed.site_packages)]
    assert str(REPO) not in seen["path"]


@contextmanager
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database, not migrated (tests.support.database's are already)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'x.db'}"
        return
    base = os.environ[PG_URL_ENV]
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield with_search_path(base, schema)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def _tables_and_revision(backend: str, url: str, tmp_path: Path) -> tuple[set[str], str]:
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "x.db") as connection:
            names = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {name for (name,) in names}
            (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        return tables, revision
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return tables, str(revision)
    finally:
        engine.dispose()


def test_ancla_db_upgrade_from_the_wheel_in_an_empty_directory(
    installed: Installed, backend: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    with empty_database(backend, tmp_path) as url:
        for _ in range(2):  # idempotent: the second run finds it at head
            result = _checked(
                [installed.ancla, "db", "upgrade", "--database-url", url],
                cwd=workdir,
                env=_clean_env(),
            )
            assert "database is at the latest schema" in result.stdout
            assert result.stderr == ""
        tables, revision = _tables_and_revision(backend, url, tmp_path)
    assert set(Base.metadata.tables) | {"alembic_version"} <= tables
    assert revision == HEAD
    assert list(workdir.iterdir()) == []  # nothing written where it ran


def test_a_database_newer_than_the_migrations_is_one_error_line(
    installed: Installed, tmp_path: Path
) -> None:
    path = tmp_path / "x.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('9999')")
    connection.close()
    result = _run(
        [installed.ancla, "db", "upgrade", "--database-url", f"sqlite:///{path}"],
        cwd=tmp_path,
        env={**_clean_env(), "COLUMNS": "250"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot migrate the database: ")
    assert "9999" in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_missing_migrations_are_one_error_line(installed: Installed, tmp_path: Path) -> None:
    # As if the package had been installed without its migrations.
    hide = (
        "import sys; sys.modules['app.migrations'] = None\n"
        "from app.cli import main; sys.argv[0] = 'ancla'; main()\n"
    )
    result = _run(
        [installed.python, "-c", hide, "db", "upgrade", "--database-url", "sqlite:///x.db"],
        cwd=tmp_path,
        env={**_clean_env(), "COLUMNS": "250"},
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: cannot find the migrations: no app.migrations package; reinstall ancla\n"
    )
    assert not (tmp_path / "x.db").exists()


def test_the_wheel_ships_the_pages_templates_scripts_and_catalogue(
    installed: Installed, tmp_path: Path
) -> None:
    """Every file of the public pages (app/web/: templates, static files, the vendored
    JavaScript, the .po catalogue) is in the wheel, and a page renders from it."""
    listed = _checked(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "app/web"], cwd=REPO
    ).stdout.split()
    shipped = [name for name in listed if not name.endswith((".py", ".md", ".cfg"))]
    assert any(name.startswith("app/web/static/vendor/") for name in shipped)
    missing = [name for name in shipped if not (installed.site_packages / name).is_file()]
    assert missing == []
    probe = (
        "from app.web import i18n, rendering\n"
        "assert i18n.translations('es').gettext('Search') == 'Buscar'\n"
        "token = i18n.set_language('es')\n"
        "html = rendering.environment.get_template('not_found.html').render(\n"
        "    lang='es', languages=[], path='/', what='There is no batch %(id)s.',\n"
        "    params={'id': '7'})\n"
        "assert 'No existe el lote 7.' in html, html\n"
        "print(rendering.static_url('verify.js'), rendering.TEMPLATES)\n"
    )
    seen = _checked([installed.python, "-c", probe], cwd=tmp_path, env=_clean_env()).stdout
    assert str(installed.site_packages) in seen
