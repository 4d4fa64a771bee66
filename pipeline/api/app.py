"""The breach desk over HTTP: incidents, their entries and actions, behind bearer tokens.

Every request but ``/health`` needs ``Authorization: Bearer TOKEN`` (see
``sharing-audit users add``). A missing or unknown token gets 401, a role that may not do
what is asked gets 403; both are logged, without the token. Auditors and admins read; only
the DPO acts on incidents. Actions go into the ledger's chain with the user's name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Connection, select

from pipeline.api.guards import add_guards
from pipeline.incidents.desk import UnknownIncident, incidents, take_action
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Incident,
    Risk,
    Status,
    TransitionRefused,
    in_queue_order,
    shown_in_school_time,
)
from pipeline.ledger.keys import bind_key, ledger_key
from pipeline.ledger.reads import Requester, record_read
from pipeline.ledger.store import ENTRY, Ledger, any_of, make_engine, utc_text
from pipeline.logging import get_logger
from pipeline.packs import load_pack
from pipeline.policy.pack import Policy
from pipeline.pseudonym import Pseudonymiser, pseudonymiser
from pipeline.settings import settings
from pipeline.users import (
    Role,
    UnknownUser,
    User,
    UserExists,
    add_user,
    revoke_user,
    rotate_user,
    session_user,
    user_for,
    users,
)

log = get_logger(__name__)
READERS = (Role.DPO, Role.AUDITOR, Role.ADMIN)


class ActionOut(BaseModel):
    action: str
    by: str
    at: datetime
    risk: str | None = None
    reasons: str | None = None
    ico_reference: str | None = None


class IncidentOut(BaseModel):
    id: int
    severity: str
    breach: bool
    status: str
    rule: str
    recipient: str | None
    day: str
    detected_at: datetime
    deadline: datetime | None
    deadline_uk: str | None
    seconds_left: float | None
    overdue: bool
    risk: str | None
    entries: list[int]
    next: list[str]
    history: list[ActionOut]


class EntryOut(BaseModel):
    """A ledger entry behind an incident, with why it was decided as it was."""

    seq: int
    kind: str
    event_id: str | None
    event_type: str | None
    occurred_at: str | None
    recipient: str | None
    decision: str | None
    rules: list[str]
    reasons: list[str]
    categories: list[str]
    pupil_keys: list[str]
    policy_version: str | None


class IncidentDetail(IncidentOut):
    ledger_entries: list[EntryOut]


class Assessment(BaseModel):
    risk: Risk
    reasons: str = Field(min_length=1, max_length=5000)


class IcoReport(BaseModel):
    ico_reference: str = Field(min_length=1, max_length=100)
    reported_at: datetime | None = Field(default=None, description="default: now")


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    role: Role
    expires_at: AwareDatetime | None = Field(default=None, description="when the token ends")


class UserOut(BaseModel):
    name: str
    role: Role


class UserCreated(UserOut):
    token: str = Field(description="shown this once; only its hash is kept")


class Closing(BaseModel):
    reason: str = Field(min_length=1, max_length=5000)


def incident_out(incident_id: int, incident: Incident, now: datetime) -> dict[str, Any]:
    left = incident.time_left(now)
    deadline = incident.deadline
    return {
        "id": incident_id, "severity": incident.severity.value, "breach": incident.breach,
        "status": incident.status.value, "rule": incident.cause.rule,
        "recipient": incident.cause.recipient, "day": incident.cause.day.isoformat(),
        "detected_at": incident.detected_at, "deadline": deadline,
        "deadline_uk": shown_in_school_time(deadline) if deadline else None,
        "seconds_left": left.total_seconds() if left is not None else None,
        "overdue": incident.overdue(now), "risk": incident.risk.value if incident.risk else None,
        "entries": list(incident.entries), "next": [k.value for k in incident.allowed()],
        "history": [
            {"action": a.kind.value, "by": a.by, "at": a.at,
             "risk": a.risk.value if a.risk else None, "reasons": a.reasons,
             "ico_reference": a.ico_reference}
            for a in incident.history
        ],
    }  # fmt: skip


bearer = HTTPBearer(auto_error=False)


def connection(request: Request) -> Iterator[Connection]:
    ledger: Ledger = request.app.state.ledger
    with ledger.engine.connect() as connected:
        yield connected


Db = Annotated[Connection, Depends(connection)]


def user_of(ledger: Ledger, token: str) -> User | None:
    """The user holding ``token``, on a connection held only for the look-up: a request
    never holds one connection while it waits for another."""
    with ledger.engine.connect() as connected:
        return user_for(connected, token)


def user_of_session(ledger: Ledger, session: str) -> User | None:
    """Whose live desk session this is, looked up as :func:`user_of` is."""
    with ledger.engine.connect() as connected:
        return session_user(connected, session)


def users_of(ledger: Ledger) -> list[User]:
    with ledger.engine.connect() as connected:
        return users(connected)


def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    known = getattr(request.state, "user", None)  # authenticated before the body was read
    if isinstance(known, User):
        return known
    user = user_of(request.app.state.ledger, credentials.credentials) if credentials else None
    if user is None:
        log.warning("request_unauthenticated", path=request.url.path,
                    token_given=credentials is not None)  # fmt: skip
        raise HTTPException(401, "a valid token is needed", headers={"WWW-Authenticate": "Bearer"})
    return user


def role(*allowed: Role) -> Any:
    """A dependency admitting only users with one of ``allowed`` roles."""

    def check(request: Request, user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in allowed:
            log.warning("request_forbidden", path=request.url.path, user=user.name,
                        role=user.role.value)  # fmt: skip
            raise HTTPException(403, f"the {user.role.value} role may not do this")
        return user

    return Depends(check)


Reader = Annotated[User, role(*READERS)]
Dpo = Annotated[User, role(Role.DPO)]
Admin = Annotated[User, role(Role.ADMIN)]


def incident_detail(db: Connection, incident_id: int) -> dict[str, Any] | None:
    """An incident with the ledger entries behind it and their explanations."""
    incident = incidents(db).get(incident_id)
    if incident is None:
        return None
    rows = db.execute(
        select(ENTRY).where(any_of(db, ENTRY.c.seq, list(incident.entries))).order_by(ENTRY.c.seq)
    ).mappings()
    entries = [
        {**{k: r[k] for k in EntryOut.model_fields if k not in _JSON},
         **{k: orjson.loads(r[k]) for k in _JSON}}
        for r in rows
    ]  # fmt: skip
    return {**incident_out(incident_id, incident, datetime.now(UTC)), "ledger_entries": entries}


def reader_of(user: User, via: str) -> Requester:
    """Who is reading, for the ledger's read entry: ``via`` is "api" or "page"."""
    return Requester(user.name, user.role.value, via)


