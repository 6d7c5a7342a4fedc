"""A local Hardhat node for `ancla dev`, the tests and the benchmarks.

Started from the project's own node_modules (Hardhat 2.x), on a free
loopback port unless told otherwise, and stopped with its parent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ledger.chain import HARDHAT_CHAIN_ID, wait_for_rpc

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Hardhat's default account #0: a public development key, refused by the
# chain client on any chain but 31337.
DEV_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def hardhat_cli(project_root: Path = PROJECT_ROOT) -> Path:
    cli = project_root / "node_modules" / "hardhat" / "internal" / "cli" / "cli.js"
    if not cli.exists():
        raise FileNotFoundError(
            f"Hardhat is not installed under {project_root}/node_modules: run `npm ci` there"
        )
    return cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class HardhatNode:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when its parent dies, so a killed
    `ancla dev` or test run never leaves a Hardhat node behind."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's own cleanup still stops the node


def start_node(
    log_dir: Path, *, port: int | None = None, chain_id: int = HARDHAT_CHAIN_ID
) -> HardhatNode:
    """Start ``hardhat node`` on 127.0.0.1 and wait until it answers JSON-RPC."""
    cli = hardhat_cli()
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"hardhat-{port}.log"
    env = {**os.environ, "ANCLA_HARDHAT_CHAIN_ID": str(chain_id)}
    process = subprocess.Popen(  # noqa: S603 - fixed argv, our own node_modules
        ["node", str(cli), "node", "--hostname", "127.0.0.1", "--port", str(port)],  # noqa: S607
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads touched in the child
    )
    node = HardhatNode(url=f"http://127.0.0.1:{port}", port=port, process=process, log=log)
    try:
        wait_for_rpc(node.url, timeout=60)
    except Exception:
        node.stop()
        raise RuntimeError(f"Hardhat node did not start; see {log}") from None
    return node
