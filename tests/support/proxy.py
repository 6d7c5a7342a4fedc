"""A TCP proxy that can go down or answer garbage: real network faults for tests.

Put it between the service and the chain's RPC node (or PostgreSQL) and
switch modes: "up" forwards bytes, "down" resets every connection (and cuts
the open ones), "garbage" answers HTTP requests with a body that is not JSON.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress

from app.devchain import free_port

GARBAGE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n"
    b"Connection: close\r\n\r\n{not json at a"
)


class FaultyProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "up"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        assert mode in ("up", "down", "garbage")
        self.mode = mode
        if mode != "up":
            with self._lock:
                for sock in list(self._open):
                    with suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                self._open.clear()

    def close(self) -> None:
        self._stopped.set()
        self.set_mode("down")
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "down":
                # SO_LINGER 0: the client sees a reset, like a node going away.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                client.close()
            elif self.mode == "garbage":
                threading.Thread(target=self._garbage, args=(client,), daemon=True).start()
            else:
                threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _garbage(self, client: socket.socket) -> None:
        with suppress(OSError), client:
            client.settimeout(2)
            client.recv(65536)
            client.sendall(GARBAGE)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.update((client, upstream))
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with self._lock:
                    self._open.discard(sock)
                sock.close()
