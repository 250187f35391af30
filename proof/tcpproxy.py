"""A TCP proxy on loopback that can break the connections through it, on demand.

The functions reach the Firestore emulator through it (`LocalStack(firestore_front=...)`), so
the proof can do to Firestore what a network does: `reset()` kills every open connection
with a TCP RST at once; `hold(seconds)` freezes every byte in both directions on every
connection, old and new, for that long, then resets the held connections (a partition that
ends in a timeout). Anything a frozen connection carried before the hold stays delivered: a
commit may land in the emulator while its answer never comes back.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

_CHUNK = 65536
_POLL = 0.2


@dataclass
class ProxyStats:
    accepted: int = 0
    reset: int = 0
    held: int = 0
    holds: list[float] = field(default_factory=list)


class _Connection:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.dead = threading.Event()
        self._open_directions = 2
        self._lock = threading.Lock()

    def direction_done(self) -> bool:
        """One direction reached its end; True once both have (the connection is over)."""
        with self._lock:
            self._open_directions -= 1
            return self._open_directions == 0

    def kill(self) -> None:
        """Close both ends with a RST (linger 0), not a FIN."""
        if self.dead.is_set():
            return
        self.dead.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()


class FaultyProxy:
    """`start(target)` returns the proxy's `host:port`; every connection is forwarded to
    `target` (`host:port`) until `reset()` or `hold()` breaks it."""

    def __init__(self) -> None:
        self.stats = ProxyStats()
        self._target: tuple[str, int] | None = None
        self._server: socket.socket | None = None
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._stopping = threading.Event()

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.getsockname()[:2]
        return f"{host}:{port}"

    def start(self, target: str) -> str:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        server.settimeout(_POLL)
        self._server = server
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self.address

    def stop(self) -> None:
        self._stopping.set()
        self._flowing.set()
        self.reset()
        if self._server is not None:
            self._server.close()

    def reset(self) -> int:
        """Kill every open connection with a RST; returns how many."""
        with self._lock:
            victims = list(self._connections)
            self._connections.clear()
        for conn in victims:
            conn.kill()
        self.stats.reset += len(victims)
        return len(victims)

    def hold(self, seconds: float) -> None:
        """Freeze all traffic for `seconds` (blocking), then reset what was held."""
        self._flowing.clear()
        started = time.monotonic()
        try:
            self._stopping.wait(seconds)
        finally:
            # The freeze's length, not the resets after it (slower on a loaded machine).
            self.stats.holds.append(round(time.monotonic() - started, 2))
            with self._lock:
                self.stats.held += len(self._connections)
            self.reset()
            self._flowing.set()

    def _accept(self) -> None:
        assert self._server is not None and self._target is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            conn = _Connection(client, upstream)
            with self._lock:
                self._connections.add(conn)
            self.stats.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                src.settimeout(_POLL)
                threading.Thread(
                    target=self._pump, args=(conn, src, dst), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, conn: _Connection, src: socket.socket, dst: socket.socket) -> None:
        while not conn.dead.is_set():
            try:
                data = src.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:  # a clean half-close: pass it on
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                if conn.direction_done():
                    break
                return
            while not self._flowing.wait(_POLL):
                if conn.dead.is_set():
                    return
            if not _send_all(conn, dst, data):
                break
        with self._lock:
            self._connections.discard(conn)
        conn.kill()


def _send_all(conn: _Connection, dst: socket.socket, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        if conn.dead.is_set():
            return False
        try:
            sent = dst.send(view)
        except TimeoutError:
            continue
        except OSError:
            return False
        view = view[sent:]
    return True
