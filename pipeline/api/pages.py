"""The breach desk's pages, for people rather than scripts: sign in, the queue, an incident.

Served by the same app as the API, with everything inline (no CDN: this runs inside
school networks). Signing in exchanges the user's token for a server-side session, held
in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS): forms work without
JavaScript, other sites cannot post them, the token never sits in the browser, and the
session expires and ends at sign-out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from pipeline.api.audit import (
    MAX_SEQ,
    ExportFormat,
    entries_download,
    explained_entry,
    report_response,
)
from pipeline.api.awaiting import ONE_SCHOOL, awaiting_said
from pipeline.api.deps import (
    READERS,
    SAR_ROLES,
    Db,
    forbidden,
    reader_of,
    user_of,
    user_of_session,
)
from pipeline.api.desk import audited_incident_detail, incident_out
from pipeline.incidents.desk import UnknownIncident, incidents, incidents_about, take_action
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Risk,
    Status,
    TransitionRefused,
    in_queue_order,
    left_text,
)
from pipeline.ledger.asking import (
    KINDS,
    BadFilter,
    filters_from,
    given_pseudonym,
    instant,
    names_a_upn,
    pupil_key,
)
from pipeline.ledger.queries import Filters
from pipeline.ledger.reads import search
from pipeline.logging import get_logger
from pipeline.reports.formats import ReportFormat
from pipeline.reports.ropa import audited_ropa
from pipeline.reports.sar import audited_sar
from pipeline.schooltime import SCHOOL_TIME, school_year, shown_in_school_time
from pipeline.settings import settings
from pipeline.shown import NAMING, Naming, install
from pipeline.users import SESSION_HOURS, Role, User, end_session, open_session
from schemas.decisions import RuleId
from schemas.events import EVENT_TYPES

log = get_logger(__name__)
COOKIE = "sharing_audit_session"


def _naming(request: Request) -> dict[str, Any]:
    """Every page names recipients and schools by the deployment's packs and register."""
    state = request.app.state
    return {NAMING: Naming(state.policy, state.schools)}


templates = Jinja2Templates(
    directory=str(Path(__file__).parent / "templates"), context_processors=[_naming]
)
templates.env.filters["zip"] = zip
install(templates.env)
router = APIRouter(prefix="/desk", include_in_schema=False)


def signed_in(request: Request) -> User | None:
    known = getattr(request.state, "user", None)  # authenticated before the body was read
    if isinstance(known, User):
        return known
    session = request.cookies.get(COOKIE)
    return user_of_session(request.app.state.ledger, session) if session else None


def _seconds(left: float | None) -> timedelta | None:
    return timedelta(seconds=left) if left is not None else None


class SignInFirst(Exception):
    """A page asked for by no one signed in (or by a role that reads nothing)."""


def page_reader(request: Request) -> User:
    """The signed-in reader, or :class:`SignInFirst` (answered with the sign-in page)."""
    user = signed_in(request)
    if user is None or user.role not in READERS:
        raise SignInFirst
    return user


PageReader = Annotated[User, Depends(page_reader)]


def to_signin(_: Request | None = None, __: Exception | None = None) -> Response:
    return RedirectResponse("/desk/signin", status_code=303)


STATIC = Path(__file__).parent / "static"
CLOCK = (STATIC / "clock.js").read_bytes()
PRINT = (STATIC / "print.js").read_bytes()


@router.get("/clock.js")
def clock_script() -> Response:
    """The countdowns to the ICO deadline: a file, since the pages allow no inline script."""
    return Response(CLOCK, media_type="text/javascript")


@router.get("/print.js")
def print_script() -> Response:
    """The reports' Print button, for the same reason."""
    return Response(PRINT, media_type="text/javascript")


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "signin.html", {"user": None})