def audited_incident_detail(
    ledger: Ledger, user: User, via: str, incident_id: int
) -> dict[str, Any] | None:
    """:func:`incident_detail`, recorded as a read: it shows the entries' pupils. The
    reading connection is given back before the read is recorded on another."""
    with ledger.engine.connect() as db:
        as_of = Ledger.head(db)[0]
        detail = incident_detail(db, incident_id)
    if detail is not None:
        shown = len(detail["ledger_entries"])
        record_read(ledger, reader_of(user, via), "incident", returned=shown, as_of=as_of,
                    refers_to=incident_id, extra={"entries": detail["entries"]})  # fmt: skip
    return detail


#: Requests served at once, each on at most one of the ledger's connections at a time.
THREADS = 16


def create_api(
    ledger: Ledger,
    *,
    policy: Policy | None = None,
    pseudonym: Pseudonymiser | None = None,
    threads: int = THREADS,
) -> FastAPI:
    """The app over ``ledger``. ``policy`` (default: the configured pack) explains
    entries and reports; ``pseudonym`` (default: the ledger's own key) turns a UPN asked
    about into the key the ledger knows the pupil by.

    ``threads`` requests run at once, and the app's own pool keeps as many connections
    (and as many again for streamed exports): a request holds at most one at a time, so
    none waits on another while holding one, and a request that finds none free within
    a few seconds is answered 503 with ``Retry-After``.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    api = FastAPI(
        title="sharing-audit",
        summary="The DPO's breach desk, the auditors' search and reports, and the ledger.",
        version="1",
        docs_url=None,  # Swagger UI would load its code from a CDN; read /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    ledger = Ledger(make_engine(ledger.engine.url.render_as_string(False), pool_size=threads))
    api.state.ledger = ledger
    api.state.policy = policy or load_pack(settings().policy)
    if pseudonym is None:  # the ledger's own key, bound to it
        url = ledger.engine.url.render_as_string(hide_password=False)
        pseudonym = pseudonymiser(ledger_key(ledger, settings().pseudonym_key, url))
    else:  # a desk on the wrong key would find no pupil, silently
        bind_key(ledger, pseudonym)
    api.state.pseudonym = pseudonym
    # These build on this module's dependencies, so they are imported once it exists.
    from pipeline.api.audit import router as audit
    from pipeline.api.pages import COOKIE
    from pipeline.api.pages import router as pages

    api.include_router(audit)
    api.include_router(pages)

    def identify(bearer: str | None, session: str | None) -> User | None:
        if bearer:
            return user_of(ledger, bearer)
        return user_of_session(ledger, session) if session else None

    add_guards(api, identify, cookie=COOKIE, open_paths={"/desk/signin"})

    @api.get("/health")
    def health(db: Db) -> dict[str, str]:
        db.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    @api.get("/incidents", response_model=list[IncidentOut])
    def list_incidents(user: Reader, db: Db, include_closed: bool = False) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [
            incident_out(i, incident, now)
            for i, incident in in_queue_order(incidents(db), now)
            if include_closed or incident.status is not Status.CLOSED
        ]

    @api.get("/incidents/{incident_id}", response_model=IncidentDetail)
    def get_incident(incident_id: int, user: Reader) -> dict[str, Any]:
        detail = audited_incident_detail(ledger, user, "api", incident_id)
        if detail is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return detail

    def act(incident_id: int, action: Action) -> dict[str, Any]:
        try:
            _, updated = take_action(ledger, incident_id, action)
        except UnknownIncident:
            raise HTTPException(404, f"no incident {incident_id}") from None
        except TransitionRefused as refused:
            raise HTTPException(409, str(refused)) from None
        log.info("incident_action", incident=incident_id, action=action.kind.value, by=action.by)
        return incident_out(incident_id, updated, datetime.now(UTC))

    @api.post("/incidents/{incident_id}/acknowledge", response_model=IncidentOut)
    def acknowledge(incident_id: int, user: Dpo) -> dict[str, Any]:
        return act(incident_id, Action(ActionKind.ACKNOWLEDGE, user.name, _now()))

    @api.post("/incidents/{incident_id}/assess", response_model=IncidentOut)
    def assess(incident_id: int, body: Assessment, user: Dpo) -> dict[str, Any]:
        action = Action(ActionKind.ASSESS, user.name, _now(), risk=body.risk, reasons=body.reasons)
        return act(incident_id, action)

    @api.post("/incidents/{incident_id}/report", response_model=IncidentOut)
    def report(incident_id: int, body: IcoReport, user: Dpo) -> dict[str, Any]:
        when = body.reported_at or _now()
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        action = Action(ActionKind.REPORT, user.name, _now(), ico_reference=body.ico_reference,
                        reported_at=when)  # fmt: skip
        return act(incident_id, action)

    @api.post("/incidents/{incident_id}/notify-subjects", response_model=IncidentOut)
    def notify_subjects(incident_id: int, user: Dpo) -> dict[str, Any]:
        return act(incident_id, Action(ActionKind.NOTIFY_SUBJECTS, user.name, _now()))

    @api.post("/incidents/{incident_id}/close", response_model=IncidentOut)
    def close(incident_id: int, body: Closing, user: Dpo) -> dict[str, Any]:
        return act(incident_id, Action(ActionKind.CLOSE, user.name, _now(), reasons=body.reason))

    @api.get("/users", response_model=list[UserOut])
    def list_users(user: Admin, db: Db) -> list[dict[str, Any]]:
        return [{"name": u.name, "role": u.role} for u in users(db)]

    @api.post("/users", response_model=UserCreated, status_code=201)
    def create_user(body: NewUser, user: Admin) -> dict[str, Any]:
        expires = utc_text(body.expires_at) if body.expires_at else None
        try:
            token = add_user(ledger, body.name, body.role, by=user.name, expires_at=expires)
        except UserExists as exc:
            raise HTTPException(409, str(exc)) from None
        log.info("user_added", user=body.name, role=body.role.value, by=user.name)
        return {"name": body.name, "role": body.role, "token": token}

    @api.post("/users/{name}/revoke", status_code=204)
    def revoke(name: Annotated[str, Path(max_length=100)], user: Admin) -> None:
        """End a user's token and desk sessions now."""
        try:
            revoke_user(ledger, name, by=user.name)
        except UnknownUser as exc:
            raise HTTPException(404, str(exc)) from None
        log.info("user_revoked", user=name, by=user.name)

    @api.post("/users/{name}/rotate", response_model=UserCreated)
    def rotate(name: Annotated[str, Path(max_length=100)], user: Admin) -> dict[str, Any]:
        """A new token for the user; the old one and its sessions stop working."""
        try:
            token = rotate_user(ledger, name, by=user.name)
        except UnknownUser as exc:
            raise HTTPException(404, str(exc)) from None
        log.info("user_rotated", user=name, by=user.name)
        role = next(u.role for u in users_of(ledger) if u.name == name)
        return {"name": name, "role": role, "token": token}

    return api


_JSON = ("rules", "reasons", "categories", "pupil_keys")


def _now() -> datetime:
    return datetime.now(UTC)


def app_from_settings() -> FastAPI:
    """The app as each process of ``serve --workers N`` builds it: the ledger and the pack
    from the settings (``SHARING_AUDIT_DATABASE_URL``, ``SHARING_AUDIT_POLICY``)."""
    config = settings()
    return create_api(Ledger.open(config.database_url), policy=load_pack(config.policy))
