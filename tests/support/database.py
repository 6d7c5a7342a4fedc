"""Fresh, migrated databases for tests: a SQLite file, or a PostgreSQL schema.

PostgreSQL runs whenever ANCLA_TEST_DATABASE_URL is set (CI sets it): each test
gets its own schema (search_path), migrated with Alembic like production.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.cli import upgrade_database
from app.db import normalise_url

PG_URL_ENV = "ANCLA_TEST_DATABASE_URL"


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_URL_ENV) else ["sqlite"]


def with_search_path(url: str, schema: str) -> str:
    parsed = make_url(normalise_url(url))
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    # Lets teardown find (and end) every session of this test, even a killed worker's.
    query["application_name"] = schema
    return parsed.set(query=query).render_as_string(hide_password=False)


@contextmanager
def fresh_database(backend: str, tmp_path: Path, *, pg_url: str | None = None) -> Iterator[str]:
    """Yield the URL of an empty, migrated database; drop it afterwards.

    PostgreSQL: a new schema in ``pg_url`` (default: ANCLA_TEST_DATABASE_URL).
    The benchmarks use this too.
    """
    if backend == "sqlite":
        tmp_path.mkdir(parents=True, exist_ok=True)
        path = tmp_path / f"ancla-{secrets.token_hex(4)}.db"
        url = f"sqlite:///{path}"
        upgrade_database(url)
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm", ".anchor.lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    base = pg_url or os.environ[PG_URL_ENV]
    schema = f"t_{secrets.token_hex(6)}"
    # pre_ping: a test may restart PostgreSQL, killing the pooled admin connection.
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = with_search_path(base, schema)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as connection:
            # Sessions of a killed worker may still hold the schema; end them first.
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND application_name = :schema"
                ),
                {"schema": schema},
            )
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
