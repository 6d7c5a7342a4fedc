"""Engine and session factory: SQLite (embedded default, WAL) or PostgreSQL.

Durability: a record answered with 2xx must survive a crash, so SQLite runs
with ``synchronous=FULL`` (fsync at every commit) in WAL mode; PostgreSQL is
durable at commit by default.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, cast
from weakref import WeakKeyDictionary

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

SessionFactory = sessionmaker[Session]


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


log = logging.getLogger("ancla.db")

# SQLite checkpoints (copies the WAL back into the database file) inside the
# commit that takes the WAL past this many pages, while that writer still
# holds the write lock; by default at 1,000 pages, that is after nearly every
# group of orders, and it was a quarter of the lock's hold per record (9 of
# 35 µs, in-process, measured). The copying is done by a thread of its own instead
# (_Checkpointer), outside the lock; this threshold only bounds the WAL (64
# MiB) when writers never leave the checkpointer a moment: a checkpoint in a
# commit also lets the next writer start the WAL again from its beginning.
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 16_384


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Writers queue instead of failing at once with "database is locked".
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            # As many as the thread pool has threads (anyio: 40): an overflow
            # connection is closed after use and reopened with its PRAGMAs.
            pool_size=max(pool_size, 40),
            max_overflow=10,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkin", _restore_read_cache)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # A restarted PostgreSQL leaves dead pooled connections; recycle them.
        pool_recycle=1800,
    )


def make_read_engine(engine: Engine, *, pool_size: int = 8) -> Engine:
    """An engine for public reads that are one statement each (a receipt, a record).

    PostgreSQL: its own small pool of autocommit connections. In a
    transaction, psycopg sends BEGIN before the statement and the pool a
    ROLLBACK when the session ends, each a round trip; in autocommit a
    lookup makes two (the pool's liveness check and the statement), and took
    0.9 instead of 1.3-1.6 ms in-process. One statement needs no
    transaction to see one consistent state. (Switching the main engine's
    connections to autocommit per checkout cost more round trips than it
    saved, hence a pool of its own.) A fixed pool, no overflow: an overflow
    connection is closed when returned, and opening one costs PostgreSQL
    more than a lookup (measured: its CPU per lookup doubled under 8
    concurrent readers with a pool of 5 and overflow). A lookup holds its
    connection for about a millisecond, so more concurrent readers wait
    briefly for one instead, and each API process opens at most
    ``pool_size`` of them. SQLite: ``engine`` itself; it has no round
    trips, and a second pool would only add connections to the file.
    """
    if engine.dialect.name != "postgresql":
        return engine
    return create_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


# A write transaction's pages stay in SQLite's page cache until its commit
# writes them to the WAL. The default cache (2 MiB, 500 pages) is far smaller
# than what a group of orders dirties (2,000 orders: about 4,000 pages, mostly
# random leaves of the hash index), so SQLite spilled pages to the WAL in the
# middle of the transaction, some more than once, while holding the write
# lock: a third of its inserting time (in-process, measured). A connection
# gets a cache of this size (KiB) for a serialized write, and its own back
# when returned to the pool, so that the pool's many readers do not each keep
# 64 MiB of pages.
SQLITE_WRITE_CACHE_KIB = 65_536
_READ_CACHE = "ancla.read_cache_size"


def _use_write_cache(session: Session) -> None:
    fairy = session.connection().connection
    if _READ_CACHE in fairy.info:
        return
    dbapi_connection = cast(sqlite3.Connection, fairy.dbapi_connection)
    (read_cache,) = dbapi_connection.execute("PRAGMA cache_size").fetchone()
    dbapi_connection.execute(f"PRAGMA cache_size={-SQLITE_WRITE_CACHE_KIB}")
    fairy.info[_READ_CACHE] = int(read_cache)


def _restore_read_cache(dbapi_connection: Any, record: Any) -> None:
    read_cache = record.info.pop(_READ_CACHE, None)
    if read_cache is not None and dbapi_connection is not None:
        dbapi_connection.execute(f"PRAGMA cache_size={int(read_cache)}")


# A checkpointer thread ends after this long without writes (and closes its
# connection); the next write starts another.
CHECKPOINTER_IDLE_SECONDS = 5.0


class _Checkpointer:
    """Copies a SQLite database's WAL back into its file, in a thread of its own.

    Poked after every serialized write transaction, it runs a PASSIVE
    checkpoint on a connection of its own, outside the write lock: SQLite
    lets writers go on appending to the WAL meanwhile, so the next group of
    orders is not kept waiting for the copy. A checkpoint already running in
    another process makes this one a no-op (PASSIVE does not wait), and the
    next poke copies what is left.
    """

    def __init__(self, path: Path) -> None:
        # A URI opened read-write only: a checkpoint must never create a new,
        # empty database where the real one was moved or deleted.
        self._uri = path.resolve().as_uri() + "?mode=rw"
        self._wanted = threading.Event()
        self._guard = threading.Lock()
        # The running thread and the event that stops it (close()).
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        with self._guard:
            return self._thread is not None

    def poke(self) -> None:
        with self._guard:
            self._wanted.set()
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="sqlite-checkpointer", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop the thread, closing its connection; the next poke starts another."""
        with self._guard:
            thread = self._thread
            self._stop.set()
            self._wanted.set()
        if thread is not None:
            thread.join(timeout=30)

    def _run(self, stop: threading.Event) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                self._wanted.wait(CHECKPOINTER_IDLE_SECONDS)
                with self._guard:
                    # Deciding to end and saying so under one lock: a poke
                    # meanwhile would find this thread gone and start another.
                    if stop.is_set() or not self._wanted.is_set():
                        self._forget(threading.current_thread())
                        return
                    self._wanted.clear()
                if connection is None:
                    connection = sqlite3.connect(self._uri, uri=True, timeout=1.0)
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # Nothing is lost: the WAL is the database's until it is copied,
            # and SQLite's own checkpoint still bounds it. The next write retries.
            log.warning("WAL checkpoint of %s failed: %s", self._uri, exc)
            with self._guard:
                self._forget(threading.current_thread())
        finally:
            if connection is not None:
                connection.close()

    def _forget(self, thread: threading.Thread) -> None:
        if self._thread is thread:
            self._thread = None


@dataclass
class _WriteLock:
    """One SQLite database's writers: this process's threads, then other processes."""

    threads: threading.Lock = field(default_factory=threading.Lock)
    # An flock'ed file beside the database; None for in-memory databases.
    file: BinaryIO | None = None
    # None for in-memory databases, which have no WAL.
    checkpointer: _Checkpointer | None = None


_write_locks: WeakKeyDictionary[Engine, _WriteLock] = WeakKeyDictionary()
_write_locks_guard = threading.Lock()


def dispose_engine(engine: Engine) -> None:
    """Close every connection of ``engine`` to its database: its pool's and, on
    SQLite, its checkpointer's. The engine stays usable; it connects again."""
    engine.dispose()
    with _write_locks_guard:
        lock = _write_locks.get(engine)
    if lock is not None and lock.checkpointer is not None:
        lock.checkpointer.close()


def _open_lock_file(path: Path) -> BinaryIO | None:
    try:
        # Kept open for the engine's life: the lock is taken on this descriptor.
        # Read-only (flock needs no more): a file open for writing would keep
        # the disk from being remounted read-only ("mount point is busy").
        descriptor = os.open(f"{path}-writer.lock", os.O_RDONLY | os.O_CREAT, 0o600)
        return os.fdopen(descriptor, "rb")
    except OSError:
        # A read-only or full disk: SQLite reports what matters on the write
        # itself; the queue falls back to this process's threads.
        return None


def _write_lock(engine: Engine) -> _WriteLock:
    with _write_locks_guard:
        lock = _write_locks.get(engine)
        if lock is None:
            path = sqlite_path(engine.url.render_as_string(hide_password=False))
            lock = (
                _WriteLock(file=_open_lock_file(path), checkpointer=_Checkpointer(path))
                if path is not None
                else _WriteLock()
            )
            _write_locks[engine] = lock
        return lock


@contextmanager
def serialized_writes(session: Session) -> Iterator[None]:
    """Run a write transaction alone among the SQLite database's writers.

    SQLite allows one writer at a time and makes the others wait in its busy
    handler, which sleeps in steps of up to 100 ms: under 32 concurrent
    POSTs that gave a p99 of 1.9 s, and the writers of two uvicorn workers
    slept while the database was free. Writers queue instead on a
    Python lock (threads of this process) and an flock on a file beside the
    database (other processes: ``ancla serve --workers``, ``ancla import``),
    and the kernel wakes the next one the moment the previous one commits.
    SQLite's own locking still decides; this only orders the queue.
    Once the lock is released, the WAL is copied back into the database file
    by a thread of this process (_Checkpointer), not by the next writer.
    PostgreSQL needs none.
    """
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name != "sqlite":
        yield
        return
    _use_write_cache(session)
    lock = _write_lock(engine)
    try:
        with lock.threads:
            if lock.file is not None:
                fcntl.flock(lock.file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if lock.file is not None:
                    fcntl.flock(lock.file, fcntl.LOCK_UN)
    finally:
        if lock.checkpointer is not None:
            lock.checkpointer.poke()


@contextmanager
def postgresql_cursor(connection: Connection) -> Iterator[psycopg.Cursor[Any]]:
    """A psycopg cursor in ``connection``'s transaction, for what SQLAlchemy
    cannot express (COPY ... FROM STDIN).

    Driver errors come out as SQLAlchemy's own (IntegrityError,
    OperationalError, ...), exactly as from ``connection.execute``, and a lost
    connection is invalidated: callers that tell "the database is down" from
    "these rows are refused" by exception class see no difference.
    """
    raw = connection.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"not a psycopg connection: {type(raw).__name__}")
    try:
        with raw.cursor() as cursor:
            yield cursor
    except psycopg.Error as exc:
        dbapi_connection = connection.connection.dbapi_connection
        lost = connection.dialect.is_disconnect(exc, dbapi_connection, None)  # type: ignore[arg-type]
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            None, None, exc, psycopg.Error, connection_invalidated=lost, dialect=connection.dialect
        ) from exc


def copy_rows(
    cursor: psycopg.Cursor[Any], statement: str, types: list[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Stream ``rows`` through ``statement`` (a binary COPY ... FROM STDIN),
    each value sent as the PostgreSQL type at its place in ``types``."""
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def sqlite_multirow_inserts(
    head: str, rows: Sequence[Sequence[Any]], *, rows_per_statement: int, tail: str = ""
) -> list[tuple[str, tuple[Any, ...]]]:
    """``head`` (``INSERT INTO t (a, b)``) with ``rows`` as multi-row VALUES,
    ``rows_per_statement`` rows to a statement, each with its parameters.

    One statement is one step of SQLite's; an executemany steps once per row,
    and each step gives up Python's GIL and must win it back from the request
    threads while the database's one write lock is held. Keep
    ``rows_per_statement`` x columns under SQLite's 32,766 variables.
    """
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for start in range(0, len(rows), rows_per_statement):
        chunk = rows[start : start + rows_per_statement]
        marks = "(" + ", ".join("?" * len(chunk[0])) + ")"
        values = f"VALUES {', '.join([marks] * len(chunk))}"
        params = tuple(chain.from_iterable(chunk))
        statements.append((f"{head} {values}{tail}", params))
    return statements


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)
