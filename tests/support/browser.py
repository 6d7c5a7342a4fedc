"""A real browser for the pages' tests: Debian's chromium driven by Playwright.

Never `playwright install`: the browser is the system's (`apt-get install chromium`,
which .ci/run does). Without it the browser tests are skipped with the reason, except
in CI (``CI`` set), where a missing browser is a failure: they must never pass by
not running.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(what: str) -> None:
    """Skip (locally) or fail (in CI) for a missing browser part."""
    if os.environ.get("CI"):
        pytest.fail(f"{what}; CI must run the browser tests (.ci/run installs it)")
    pytest.skip(f"{what} (.ci/run installs it; CI fails without it)")


@contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright Browser on /usr/bin/chromium."""
    if not CHROMIUM.exists():
        missing("Debian's chromium is not installed: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright's Python package is missing: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ChainIdProxy:
    """A JSON-RPC endpoint in front of a node that claims to be another chain: it answers
    ``eth_chainId`` (and ``net_version``) with ``chain_id`` and forwards everything else.
    It answers browsers' CORS preflights as public providers do."""

    def __init__(self, upstream: str, chain_id: int) -> None:
        self.upstream = upstream
        self.chain_id = chain_id
        self.calls: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _cors(self) -> None:
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", "Content-Type")

            def do_OPTIONS(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(204)
                self._cors()
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = json.dumps(outer.answer(request)).encode()
                self.send_response(200)
                self._cors()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, request: Any) -> Any:
        if isinstance(request, list):
            return [self.answer(call) for call in request]
        self.calls.append(str(request.get("method")))
        if request.get("method") == "eth_chainId":
            return {"jsonrpc": "2.0", "id": request.get("id"), "result": hex(self.chain_id)}
        if request.get("method") == "net_version":
            return {"jsonrpc": "2.0", "id": request.get("id"), "result": str(self.chain_id)}
        return httpx.post(self.upstream, json=request, timeout=10).json()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
