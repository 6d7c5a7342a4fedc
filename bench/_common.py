"""Shared pieces of the service benchmarks (bench/ingest.py, bench/lookup.py).

Fresh migrated databases (a SQLite file, or a PostgreSQL schema dropped at the
end), the real service under uvicorn in a subprocess, CPU accounting of the
processes involved (read from /proc), percentiles and a plain table printer.
Nothing here asserts on time: the scripts print figures.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from tests.support.database import fresh_database as tests_fresh_database  # noqa: E402

PG_BASE_URL = os.environ.get(
    "ANCLA_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


def code_version() -> str:
    """The commit benchmarked, and which source files differ from it (others edit in parallel)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "ledger", "migrations"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return f"{ROOT} (not a git checkout)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{ROOT} at {head}" + (f" + uncommitted {', '.join(changed)}" if changed else "")


@contextmanager
def revision_worktree(revision: str, directory: Path) -> Iterator[Path]:
    """A `git worktree` of ``revision`` at ``directory``, removed after: earlier code to
    measure beside the working tree's in one run."""
    subprocess.run(  # noqa: S603 - fixed argv
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(directory), revision],
        check=True,
    )
    try:
        yield directory
    finally:
        subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(directory)],
            check=False,
        )


def backends_from(choice: str) -> list[str]:
    return ["sqlite", "postgresql"] if choice == "both" else [choice]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- databases ---------------------------------------------------------------------


@contextmanager
def fresh_database(backend: str, tmp_dir: Path) -> Iterator[str]:
    """Yield the URL of an empty, migrated database (the tests' own helper); drop it after."""
    with tests_fresh_database(backend, tmp_dir, pg_url=PG_BASE_URL) as url:
        yield url


def add_bench_agency(database_url: str, ruc: str, name: str) -> str:
    """Register an agency and return its API key."""
    from app.db import make_engine, make_session_factory
    from app.services.agencies import add_agency

    engine = make_engine(database_url, pool_size=1)
    try:
        with make_session_factory(engine)() as session:
            return add_agency(session=session, ruc=ruc, name=name).api_key
    finally:
        engine.dispose()


# -- the service under uvicorn ---------------------------------------------------------


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    workers: int

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (the main one when workers == 1)."""
        if self.workers == 1:
            return [self.process.pid]
        # The supervisor's children, without multiprocessing's resource tracker.
        pids = children(self.process.pid)
        return [pid for pid in pids if "resource_tracker" not in _cmdline(pid)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def run_server(
    *,
    database_url: str,
    log_dir: Path,
    workers: int = 1,
    run_worker: bool = True,
    rpc_url: str = "http://127.0.0.1:9",
    contract: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`ancla serve` (uvicorn app.main:app_from_environment --factory) in a subprocess."""
    from app.devchain import DEV_KEY_0

    port = free_port()
    env = {
        **os.environ,
        "ANCLA_ENVIRONMENT": "test",
        "ANCLA_DATABASE_URL": database_url,
        "ANCLA_RPC_URL": rpc_url,
        "ANCLA_SIGNER_KEY": DEV_KEY_0,
        "ANCLA_RUN_WORKER": "1" if run_worker else "0",
        # A per-key rate limit (where the code has one) would cap one agency's load
        # generator at a policy figure, not at what the service can do.
        "ANCLA_RATE_LIMIT_PER_SECOND": "0",
        **(extra_env or {}),
    }
    if contract:
        env["ANCLA_CONTRACT_ADDRESS"] = contract
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"uvicorn-{port}.log"
    # `ancla serve` itself: with several workers it gives each its own
    # listening socket (app/serving.py), which is part of what is measured.
    argv = [
        PYTHON,
        "-m",
        "app.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if not run_worker:
        argv.append("--no-worker")
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        argv,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = Server(f"http://127.0.0.1:{port}", port, process, log, workers)
    try:
        _wait_ready(server)
        yield server
    finally:
        server.stop()


def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"uvicorn exited early; see {server.log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                ready += 1
            conn.close()
        except OSError:
            pass
        if ready and (server.workers == 1 or len(server.worker_pids()) >= server.workers):
            # Give every worker its start-up (imports, lifespan) before measuring.
            time.sleep(1.0 if server.workers == 1 else 2.0)
            return
        time.sleep(0.1)
    raise RuntimeError(f"uvicorn did not answer /healthz in {timeout:.0f} s; see {server.log}")


# -- CPU accounting from /proc ------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(p) for p in handle.read().split())
    except OSError:
        pass
    return found


def tree(pid: int) -> list[int]:
    pids = [pid]
    for child in children(pid):
        pids.extend(tree(child))
    return pids


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime (+ reaped children's) of the given processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is state (field 3); utime, stime, cutime, cstime are fields 14-17.
        total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


def pids_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == name:
                        found.append(int(entry))
            except OSError:
                continue
    return found


@dataclass
class CpuMeter:
    """CPU seconds used by named groups of processes over a measured interval."""

    groups: dict[str, Any]  # name -> callable returning the pids to count
    _start: dict[str, float] = field(default_factory=dict)
    _wall: float = 0.0
    self_start: float = 0.0

    def start(self) -> None:
        self._start = {name: cpu_seconds(fn()) for name, fn in self.groups.items()}
        self._start["machine"] = machine_busy_seconds()
        self._wall = time.monotonic()
        self.self_start = _self_cpu()

    def stop(self) -> dict[str, float]:
        """Cores used by each group (CPU seconds per wall second)."""
        wall = time.monotonic() - self._wall
        used = {
            name: (cpu_seconds(fn()) - self._start[name]) / wall for name, fn in self.groups.items()
        }
        # Everything busy on the machine (other sessions' tests included), to spot noise.
        used["machine"] = (machine_busy_seconds() - self._start["machine"]) / wall
        used["bench (this process)"] = (_self_cpu() - self.self_start) / wall
        return used


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


# -- figures -----------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if title:
        print(title)
    for index, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)
        print("  " + line.rstrip())
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def which(name: str) -> str | None:
    return shutil.which(name)
