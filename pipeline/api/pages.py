"""The breach desk's pages, for people rather than scripts: sign in, the queue, an incident.

Served by the same app as the API, with everything inline (no CDN: this runs inside
school networks). Signing in exchanges the user's token for an HttpOnly, SameSite=Strict
cookie holding it, so forms work without JavaScript and other sites cannot post them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection

from pipeline.api.app import READERS, Db, incident_detail, incident_out
from pipeline.incidents.desk import UnknownIncident, incidents, take_action
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Risk,
    Status,
    TransitionRefused,
    in_queue_order,
    left_text,
    shown_in_school_time,
)
from pipeline.logging import get_logger
from pipeline.users import Role, User, user_for

log = get_logger(__name__)
COOKIE = "sharing_audit_session"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["zip"] = zip
router = APIRouter(prefix="/desk", include_in_schema=False)


def signed_in(request: Request, db: Db) -> User | None:
    token = request.cookies.get(COOKIE)
    return user_for(db, token) if token else None


def _seconds(left: float | None) -> timedelta | None:
    return timedelta(seconds=left) if left is not None else None


SignedIn = Annotated[User | None, Depends(signed_in)]


def _to_signin() -> RedirectResponse:
    return RedirectResponse("/desk/signin", status_code=303)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "signin.html", {"user": None})


@router.post("/signin", response_model=None)
def signin(request: Request, token: Annotated[str, Form()], db: Db) -> Response:
    user = user_for(db, token.strip())
    if user is None:
        log.warning("signin_refused", path=request.url.path)
        return templates.TemplateResponse(
            request, "signin.html", {"user": None, "error": "That token is not valid."},
            status_code=401,
        )  # fmt: skip
    response = RedirectResponse("/desk", status_code=303)
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=12 * 3600)  # fmt: skip
    return response


@router.get("/signout")
def signout() -> Response:
    response = _to_signin()
    response.delete_cookie(COOKIE)
    return response


@router.get("", response_class=HTMLResponse, response_model=None)
def queue(request: Request, user: SignedIn, db: Db) -> Response:
    if user is None or user.role not in READERS:
        return _to_signin()
    now = datetime.now(UTC)
    shown = [
        {**incident_out(i, incident, now), "left_text": left_text(incident.time_left(now))}
        for i, incident in in_queue_order(incidents(db), now)
        if incident.status is not Status.CLOSED
    ]
    return templates.TemplateResponse(request, "queue.html", {"user": user, "incidents": shown})


def _incident_page(request: Request, user: User, db: Connection, incident_id: int,
                   error: str | None = None, status: int = 200) -> Response:  # fmt: skip
    detail = incident_detail(db, incident_id)
    if detail is None:
        return HTMLResponse(f"<p>No incident {incident_id}. <a href='/desk'>Back</a></p>", 404)
    detail["history"] = [{**a, "at_uk": shown_in_school_time(a["at"])} for a in detail["history"]]
    context = {
        "user": user, "i": detail, "error": error, "can_act": user.role is Role.DPO,
        "left_text": left_text(_seconds(detail["seconds_left"])),
        "detected_uk": shown_in_school_time(detail["detected_at"]),
    }  # fmt: skip
    return templates.TemplateResponse(request, "incident.html", context, status_code=status)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, response_model=None)
def incident_page(incident_id: int, request: Request, user: SignedIn, db: Db) -> Response:
    if user is None or user.role not in READERS:
        return _to_signin()
    return _incident_page(request, user, db, incident_id)


@router.post("/incidents/{incident_id}/{action}", response_model=None)
def incident_action(
    incident_id: int,
    action: ActionKind,
    request: Request,
    user: SignedIn,
    db: Db,
    risk: Annotated[Risk | None, Form()] = None,
    reasons: Annotated[str | None, Form()] = None,
    ico_reference: Annotated[str | None, Form()] = None,
    reason: Annotated[str | None, Form()] = None,
) -> Response:
    if user is None:
        return _to_signin()
    if user.role is not Role.DPO:
        log.warning("request_forbidden", path=request.url.path, user=user.name,
                    role=user.role.value)  # fmt: skip
        refusal = f"The {user.role.value} role may not act on incidents."
        return _incident_page(request, user, db, incident_id, refusal, 403)
    now = datetime.now(UTC)
    taken = Action(
        action,
        user.name,
        now,
        risk=risk,
        reasons=reason if action is ActionKind.CLOSE else reasons,
        ico_reference=ico_reference,
        reported_at=now if action is ActionKind.REPORT else None,
    )
    ledger = request.app.state.ledger
    try:
        take_action(ledger, incident_id, taken)
    except UnknownIncident:
        return HTMLResponse(f"<p>No incident {incident_id}. <a href='/desk'>Back</a></p>", 404)
    except TransitionRefused as refused:
        return _incident_page(request, user, db, incident_id, str(refused), 409)
    log.info("incident_action", incident=incident_id, action=action.value, by=user.name)
    return RedirectResponse(f"/desk/incidents/{incident_id}", status_code=303)
