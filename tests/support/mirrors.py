"""Reading a monitor's mirror in tests (tests/app/test_monitor.py, tests/e2e)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app.db import make_engine, make_session_factory
from app.models import BatchEntry, MonitorBatch


def entries_by_batch(mirror: str) -> dict[int, int]:
    """How many batch entries the mirror holds, per batch id."""
    engine = make_engine(mirror)
    try:
        with make_session_factory(engine)() as session:
            rows = session.execute(
                select(BatchEntry.batch_id, func.count()).group_by(BatchEntry.batch_id)
            ).all()
            return {row[0]: row[1] for row in rows}
    finally:
        engine.dispose()


def verdicts(mirror: str, *, unmigrated_ok: bool = False) -> dict[int, tuple[str, int]]:
    """Each batch's verdict in the mirror: its status and how many times it was checked.

    ``unmigrated_ok``: a mirror its monitor (a process of its own) has not created
    yet reads as holding no verdict, for tests that poll it while it starts.
    """
    engine = make_engine(mirror)
    try:
        with make_session_factory(engine)() as session:
            rows = session.execute(
                select(MonitorBatch.batch_id, MonitorBatch.status, MonitorBatch.checks)
            ).all()
            return {batch_id: (status, checks) for batch_id, status, checks in rows}
    except SQLAlchemyError:
        if unmigrated_ok:
            return {}
        raise
    finally:
        engine.dispose()
