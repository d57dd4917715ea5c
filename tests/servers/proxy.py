"""A TCP proxy we own, to cut a live connection at a chosen moment (a dropped link mid-batch)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

from tests.servers.ports import free_port

BUFFER = 65536


class CuttingProxy:
    """Forwards 127.0.0.1:port to a target; ``cut_after(n)`` drops every connection once the
    server has sent n more bytes through it. ``cut_after(None)`` forwards for ever."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.cuts = 0
        self._budget: int | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server((self.host, self.port))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed.set()
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)

    def cut_after(self, budget: int | None) -> None:
        with self._lock:
            self._budget = budget

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, metered: bool) -> None:
        try:
            while data := source.recv(BUFFER):
                if metered and not self._spend(len(data)):
                    self._cut(source, sink)
                    return
                sink.sendall(data)
        except OSError:
            pass
        self._cut(source, sink)

    def _spend(self, amount: int) -> bool:
        with self._lock:
            if self._budget is None:
                return True
            self._budget -= amount
            if self._budget >= 0:
                return True
            self.cuts += 1
            return False

    @staticmethod
    def _cut(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