@router.post("/signin", response_model=None)
def signin(request: Request, token: Annotated[str, Form(max_length=200)]) -> Response:
    user = user_of(request.app.state.ledger, token.strip())
    if user is None:
        log.warning("signin_refused", path=request.url.path)
        return templates.TemplateResponse(
            request,
            "signin.html",
            {"user": None, "error": "That token is not valid."},
            status_code=401,
        )
    response = RedirectResponse("/desk", status_code=303)
    session = open_session(request.app.state.ledger, user)
    response.set_cookie(
        COOKIE,
        session,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=SESSION_HOURS * 3600,
    )
    return response


@router.get("/signout")
def signout(request: Request) -> Response:
    """End the session on the server, not only the cookie: a copy of it stops working."""
    session = request.cookies.get(COOKIE)
    if session:
        end_session(request.app.state.ledger, session)
    response = to_signin()
    response.delete_cookie(COOKIE)
    return response


@router.get("", response_class=HTMLResponse, response_model=None)
def queue(request: Request, user: PageReader, db: Db) -> Response:
    now = datetime.now(UTC)
    shown = [
        {**incident_out(i, incident, now), "left_text": left_text(incident.time_left(now))}
        for i, incident in in_queue_order(incidents(db, user.scope), now)
        if incident.status is not Status.CLOSED
    ]
    awaiting = awaiting_said(request.app.state) if user.scope is None else ONE_SCHOOL
    return templates.TemplateResponse(
        request, "queue.html", {"user": user, "incidents": shown, "awaiting": awaiting}
    )


def _incident_page(
    request: Request, user: User, incident_id: int, error: str | None = None, status: int = 200
) -> Response:
    detail = audited_incident_detail(request.app.state.ledger, user, "page", incident_id)
    if detail is None:
        return HTMLResponse(f"<p>No incident {incident_id}. <a href='/desk'>Back</a></p>", 404)
    detail["history"] = [{**a, "at_uk": shown_in_school_time(a["at"])} for a in detail["history"]]
    context = {
        "user": user,
        "i": detail,
        "error": error,
        "can_act": user.role is Role.DPO,
        "left_text": left_text(_seconds(detail["seconds_left"])),
        "detected_uk": shown_in_school_time(detail["detected_at"]),
    }
    return templates.TemplateResponse(request, "incident.html", context, status_code=status)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, response_model=None)
def incident_page(incident_id: int, request: Request, user: PageReader) -> Response:
    return _incident_page(request, user, incident_id)


@router.post("/incidents/{incident_id}/{action}", response_model=None)
def incident_action(
    incident_id: int,
    action: ActionKind,
    request: Request,
    user: PageReader,
    risk: Annotated[Risk | None, Form()] = None,
    reasons: Annotated[str | None, Form(max_length=5000)] = None,
    ico_reference: Annotated[str | None, Form(max_length=100)] = None,
    reason: Annotated[str | None, Form(max_length=5000)] = None,
) -> Response:
    if user.role is not Role.DPO:
        forbidden(request, user)
        refusal = f"The {user.role.value} role may not act on incidents."
        return _incident_page(request, user, incident_id, refusal, 403)
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
        take_action(ledger, incident_id, taken, user.scope)
    except UnknownIncident:
        return HTMLResponse(f"<p>No incident {incident_id}. <a href='/desk'>Back</a></p>", 404)
    except TransitionRefused as refused:
        return _incident_page(request, user, incident_id, str(refused), 409)
    log.info("incident_action", incident=incident_id, action=action.value, by=user.name)
    return RedirectResponse(f"/desk/incidents/{incident_id}", status_code=303)


# -- the auditors' pages: search, an entry, the reports ---------------------------------

# The fields a search page's address may carry: a pupil by pseudonym, never by UPN.
_SEARCH_FIELDS = (
    "pupil",
    "recipient",
    "type",
    "decision",
    "rule",
    "category",
    "kind",
    "since",
    "until",
)
#: The rules a search can ask for, in the contract's order.
RULE_IDS = tuple(rule.value for rule in RuleId)
_UPN_IN_URL = (
    "A UPN is never put in a page's address, where browser histories and access logs "
    "keep it: type it into the search form."
)


