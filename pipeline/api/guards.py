"""What stands in front of every route: headers, body limits, authentication first, and
503 rather than a long wait when the ledger's connections are all in use.

Pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``, so that streamed
exports stream through it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from pipeline.ledger.storage.errors import LedgerBusy, LedgerUnavailable
from pipeline.logging import get_logger

log = get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The largest request body taken: a form or an action's JSON is a few kilobytes.
MAX_BODY = 64 * 1024
#: Seconds a client is told to wait when every connection to the ledger is in use.
RETRY_AFTER = 2
#: The desk's pages: nothing from anywhere else, no inline script (the clock's script is
#: a file of the desk's own), never inside a frame.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
#: Unless a route says how long its answer may be kept (the log's tiles and checkpoint),
#: nothing is kept: pages and answers name pupils.
_NO_STORE = (b"cache-control", b"no-store")
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

#: Finds who a request comes from, by bearer token or desk session (None: nobody).
Identify = Callable[[str | None, str | None], Any]


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class Guard:
    """Every response gets the security headers (HSTS when served over HTTPS) and, unless
    its route says how long it may be kept, ``Cache-Control: no-store``; a request
    with a body is authenticated before a byte of it is read (401, or to the sign-in page
    for the desk's forms), and its body is refused past :data:`MAX_BODY` (413)."""

    def __init__(self, app: App, identify: Identify, cookie: str, open_paths: set[str]) -> None:
        self.app = app
        self.identify = identify
        self.cookie = cookie
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _HEADERS + ([_HSTS] if secure else [])
                if not any(name.lower() == _NO_STORE[0] for name, _ in headers):
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        refusal = await self._refusal(scope)
        if refusal is None and scope["method"] in _BODY_METHODS:
            receive, refusal = await _buffered(receive)
        if refusal is not None:
            await refusal(scope, receive, send_guarded)
            return
        await self.app(scope, receive, send_guarded)

    async def _refusal(self, scope: Scope) -> Response | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return _json(413, f"a request body may hold at most {MAX_BODY} bytes")
        path: str = scope["path"]
        if scope["method"] not in _BODY_METHODS:
            return None
        site = cross_site(headers)
        if site is not None:
            log.warning("request_cross_site", path=path, fetched_from=site)
            return _json(
                403, "a request posted from another site is refused: use this desk's own pages"
            )
        if path in self.open_paths:
            return None
        user = await anyio.to_thread.run_sync(self.identify, *self._credentials(headers))
        if user is not None:
            scope.setdefault("state", {})["user"] = user
            return None
        log.warning("request_unauthenticated", path=path, before_body=True)
        if path.startswith("/desk"):
            return RedirectResponse("/desk/signin", status_code=303)
        return _json(401, "a valid token is needed", {"WWW-Authenticate": "Bearer"})

    def _credentials(self, headers: dict[str, str]) -> tuple[str | None, str | None]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is no session
            return bearer, None
        session = cookies.get(self.cookie)
        return bearer, session.value if session is not None else None


def cross_site(headers: Mapping[str, str]) -> str | None:
    """What a browser said of a request sent from another site, None if it said nothing
    of the kind. The session cookie is SameSite=Strict, so another site's form reaches
    no session; but the sign-in form opens one, and a sign-in posted from another site
    would sign the browser in as whoever's token that site chose (login CSRF).

    As Go's ``net/http.CrossOriginProtection`` decides: ``Sec-Fetch-Site`` (set by the
    browser, whatever proxy stands between) when sent, else ``Origin`` against ``Host``.
    A request with neither comes from no browser (a script with its token) or one too
    old to send them on a POST."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return None if site in ("same-origin", "none") else f"Sec-Fetch-Site {site}"
    origin = headers.get("origin")
    if origin is None or urlsplit(origin).netloc.lower() == headers.get("host", "").lower():
        return None
    return "Origin of another host"


async def _buffered(receive: Receive) -> tuple[Receive, Response | None]:
    """The body read whole (it is small), or a 413 as soon as it is larger than it may be,
    whatever its declared length: a chunked body declares none."""
    chunks: list[bytes] = []
    taken = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return receive, _json(400, "the request ended before its body")
        chunk = message.get("body", b"")
        taken += len(chunk)
        if taken > MAX_BODY:
            return receive, _json(413, f"a request body may hold at most {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    return replay, None


def add_guards(api: FastAPI, identify: Identify, cookie: str, open_paths: set[str]) -> None:
    """Install the guard and the answers for a busy or absent database."""
    api.add_middleware(Guard, identify=identify, cookie=cookie, open_paths=open_paths)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # As FastAPI answers, less the values given: they may be a pupil's data, and a
        # number too large for JSON (1e309) made the answer itself fail.
        errors = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @api.exception_handler(LedgerBusy)
    async def busy(request: Request, exc: LedgerBusy) -> Response:
        log.warning("database_busy", path=request.url.path)
        detail = "the ledger is busy: try again shortly"
        return _json(503, detail, {"Retry-After": str(RETRY_AFTER)})

    @api.exception_handler(LedgerUnavailable)
    async def unavailable(request: Request, exc: LedgerUnavailable) -> Response:
        cause = type(exc.__cause__ or exc).__name__
        log.error("database_unavailable", path=request.url.path, error=cause)
        detail = "the ledger cannot be reached: try again shortly"
        return _json(503, detail, {"Retry-After": str(RETRY_AFTER * 5)})
