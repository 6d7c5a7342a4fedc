"""`ancla serve --workers N`: each worker listens on a socket of its own, so the
kernel spreads connections over the workers, and a replaced worker gets one too."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.devchain import free_port
from app.settings import Settings
from tests.support.hardhat import wait_until
from tests.support.load import ServiceProcess, serve
from tests.support.services import ancla, settings_env

pytestmark = [pytest.mark.e2e, pytest.mark.db]

_LISTEN, _ESTABLISHED = "0A", "01"


def _sockets(port: int, state: str) -> set[int]:
    """Inodes of the IPv4 TCP sockets on local ``port`` in ``state`` (/proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == port and fields[3] == state:
                found.add(int(fields[9]))
    return found


def _owned(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _children(supervisor: int) -> list[int]:
    children: list[int] = []
    for task in os.listdir(f"/proc/{supervisor}/task"):
        with open(f"/proc/{supervisor}/task/{task}/children") as handle:
            children += [int(pid) for pid in handle.read().split()]
    return children


def _workers(supervisor: int) -> list[int]:
    """uvicorn's worker processes (not multiprocessing's resource tracker)."""
    return [
        pid
        for pid in _children(supervisor)
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@pytest.fixture
def two_workers(make_settings: Any, tmp_path: Path) -> Iterator[tuple[ServiceProcess, int]]:
    settings: Settings = make_settings()
    port = free_port()
    service, _ = serve(
        settings_env(settings), tmp_path / "serve.log", workers=2, anchor=False, port=port
    )
    try:
        wait_until(lambda: len(_workers(service.process.pid)) == 2, timeout=30)
        yield service, port
    finally:
        service.stop()


def test_each_worker_listens_on_its_own_socket_and_gets_connections(
    two_workers: tuple[ServiceProcess, int],
) -> None:
    service, port = two_workers
    workers = _workers(service.process.pid)
    listening = _sockets(port, _LISTEN)
    assert len(listening) == 2
    assert [len(_owned(pid) & listening) for pid in workers] == [1, 1]
    assert not _owned(service.process.pid) & listening  # the supervisor accepts nothing
    # Keep-alive clients connecting at once: with one shared socket, the worker
    # that woke first took them all.
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
    try:
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        served = _sockets(port, _ESTABLISHED)
        per_worker = [len(_owned(pid) & served) for pid in workers]
    finally:
        for client in clients:
            client.close()
    assert sum(per_worker) == 24 and min(per_worker) > 0, per_worker


def test_a_replaced_worker_listens_on_a_socket_of_its_own(
    two_workers: tuple[ServiceProcess, int],
) -> None:
    service, port = two_workers
    killed = _workers(service.process.pid)[0]
    os.kill(killed, signal.SIGKILL)
    wait_until(
        lambda: (
            killed not in _workers(service.process.pid)
            and len(_workers(service.process.pid)) == 2
            and len(_sockets(port, _LISTEN)) == 2
        ),
        timeout=30,
    )
    listening = _sockets(port, _LISTEN)
    assert [len(_owned(pid) & listening) for pid in _workers(service.process.pid)] == [1, 1]


def test_a_port_already_in_use_is_refused_in_one_line(make_settings: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ancla(
            "serve", "--port", str(port), "--workers", "2", env=settings_env(make_settings())
        )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: listening on 127.0.0.1:{port} is in use"


def test_the_supervisor_stops_when_a_worker_cannot_listen(make_settings: Any) -> None:
    # Taken between the supervisor's check and the workers' bind: the workers
    # exit with uvicorn's start-up failure code and the supervisor gives up,
    # instead of restarting them for ever.
    port = free_port()
    env = settings_env(make_settings())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import app.cli, app.serving;"
                "app.serving.ensure_free = lambda address: None;"
                "app.cli.main()",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert result.stderr.strip().endswith(
        "error: a worker could not start (see its message above); stopped"
    )


def _anchor_processes(supervisor: int) -> list[int]:
    """`ancla worker` children of the service (app.serving.AnchorProcess)."""
    return [
        pid
        for pid in _children(supervisor)
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:4]
        == [b"-m", b"app.cli", b"worker"]
    ]


def test_the_anchor_worker_is_a_process_of_its_own_restarted_when_it_dies(
    make_settings: Any, tmp_path: Path
) -> None:
    """`ancla serve` runs the anchor worker beside its API processes, off their GIL;
    killed, it is started again and anchoring goes on; stopping the service stops it."""
    import httpx

    from tests.support.orders import BUYER_RUC, order

    settings: Settings = make_settings(batch_max_age_seconds=0.5)
    env = settings_env(settings)
    added = ancla("agency", "add", "--ruc", BUYER_RUC, "--name", "MP", "--json", env=env)
    assert added.returncode == 0, added.stderr
    headers = {"Authorization": "Bearer " + json.loads(added.stdout)["api_key"]}
    service, base = serve(env, tmp_path / "serve.log", workers=2, anchor=True)
    try:
        wait_until(lambda: len(_anchor_processes(service.process.pid)) == 1, timeout=30)
        (first,) = _anchor_processes(service.process.pid)
        second = first
        # The API processes themselves run no anchor worker thread.
        assert len(_workers(service.process.pid)) == 3  # two uvicorn workers + ancla worker

        def anchored(number: int) -> None:
            posted = httpx.post(f"{base}/v1/purchase-orders", json=order(number), headers=headers)
            record_hash = posted.json()["hash"]
            wait_until(
                lambda: (
                    httpx.get(f"{base}/v1/receipts/{record_hash}").json()["status"]
                    in ("anchored", "final")
                ),
                timeout=60,
            )

        anchored(1)
        os.kill(first, signal.SIGKILL)
        wait_until(
            lambda: (found := _anchor_processes(service.process.pid)) != [] and found != [first],
            timeout=30,
        )
        anchored(2)
        (second,) = _anchor_processes(service.process.pid)
        log = (tmp_path / "serve.log").read_text()
        assert "the anchor worker exited (code -9); restarting" in log
    finally:
        service.stop()
    wait_until(lambda: not Path(f"/proc/{second}").exists(), timeout=10)
