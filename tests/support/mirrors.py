"""Reading a monitor's mirror in tests (tests/app/test_monitor.py, tests/e2e)."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db import make_engine, make_session_factory
from app.models import BatchEntry


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
