"""Worker processes, forked from a server process that imported their code once.

``ancla verify --jobs N`` checks ranges of batches in worker processes. A worker
spawned afresh imports web3.py, eth-account, SQLAlchemy and the audit before its
first record: a second of one core, spent inside the audit (bench/verify.py:
about 5% of a 1,000,000-record audit on two cores). multiprocessing's ``forkserver`` start
method forks each worker from a server process that imported them once: the
server is started (:func:`start_worker_server`) as soon as a command knows it
will need workers, and imports while the command does its own start-up.

Not plain ``fork`` of the command's own process: a child would share its open
database connections and whatever its threads held locked at that moment.
Where a platform has no ``forkserver`` (Windows), workers are spawned.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

__all__ = ["start_worker_server", "worker_context"]

_FORKSERVER = "forkserver" in multiprocessing.get_all_start_methods()


def start_worker_server(*modules: str) -> None:
    """Start the server workers are forked from, importing ``modules`` (and the
    program's main module, which each worker would otherwise run again) in the
    background. Later calls, once it runs, change nothing."""
    if not _FORKSERVER:
        return
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(["__main__", *modules])
    forkserver.ensure_running()


def worker_context() -> BaseContext:
    """The multiprocessing context worker pools are made with."""
    return multiprocessing.get_context("forkserver" if _FORKSERVER else "spawn")
