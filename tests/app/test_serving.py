"""The serving process as uvicorn builds it (`ancla serve`): its factory."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.main import (
    SERVING_GC_THRESHOLDS,
    SQLITE_SWITCH_INTERVAL_SECONDS,
    app_from_environment,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def restored_process_state() -> Iterator[None]:
    """The factory configures the process (collector, logging): undone afterwards."""
    thresholds = gc.get_threshold()
    switch_interval = sys.getswitchinterval()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access")
    access_disabled = access.disabled
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(switch_interval)
        root.handlers[:] = handlers
        root.setLevel(level)
        access.disabled = access_disabled


def test_the_uvicorn_factory_moves_start_up_objects_out_of_the_collectors_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_process_state: None
) -> None:
    # Full collections walking the whole start-up heap were a third of a bulk
    # request's CPU (bench/ingest.py); the factory freezes that heap and
    # collects less often.
    monkeypatch.setenv("ANCLA_DATABASE_URL", f"sqlite:///{tmp_path / 'ancla.db'}")
    monkeypatch.setenv("ANCLA_RUN_WORKER", "0")
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = app_from_environment()
    assert gc.get_threshold() == SERVING_GC_THRESHOLDS
    assert gc.get_freeze_count() > 10_000
    # The app and its runtime are in the permanent generation, which no
    # collection walks (get_objects lists the collected generations only).
    built = {id(app), id(app.state.runtime)}
    assert not any(id(obj) in built for obj in gc.get_objects())
    app.state.runtime.stop()


def test_sqlite_writers_win_the_gil_back_within_a_millisecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_process_state: None
) -> None:
    """The thread holding SQLite's write lock waits for the GIL at each
    statement while every writer waits for it; on PostgreSQL nothing waits
    on a lock of ours, and Python's default stays."""
    monkeypatch.setenv("ANCLA_RUN_WORKER", "0")
    default = sys.getswitchinterval()
    monkeypatch.setenv("ANCLA_DATABASE_URL", "postgresql://ancla@127.0.0.1:1/none")
    app_from_environment().state.runtime.stop()
    assert sys.getswitchinterval() == default == 0.005
    monkeypatch.setenv("ANCLA_DATABASE_URL", f"sqlite:///{tmp_path / 'ancla.db'}")
    app_from_environment().state.runtime.stop()
    assert sys.getswitchinterval() == SQLITE_SWITCH_INTERVAL_SECONDS == 0.001
