"""How `ancla serve` runs uvicorn: with several workers, one listening socket each.

uvicorn's own multi-worker mode binds one socket in the parent and every
worker accepts from it. A worker that wakes for a connection accepts every
connection waiting, and the kernel wakes the most recently idle worker first,
so a few keep-alive clients (agencies' systems posting bulks) all ended up on
one worker while the other sat idle: bulk ingest used one core of two
(bench/ingest.py prints the CPU of each worker). On Linux each worker here
binds its own socket into a SO_REUSEPORT group instead, and the kernel spreads
new connections over the workers' sockets by a hash of their addresses.
uvicorn's supervisor is kept as it is: it starts, health-checks, restarts and
stops the workers.
"""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import sys
import threading
import time
from typing import Any, cast

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

logger = logging.getLogger("uvicorn.error")

APP = "app.main:app_from_environment"


class ServeError(Exception):
    """`ancla serve` cannot serve: its address is taken, or its workers cannot start."""


def serve(*, host: str, port: int, workers: int, anchor: bool = True) -> None:
    """Run the API as uvicorn; several workers get a socket each where the kernel
    can balance between them (Linux), else uvicorn's one shared socket. With
    ``anchor``, the anchor worker runs beside them in a process of its own."""
    anchoring = AnchorProcess() if anchor else None
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": "info",
        "proxy_headers": True,
    }
    if workers == 1 or not sys.platform.startswith("linux"):
        try:
            if anchoring is not None:
                anchoring.start()
            uvicorn.run(APP, **options)
        finally:
            if anchoring is not None:
                anchoring.stop()
        return
    config = uvicorn.Config(APP, **options)
    address = listen_address(host, port)
    ensure_free(address)
    logger.info(
        "Uvicorn running on http://%s:%d with %d workers, one SO_REUSEPORT socket each "
        "(Press CTRL+C to quit)",
        host,
        port,
        workers,
    )
    # The supervisor hands its `sockets` to every worker it (re)starts, pickled;
    # an OwnSocket unpickles, in the worker, as that worker's own socket.
    listener = cast(socket.socket, OwnSocket(address, config.backlog))
    supervisor = Multiprocess(config, sockets=[listener])
    try:
        if anchoring is not None:
            anchoring.start()
        supervisor.run()
    finally:
        if anchoring is not None:
            anchoring.stop()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        raise ServeError("a worker could not start (see its message above); stopped")


# Seconds between restarts of an anchor worker that exited; doubled each time
# it dies again soon after starting, up to the maximum.
_RESTART_AFTER = 1.0
_RESTART_AFTER_MAX = 30.0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `ancla serve` dies (even by SIGKILL),
    so an anchor worker is never left running without the service that started it."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class AnchorProcess:
    """`ancla worker` beside the API processes, restarted whenever it exits.

    The anchor worker seals, anchors and confirms. As a thread inside an API
    process it shared that process's GIL with the requests, and under
    sustained bulk load sealed more slowly than records arrived (86-96% of the
    accepted rate, bench/ingest.py). A process of its own runs on whatever
    core is free. Leadership is unchanged: one leader at a time
    (app.services.leader), so a stand-by `ancla worker` elsewhere still works.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="anchor-process", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "app.cli", "worker"],
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        )

    def _watch(self) -> None:
        wait = _RESTART_AFTER
        while not self._stop.is_set():
            process = self._process
            assert process is not None  # noqa: S101 - spawned before watching
            started = time.monotonic()
            code = process.wait()
            if self._stop.is_set():
                return
            wait = _RESTART_AFTER if time.monotonic() - started > 60 else wait
            logger.error("the anchor worker exited (code %s); restarting in %.0f s", code, wait)
            if self._stop.wait(wait):
                return
            wait = min(wait * 2, _RESTART_AFTER_MAX)
            self._spawn()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._watcher is not None:
            self._watcher.join(timeout=5)


Address = tuple[socket.AddressFamily, tuple[Any, ...]]


def listen_address(host: str, port: int) -> Address:
    """The family and socket address to bind for ``host`` (name, IPv4 or IPv6)."""
    try:
        found = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
        )
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, _, _, _, sockaddr = found[0]
    return family, sockaddr


def ensure_free(address: Address) -> None:
    """Refuse an address something already listens on.

    Checked with a plain bind, without SO_REUSEPORT: a second `ancla serve` on
    the same port would otherwise join the first one's group and silently
    share its connections instead of failing.
    """
    family, sockaddr = address
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"failed: {exc.strerror}"
            raise ServeError(f"listening on {_show(sockaddr)} {reason}") from exc


def reuse_port_socket(address: Address, backlog: int) -> socket.socket:
    """A listening socket in the address's SO_REUSEPORT group (run in a worker)."""
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        logger.error("cannot listen on %s: %s", _show(sockaddr), exc.strerror)
        # uvicorn's supervisor stops, instead of restarting forever, on this code.
        raise SystemExit(STARTUP_FAILURE) from exc
    return sock


class OwnSocket:
    """Stands for a socket the worker binds itself when it is unpickled there."""

    def __init__(self, address: Address, backlog: int) -> None:
        self.address = address
        self.backlog = backlog

    def __reduce__(self) -> tuple[Any, tuple[Address, int]]:
        return reuse_port_socket, (self.address, self.backlog)


def _show(sockaddr: tuple[Any, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