_FIELD_NAMES = {
    "upn": "Pupil UPN",
    "pupil": "Pupil",
    "event_type": "Event type",
    "decision": "Decision",
    "kind": "Kind",
    "since": "From",
    "until": "Before",
}


def _forbidden(request: Request, user: User, what: str) -> Response:
    forbidden(request, user)
    return HTMLResponse(
        f"<p>The {user.role.value} role may not {what}. <a href='/desk'>Back</a></p>", 403
    )


def _asked(request: Request) -> dict[str, str]:
    """The search form's fields as given (empty ones dropped)."""
    return {k: v for k in _SEARCH_FIELDS if (v := request.query_params.get(k, "").strip())}


def _upn_in_url(request: Request) -> Response | None:
    if names_a_upn(request.query_params):
        return HTMLResponse(f"<p>{_UPN_IN_URL} <a href='/desk/search'>Search</a></p>", 400)
    return None


def _filters(request: Request, asked: dict[str, str], after: int = 0) -> Filters:
    return filters_from(
        request.app.state.pseudonym,
        upn=asked.get("upn"),
        pupil=asked.get("pupil"),
        recipient=asked.get("recipient"),
        event_type_=asked.get("type"),
        decision=asked.get("decision"),
        rule=asked.get("rule"),
        category=asked.get("category"),
        kind=asked.get("kind"),
        since=asked.get("since"),
        until=asked.get("until"),
        after=after,
        names=_FIELD_NAMES,
    )


@router.get("/search", response_class=HTMLResponse, response_model=None)
def search_page(
    request: Request, user: PageReader, after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0
) -> Response:
    """The search form; with any field given, a recorded page of results."""
    refused = _upn_in_url(request)
    if refused is not None:
        return refused
    asked = _asked(request)
    context: dict[str, Any] = {
        "user": user,
        "q": asked,
        "event_types": EVENT_TYPES,
        "rules": RULE_IDS,
        "kinds": KINDS,
        "query": urlencode(asked),
        "can_sar": user.role in SAR_ROLES,
        "page": None,
    }
    if not asked and "go" not in request.query_params:
        return templates.TemplateResponse(request, "search.html", context)
    try:
        filters = _filters(request, asked, after)
    except BadFilter as exc:
        context["error"] = str(exc)
        return templates.TemplateResponse(request, "search.html", context, status_code=422)
    context["page"] = search(request.app.state.ledger, reader_of(user, "page"), filters, 50)
    return templates.TemplateResponse(request, "search.html", context)


@router.post("/search", response_class=HTMLResponse, response_model=None)
async def search_posted(request: Request, user: PageReader) -> Response:
    """The search form as posted: its UPN, if any, becomes the pupil's pseudonym, and the
    search is shown at an address that names the pupil only by that pseudonym."""
    form = await request.form()
    fields = (*_SEARCH_FIELDS, "upn")
    asked = {k: v.strip() for k in fields if isinstance(v := form.get(k, ""), str) and v.strip()}
    if "upn" in asked:  # a UPN typed in replaces the pupil of the search before
        asked.pop("pupil", None)
    try:
        filters = _filters(request, asked)
    except BadFilter as exc:
        context = {
            "user": user,
            "q": asked,
            "event_types": EVENT_TYPES,
            "rules": RULE_IDS,
            "kinds": KINDS,
            "error": str(exc),
            "page": None,
        }
        return templates.TemplateResponse(request, "search.html", context, status_code=422)
    asked.pop("upn", None)
    if filters.pupil_key:
        asked["pupil"] = filters.pupil_key
    return RedirectResponse(f"/desk/search?{urlencode({**asked, 'go': '1'})}", status_code=303)


