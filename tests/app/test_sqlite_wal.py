"""SQLite's WAL is copied back into the database file by a thread of its own,
outside the write lock, and stays bounded however long writers keep writing."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

import app.db
from app.cli import upgrade_database
from app.db import make_engine, make_session_factory
from tests.support.services import ingest

PAGE_SIZE = 4096


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    path = tmp_path / "ancla.db"
    upgrade_database(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}", pool_size=2)
    yield path, engine
    engine.dispose()


def _records_in_file_alone(path: Path, copy: Path) -> int | None:
    """How many records the database file holds without its WAL (None: the copy
    caught a checkpoint half-way; look again)."""
    shutil.copyfile(path, copy)
    connection = sqlite3.connect(f"{copy.as_uri()}?immutable=1", uri=True)
    try:
        (count,) = connection.execute("SELECT count(*) FROM records").fetchone()
        return int(count)
    except sqlite3.DatabaseError:
        return None
    finally:
        connection.close()


def _eventually(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_records_reach_the_database_file_without_a_checkpoint_in_the_commit(
    database: tuple[Path, Engine], tmp_path: Path
) -> None:
    """SQLite's own checkpoint would wait for 16,384 pages of WAL; the
    checkpointer copies a write into the database file right after it."""
    path, engine = database
    with engine.connect() as connection:
        limit = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
    assert limit == app.db.SQLITE_WAL_AUTOCHECKPOINT_PAGES
    ingest(make_session_factory(engine), range(40))
    assert Path(f"{path}-wal").stat().st_size > 0
    copy = tmp_path / "copy.db"
    assert _eventually(lambda: _records_in_file_alone(path, copy) == 40)


def test_the_wal_stays_bounded_when_the_checkpointer_falls_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers that follow each other without a pause never leave the WAL fully
    copied when the next one starts, so it cannot start again from its
    beginning; SQLite's own checkpoint at the threshold, in a commit, lets it.
    Here the checkpointer never runs at all, the worst case."""
    monkeypatch.setattr(app.db, "SQLITE_WAL_AUTOCHECKPOINT_PAGES", 100)
    monkeypatch.setattr(app.db._Checkpointer, "poke", lambda self: None)
    path = tmp_path / "ancla.db"
    wal = Path(f"{path}-wal")
    upgrade_database(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}", pool_size=2)
    session_factory = make_session_factory(engine)
    largest_commit = largest_wal = 0
    for start in range(0, 3000, 100):
        before = wal.stat().st_size if wal.exists() else 0
        ingest(session_factory, range(start, start + 100))
        largest_commit = max(largest_commit, wal.stat().st_size - before)
        largest_wal = max(largest_wal, wal.stat().st_size)
    engine.dispose()
    # The threshold plus a commit's worth, not the 30 groups' several megabytes.
    assert largest_wal <= 100 * (PAGE_SIZE + 24) + 2 * largest_commit, (
        largest_wal,
        largest_commit,
    )


def test_the_checkpointer_rests_when_idle_and_wakes_for_the_next_write(
    database: tuple[Path, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.db, "CHECKPOINTER_IDLE_SECONDS", 0.2)
    path, engine = database
    session_factory = make_session_factory(engine)
    ingest(session_factory, range(5))
    checkpointer = app.db._write_lock(engine).checkpointer
    assert checkpointer is not None
    assert _eventually(lambda: not checkpointer.running)
    ingest(session_factory, range(5, 12))
    copy = tmp_path / "copy.db"
    assert _eventually(lambda: _records_in_file_alone(path, copy) == 12)


def test_the_checkpointer_never_creates_a_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database moved or deleted under a running service: the checkpoint
    fails and says so, and no empty database appears in its place."""
    gone = tmp_path / "moved" / "ancla.db"
    gone.parent.mkdir()
    checkpointer = app.db._Checkpointer(gone)
    with caplog.at_level(logging.WARNING, logger="ancla.db"):
        checkpointer.poke()
        assert _eventually(lambda: not checkpointer.running)
    assert not gone.exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"WAL checkpoint of {gone.as_uri()}?mode=rw failed: unable to open database file"
    ]


def test_a_write_has_a_large_page_cache_and_returns_it_to_the_pool(
    database: tuple[Path, Engine],
) -> None:
    """A group of orders dirties thousands of pages; in the default cache SQLite
    spilled them to the WAL mid-transaction. Readers keep the default."""
    _, engine = database
    with engine.connect() as connection:
        read_cache = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
        writer = connection.connection.dbapi_connection
    with make_session_factory(engine)() as session:
        with app.db.serialized_writes(session):
            connection = session.connection()
            assert connection.connection.dbapi_connection is writer  # the pool's one connection
            write_cache = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
        session.commit()
    with engine.connect() as connection:
        assert connection.connection.dbapi_connection is writer
        after = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
    assert (read_cache, write_cache, after) == (-2000, -app.db.SQLITE_WRITE_CACHE_KIB, -2000)


def _open_handles(path: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(path)):
            found.append(target)
    return sorted(found)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd")
def test_disposing_the_engine_closes_every_handle_on_the_database(
    database: tuple[Path, Engine],
) -> None:
    """What remounting the disk read-only needs, and what a stopped Runtime
    leaves: the checkpointer's connection goes with the pool's."""
    path, engine = database
    ingest(make_session_factory(engine), range(3))
    checkpointer = app.db._write_lock(engine).checkpointer
    assert checkpointer is not None and checkpointer.running
    assert f"{path}-wal" in _open_handles(path)
    app.db.dispose_engine(engine)
    assert not checkpointer.running
    # The writer lock file stays open (read-only): flock needs it, and a
    # read-only descriptor does not keep a disk from being remounted.
    assert _open_handles(path) == [f"{path}-writer.lock"]
    ingest(make_session_factory(engine), range(3, 5))  # the engine connects again
    assert checkpointer.running
