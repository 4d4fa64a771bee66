"""Witnesses that misbehave, on real sockets on 127.0.0.1: one that takes the request and
never answers, one that answers a byte at a time, one that answers nonsense. Each counts
what it was sent, and can say whether the client is still waiting on it."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Behaviour = Callable[[socket.socket, threading.Event], None]


class Peer:
    """A server answering each connection with ``behaviour`` in a thread of its own."""

    def __init__(self, behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
        self.tls = tls  # a server context: the peer speaks HTTPS
        self.asked = threading.Event()  # a whole request has come in
        self.requests: list[bytes] = []
        self.stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
            self.requests.append(read_request(connection))
            self.asked.set()
            self.behaviour(connection, self.stopped)

    def held(self) -> int:
        """Connections whose client is still there, waiting for the answer."""
        return sum(1 for c in self._connections if _client_waiting(c))

    def stop(self) -> None:
        self.stopped.set()
        self._listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.close()


def _client_waiting(connection: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return not readable or connection.recv(1, socket.MSG_PEEK) != b""
    except (OSError, ValueError):
        return False


def read_request(connection: socket.socket) -> bytes:
    """One HTTP request, headers and its Content-Length of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def silent(connection: socket.socket, stopped: threading.Event) -> None:
    """Takes the request and holds the connection, saying nothing, until stopped."""
    stopped.wait()


def dribbling(connection: socket.socket, stopped: threading.Event) -> None:
    """Answers 200 with a body it sends a byte every tenth of a second, for ever: every
    read gets something well within any per-read timeout."""
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    while not stopped.wait(0.1):
        connection.sendall(b"x")


def answering(status: int, body: bytes) -> Behaviour:
    """Answers every request with ``status`` and ``body``, then closes."""

    def answer(connection: socket.socket, stopped: threading.Event) -> None:
        connection.sendall(
            f"HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        connection.close()

    return answer


@contextmanager
def peer(behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> Iterator[Peer]:
    server = Peer(behaviour, tls)
    try:
        yield server
    finally:
        server.stop()