@router.get("/search/export", response_model=None)
def search_export(
    request: Request, user: PageReader, format: ExportFormat = ExportFormat.csv
) -> Response:
    """The whole search as a download, streamed."""
    refused = _upn_in_url(request)
    if refused is not None:
        return refused
    try:
        filters = _filters(request, _asked(request))
    except BadFilter as exc:
        return HTMLResponse(f"<p>{escape(str(exc))} <a href='/desk/search'>Back</a></p>", 422)
    return entries_download(request.app.state.ledger, reader_of(user, "page"), filters, format)


@router.get("/entries/{seq}", response_class=HTMLResponse, response_model=None)
def entry_page(seq: int, request: Request, user: PageReader) -> Response:
    state = request.app.state
    found = explained_entry(state.ledger, reader_of(user, "page"), seq, state.policy, state.schools)
    if found is None:
        return HTMLResponse(f"<p>No entry {seq}. <a href='/desk/search'>Back</a></p>", 404)
    entry = found["entry"]
    event = {seq, entry["refers_to"], *(later["seq"] for later in found["referred_by"])}
    with state.ledger.engine.connect() as db:
        about = incidents_about(db, {s for s in event if s is not None}, user.scope)
    return templates.TemplateResponse(
        request, "entry.html", {"user": user, "e": entry, "incidents": about, **found}
    )


@router.get("/sar", response_model=None)
def sar_link(request: Request, user: PageReader) -> Response:
    """A subject-access report is asked for from the search page, by post."""
    refused = _upn_in_url(request)
    return refused if refused is not None else RedirectResponse("/desk/search", 303)


@router.post("/sar", response_model=None)
def sar_page(
    request: Request,
    user: PageReader,
    upn: Annotated[str, Form(max_length=20)] = "",
    pupil: Annotated[str, Form(max_length=64)] = "",
    format: Annotated[ReportFormat, Form()] = ReportFormat.html,
) -> Response:
    """The subject-access report, printable, for the DPO to send to a parent: for the
    pupil of a search (by pseudonym) or of a UPN typed into the form."""
    if user.role not in SAR_ROLES:
        return _forbidden(request, user, "run a subject-access report")
    state = request.app.state
    try:
        if upn.strip():
            key = pupil_key(upn, state.pseudonym, "UPN")
        elif pupil:
            key = given_pseudonym(pupil, "Pupil")
        else:
            raise BadFilter("UPN: give the pupil's UPN")
    except BadFilter as exc:
        return HTMLResponse(f"<p>{escape(str(exc))} <a href='/desk/search'>Back</a></p>", 422)
    report = audited_sar(
        state.ledger,
        reader_of(user, "page"),
        key,
        state.policy,
        settings().witness_quorum,
        state.schools,
    )
    if report is None:
        return HTMLResponse("<p>No such pupil. <a href='/desk/search'>Back</a></p>", 404)
    back = f"/desk/search?{urlencode({'pupil': key, 'go': '1'})}"
    return report_response(report, "subject-access", format, back)


@router.get("/ropa", response_model=None)
def ropa_page(
    request: Request,
    user: PageReader,
    since: str = "",
    until: str = "",
    format: ReportFormat | None = None,
) -> Response:
    """The form, then the record of processing as a printable page or a download. The
    form opens on the current school year."""
    if format is None and not since and not until:
        start_day, end_day = school_year(datetime.now(SCHOOL_TIME).date())
        since, until = start_day.isoformat(), end_day.isoformat()
    context = {"user": user, "since": since, "until": until}
    if format is None:
        return templates.TemplateResponse(request, "ropa_form.html", context)
    try:
        start = instant(since, "From") if since else None
        end = instant(until, "Before") if until else None
    except BadFilter as exc:
        return templates.TemplateResponse(
            request, "ropa_form.html", {**context, "error": str(exc)}, status_code=422
        )
    state = request.app.state
    reader = reader_of(user, "page")
    report = audited_ropa(state.ledger, reader, state.policy, start, end, None, state.schools)
    assert report is not None  # no school asked: the reader's own schools
    return report_response(report, "record-of-processing", format, back="/desk/ropa")
