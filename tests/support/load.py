"""Real service processes and a bounded load of concurrent POSTs (tests and bench/load.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.devchain import free_port
from tests.support.hardhat import wait_until
from tests.support.orders import order


class ServiceProcess:
    """`ancla serve` (and friends) in their own process group, killable like a crash."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no flush, like a power cut."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.handle.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.handle.close()


def serve(
    env: dict[str, str],
    log: Path,
    *,
    workers: int = 1,
    anchor: bool = True,
    port: int | None = None,
) -> tuple[ServiceProcess, str]:
    port = port or free_port()
    args = ["serve", "--port", str(port), "--workers", str(workers)]
    if not anchor:
        args.append("--no-worker")
    service = ServiceProcess(args, env, log)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if service.process.poll() is not None:
            raise AssertionError(log.read_text()[-3000:])
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=60)
    return service, base


@dataclass
class LoadResult:
    accepted: dict[str, str] = field(default_factory=dict)  # hash -> order number
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def p(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "records_accepted": len(self.accepted),
            "error_rate": round(self.errors / self.requests, 4) if self.requests else 0,
            "p50_ms": round(self.p(0.50) * 1000, 1),
            "p99_ms": round(self.p(0.99) * 1000, 1),
            "statuses": dict(sorted(self.statuses.items())),
        }


def run_load(
    base: str,
    api_key: str,
    *,
    seconds: float,
    clients: int,
    bulk_every: int = 0,
    bulk_size: int = 20,
    first_number: int = 0,
    stop: threading.Event | None = None,
) -> LoadResult:
    """POST distinct orders from ``clients`` threads for ``seconds`` (or until ``stop``).

    Every ``bulk_every``-th request of a client is a bulk of ``bulk_size`` (0: never).
    A connection error counts as an error and the client keeps going, so a
    killed server shows up as errors, not as a crash of the load.
    """
    result = LoadResult()
    lock = threading.Lock()
    stop = stop or threading.Event()
    headers = {"Authorization": f"Bearer {api_key}"}
    started = time.monotonic()
    deadline = started + seconds

    def client(index: int) -> None:
        number = first_number + index * 10_000_000
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            sent = 0
            while time.monotonic() < deadline and not stop.is_set():
                sent += 1
                bulk = bulk_every and sent % bulk_every == 0
                orders = [order(number + i) for i in range(bulk_size if bulk else 1)]
                number += len(orders)
                began = time.monotonic()
                try:
                    if bulk:
                        response = http.post(
                            "/v1/purchase-orders/bulk", json={"purchase_orders": orders}
                        )
                    else:
                        response = http.post("/v1/purchase-orders", json=orders[0])
                except httpx.HTTPError:
                    with lock:
                        result.requests += 1
                        result.errors += 1
                    time.sleep(0.05)
                    continue
                elapsed = time.monotonic() - began
                accepted: list[tuple[str, str]] = []
                if response.status_code in (200, 202):
                    body = response.json()
                    if bulk:
                        accepted = [
                            (i["hash"], i["order_number"])
                            for i in body["results"]
                            if i["status"] in (200, 202)
                        ]
                    else:
                        accepted = [(body["hash"], body["order_number"])]
                with lock:
                    result.requests += 1
                    result.latencies.append(elapsed)
                    result.statuses[response.status_code] = (
                        result.statuses.get(response.status_code, 0) + 1
                    )
                    if response.status_code >= 500:
                        result.errors += 1
                    result.accepted.update(accepted)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result
