"""What every route stands on: a ledger connection, the user behind the request, and
whether their role may do what is asked.

A request never holds one connection while it waits for another: the user is looked up
on a connection held only for the look-up, and the route's own is taken after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from pipeline.ledger.reading.reads import Requester
from pipeline.ledger.storage.store import Ledger
from pipeline.logging import get_logger
from pipeline.settings import Settings
from pipeline.users import Role, User, session_user, user_for

log = get_logger(__name__)
READERS = (Role.DPO, Role.AUDITOR, Role.ADMIN)
#: Who may run a subject-access report: it shows the pupil's plain identifiers.
SAR_ROLES = (Role.DPO, Role.ADMIN)

bearer = HTTPBearer(auto_error=False)


def ledger_of(request: Request) -> Ledger:
    return request.app.state.ledger  # type: ignore[no-any-return]


LedgerOf = Annotated[Ledger, Depends(ledger_of)]


def connection(request: Request) -> Iterator[Connection]:
    with ledger_of(request).engine.connect() as connected:
        yield connected


Db = Annotated[Connection, Depends(connection)]


def config_of(request: Request) -> Settings:
    """The settings the app was built with: read once, at start-up, never per request."""
    return request.app.state.settings  # type: ignore[no-any-return]


Config = Annotated[Settings, Depends(config_of)]


def user_of(ledger: Ledger, token: str) -> User | None:
    """The user holding ``token``."""
    with ledger.engine.connect() as connected:
        return user_for(connected, token)


def user_of_session(ledger: Ledger, session: str) -> User | None:
    """Whose live desk session this is."""
    with ledger.engine.connect() as connected:
        return session_user(connected, session)


def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    known = getattr(request.state, "user", None)  # authenticated before the body was read
    if isinstance(known, User):
        return known
    user = user_of(ledger_of(request), credentials.credentials) if credentials else None
    if user is None:
        log.warning(
            "request_unauthenticated", path=request.url.path, token_given=credentials is not None
        )
        raise HTTPException(401, "a valid token is needed", headers={"WWW-Authenticate": "Bearer"})
    return user


def forbidden(request: Request, user: User) -> None:
    """Log that ``user`` was refused what they asked; the caller answers 403."""
    log.warning("request_forbidden", path=request.url.path, user=user.name, role=user.role.value)


def not_theirs(request: Request, user: User, exists: Callable[[Connection], bool]) -> None:
    """Log, as a warning naming the user and the route, an attempt by a user confined to
    some schools on another school's incident or entry: ``exists`` says whether it is
    there at all. The caller answers 404 either way, as for one that is not: only the
    log tells the two apart."""
    if user.scope is None:
        return
    with ledger_of(request).engine.connect() as connected:
        if not exists(connected):
            return
    route = request.scope.get("route")
    log.warning(
        "other_school_asked",
        user=user.name,
        role=user.role.value,
        route=getattr(route, "path", None),
        method=request.method,
        path=request.url.path,
    )


def role(*allowed: Role) -> Any:
    """A dependency admitting only users with one of ``allowed`` roles."""

    def check(request: Request, user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in allowed:
            forbidden(request, user)
            raise HTTPException(403, f"the {user.role.value} role may not do this")
        return user

    return Depends(check)


def trust_admin(request: Request, user: Annotated[User, role(Role.ADMIN)]) -> User:
    """An admin of every school: one confined to some schools manages no users (the list
    of users is the whole deployment's)."""
    if user.schools is not None:
        forbidden(request, user)
        raise HTTPException(403, "managing users takes an admin of every school")
    return user


Reader = Annotated[User, role(*READERS)]
Dpo = Annotated[User, role(Role.DPO)]
Admin = Annotated[User, Depends(trust_admin)]
SubjectAccess = Annotated[User, role(*SAR_ROLES)]


def reader_of(user: User, via: str) -> Requester:
    """Who is reading, for the ledger's read entry: ``via`` is "api" or "page"; the
    schools they are confined to go with them, into every query made for them."""
    return Requester(user.name, user.role.value, via, user.scope)
