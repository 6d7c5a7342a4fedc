"""A real HTTP JSON-RPC endpoint in front of the Hardhat node that behaves like a
picky public provider: it may refuse batch requests, and may refuse eth_getLogs
over more than a number of blocks. Everything else is forwarded as is."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class PickyEndpoint:
    def __init__(
        self, upstream: str, *, refuse_batches: bool = False, max_log_range: int | None = None
    ) -> None:
        self.upstream = upstream
        self.refuse_batches = refuse_batches
        self.max_log_range = max_log_range
        self.requests = 0
        self.methods: Counter[str] = Counter()  # calls asked, batched ones included
        self.refused_log_ranges = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = json.dumps(outer.answer(json.loads(body))).encode()
                self.send_response(200)
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
        self.requests += 1
        for call in request if isinstance(request, list) else [request]:
            self.methods[call.get("method")] += 1
        if isinstance(request, list) and self.refuse_batches:
            return _error(None, -32600, "batch requests not supported")
        if not isinstance(request, list) and request.get("method") == "eth_getLogs":
            refused = self._refuse_logs(request)
            if refused is not None:
                return refused
        headers = {"Content-Type": "application/json"}
        return requests.post(self.upstream, json=request, headers=headers, timeout=10).json()

    def _refuse_logs(self, request: dict[str, Any]) -> dict[str, Any] | None:
        if self.max_log_range is None:
            return None
        query = request["params"][0]
        start, end = (_block(query.get(k, "latest")) for k in ("fromBlock", "toBlock"))
        if end is None or start is None or end - start + 1 > self.max_log_range:
            self.refused_log_ranges += 1
            return _error(
                request["id"], -32005, f"query exceeds max block range {self.max_log_range}"
            )
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _block(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    return None  # "latest", "earliest", ...: a range this provider will not take


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
