"""An HTTP POST with one deadline for the whole exchange: connecting, TLS, sending, and
reading the answer.

A socket timeout bounds each read, not the exchange: a peer that answers a byte at a
time keeps every read well under it for as long as it likes. Here every socket call may
wait only what is left until the deadline (OpenSSL's handshake and reads already count
down one deadline across their own retries), so a peer costs at most the seconds given.
Built on urllib, so that the proxy settings of the environment still apply; redirects
are not followed (each would start another exchange, with a deadline of its own).
"""

from __future__ import annotations

import http.client
import io
import socket
import time
import urllib.error
import urllib.request
from typing import Any, cast


class NoAnswer(Exception):
    """No whole answer came: the peer could not be reached, was too slow, or spoke
    something other than HTTP."""


class _Bounded:
    """A connected socket whose every call may wait only what is left until ``deadline``.
    It stands in for the socket in http.client, which reads through ``makefile``."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._files = 0
        self._closed = False

    def _left(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        self._sock.settimeout(left)

    def sendall(self, data: bytes) -> None:
        self._left()
        self._sock.sendall(data)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._left()
        return self._sock.recv_into(buffer, nbytes, flags)

    def fileno(self) -> int:
        return self._sock.fileno()

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        self._files += 1
        return io.BufferedReader(socket.SocketIO(cast(socket.socket, self), "rb"))

    def _decref_socketios(self) -> None:  # called by SocketIO.close, as socket.socket has it
        self._files -= 1
        if self._closed and self._files <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._files <= 0:
            self._sock.close()


class _Within:
    """What both connections share: a deadline from the moment the connection is made,
    ``timeout`` seconds away, over connecting, TLS and the socket given to http.client."""

    timeout: float | None
    sock: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = time.monotonic() + (self.timeout or 0.0)
        self._create_connection = self._connected

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        return left

    def _connected(
        self, address: tuple[str, int], timeout: Any = None, source: Any = None
    ) -> socket.socket:
        sock = socket.create_connection(address, self._left(), source)
        sock.settimeout(self._left())  # a TLS handshake then has what is left, in all
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock = _Bounded(self.sock, self.deadline)


class _HTTPConnection(_Within, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Within, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        context = getattr(self, "_context", None)
        return self.do_open(_HTTPSConnection, req, context=context)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_HTTPHandler(), _HTTPSHandler(), _NoRedirects())


def post_within(
    url: str, body: bytes, content_type: str, seconds: float, limit: int = 65536
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` and take the status and up to ``limit`` bytes of the
    answer, all within ``seconds``; :class:`NoAnswer` saying why when no whole answer
    came in time."""
    try:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": content_type}
        )
        with _OPENER.open(request, timeout=seconds) as answer:
            return int(answer.status), answer.read(limit)
    except urllib.error.HTTPError as exc:
        try:
            return int(exc.code), exc.read(limit)
        except (OSError, http.client.HTTPException) as inner:
            raise NoAnswer(_why(inner, seconds)) from None
    except urllib.error.URLError as exc:
        raise NoAnswer(_why(exc.reason, seconds)) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise NoAnswer(_why(exc, seconds)) from None


def _why(error: object, seconds: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no whole answer within {seconds:g} s"
    if isinstance(error, http.client.HTTPException) and not isinstance(error, OSError):
        return f"not an HTTP answer ({type(error).__name__})"
    return f"could not be reached: {error}"  # refused, reset, closed before answering
