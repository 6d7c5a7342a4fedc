"""Exactly one anchoring worker at a time (DESIGN §4, §8).

PostgreSQL: a session-level advisory lock held on a dedicated connection; if
the leader dies, its connection closes, the lock is released and a stand-by
worker takes over. SQLite: an exclusive lock on a file beside the database
(SQLite deployments run one process, but two by mistake must not both anchor).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text

from app.db import is_sqlite, sqlite_path

# Arbitrary but fixed: "ANCLA" in ASCII, the advisory lock key of the anchor leader.
ADVISORY_LOCK_KEY = 0x414E434C41


class LeaderLock:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None or self._file is not None

    def try_acquire(self) -> bool:
        if self.held:
            return True
        if is_sqlite(self.engine):
            return self._try_file_lock()
        connection = self.engine.connect()
        try:
            got = bool(
                connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
                ).scalar()
            )
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def _try_file_lock(self) -> bool:
        path = sqlite_path(self.engine.url.render_as_string(hide_password=False))
        lock_path = Path(f"{path}.anchor.lock") if path else Path(f"/tmp/ancla-{os.getpid()}.lock")  # noqa: S108
        handle = lock_path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def check(self) -> bool:
        """Whether the lock is still ours (the PostgreSQL session may have died)."""
        if self._connection is None:
            return self._file is not None
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
        except Exception:  # noqa: BLE001 - any failure means the session (and lock) is gone
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
                self._connection.commit()
            except Exception:  # noqa: BLE001, S110 - closing the session releases it anyway
                pass
            finally:
                self._connection.close()
                self._connection = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
