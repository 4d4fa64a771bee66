"""The breach desk's pages, for people rather than scripts: sign in, the queue, an incident.

Served by the same app as the API, with everything inline (no CDN: this runs inside
school networks). Signing in exchanges the user's token for a server-side session, held
in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS): forms work without
JavaScript, other sites cannot post them, the token never sits in the browser, and the
session expires and ends at sign-out.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.api.audit import (
    MAX_SEQ,
    ExportFormat,
    PupilUnknown,
    entries_download,
    entry_not_theirs,
    erased_on_request,
    explained_entry,
    pupil_to_erase,
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
from pipeline.api.desk import audited_incident_detail, incident_not_theirs, incident_out
from pipeline.incidents.affected import FAMILIES_COLUMNS, event_day, families_rows
from pipeline.incidents.desk import (
    QUEUE_PAGE,
    Queue,
    QueueFilter,
    Revealed,
    UnknownIncident,
    incidents_about,
    queue,
    reveal_pupils,
    take_action,
)
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Risk,
    Status,
    TransitionRefused,
    left_text,
)
from pipeline.ledger.privacy.erasure import ErasureRefused, erasure_details
from pipeline.ledger.privacy.retention import audited_due
from pipeline.ledger.reading.asking import (
    KINDS,
    BadFilter,
    filters_from,
    given_pseudonym,
    instant,
    names_a_upn,
    pupil_key,
)
from pipeline.ledger.reading.queries import Filters
from pipeline.ledger.reading.reads import search
from pipeline.ledger.storage.incident_projection import schools_with_incidents
from pipeline.logging import get_logger
from pipeline.plural import counted
from pipeline.policy.schools import policy_of
from pipeline.reports.erasure import CANNOT_UNDO, REASON_HINT, Statement, erasure_statement
from pipeline.reports.formats import ReportFormat, csv_chunks
from pipeline.reports.notice_check import notice_now, ropa_part
from pipeline.reports.ropa import audited_ropa, ledger_span, opening_year
from pipeline.reports.sar import audited_sar
from pipeline.schooltime import SCHOOL_TIME, shown_day, shown_in_school_time
from pipeline.shown import (
    NAMING,
    NOTHING,
    Naming,
    category_name,
    counted_from_name,
    event_name,
    install,
)
from pipeline.users import SESSION_HOURS, Role, User, end_session, open_session
from schemas.alerts import Severity
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


#: The title of an error page, by status.
_ERROR_TITLES = {
    400: "Not asked that way",
    403: "Not allowed",
    404: "Not found",
    405: "Not asked that way",
    422: "Something is missing or wrong",
}


def error_page(
    request: Request,
    status: int,
    message: str,
    back: tuple[str, str] = ("/desk", "Back to the queue"),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An error in the desk's own layout, saying what is wrong and where to go back to:
    a person who followed a link deserves more than a bare string."""
    context = {
        "user": signed_in(request),
        "title": _ERROR_TITLES.get(status, "Something went wrong"),
        "message": message,
        "back": back,
    }
    return templates.TemplateResponse(
        request, "error.html", context, status_code=status, headers=dict(headers or {})
    )


def _no_incident(request: Request, user: User, incident_id: int) -> Response:
    """The 404 for an incident the user may not see, whether it is another school's or
    there is none: the first is logged (see :func:`not_theirs`)."""
    incident_not_theirs(request, user, incident_id)
    return error_page(request, 404, f"There is no incident {incident_id}.")


def _asked_wrongly(exc: RequestValidationError) -> str:
    """What a request to a page held that the page cannot take, field by field, without
    the values (they may be a pupil's)."""
    where = {"path": "in the address", "query": "in the address", "body": "in the form"}
    said = [
        f"{e['loc'][-1]} ({where.get(str(e['loc'][0]), 'sent')}): {e['msg']}" for e in exc.errors()
    ]
    return "This page cannot take what was sent: " + "; ".join(said) + "."


async def _answered(answer: Response | Awaitable[Response]) -> Response:
    """What an exception handler answered, sync or async alike."""
    return await answer if inspect.isawaitable(answer) else answer


def add_error_pages(api: FastAPI) -> None:
    """Answer the desk's errors (an unknown page, a value a page cannot take) with pages
    in its layout; the API's stay JSON, as the handlers installed before say. A page
    looks up who is signed in, on the database: off the event loop."""
    json_invalid = api.exception_handlers[RequestValidationError]
    json_http = api.exception_handlers[StarletteHTTPException]

    async def invalid(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/desk") and isinstance(exc, RequestValidationError):
            said = _asked_wrongly(exc)
            return await run_in_threadpool(error_page, request, 422, said)
        return await _answered(json_invalid(request, exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/desk") and isinstance(exc, StarletteHTTPException):
            message = (
                "There is no such page on the desk."
                if exc.status_code == 404
                else "This page is not reached that way: use the desk's own links and buttons."
                if exc.status_code == 405
                else str(exc.detail)
            )
            status, headers = exc.status_code, exc.headers
            return await run_in_threadpool(error_page, request, status, message, headers=headers)
        return await _answered(json_http(request, exc))

    api.add_exception_handler(RequestValidationError, invalid)
    api.add_exception_handler(StarletteHTTPException, http_error)


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


#: The queue's filters as its form offers them: (value, as shown).
STATUSES = [s.value for s in Status]
SEVERITIES = [s.value for s in (Severity.HIGH, Severity.MEDIUM, Severity.LOW)]


class BadQueueFilter(ValueError):
    """A filter of the queue's address that is not one of its choices; says which."""


def _queue_filter(school: str, status: str, severity: str) -> QueueFilter:
    """The queue's filters as asked in its address (empty: any), or
    :class:`BadQueueFilter` naming the one that is not a choice."""
    if school and not (len(school) == 6 and school.isdigit()):
        raise BadQueueFilter("School: a school is named by its URN, six digits")
    choices = {"Status": STATUSES, "Severity": SEVERITIES}
    for name, value in (("Status", status), ("Severity", severity)):
        if value and value not in choices[name]:
            raise BadQueueFilter(f"{name}: choose one of " + ", ".join(choices[name]))
    return QueueFilter(
        school or None, Status(status) if status else None, Severity(severity) if severity else None
    )


def _queue_schools(request: Request, user: User, found: Iterable[str | None]) -> list[str]:
    """The schools the queue may be narrowed to: none for a user of one school; the
    user's own for one of several; else those of the register and of every incident."""
    if user.scope is not None:
        return list(user.scope) if len(user.scope) > 1 else []
    register = request.app.state.schools
    named = set(register.names) if register is not None else set()
    return sorted(named | {school for school in found if school})


@router.get("", response_class=HTMLResponse, response_model=None)
def queue_page(
    request: Request,
    user: PageReader,
    db: Db,
    school: Annotated[str, Query(max_length=20)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    severity: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    """The open incidents, least time left first, a page of them at a time; narrowed,
    when asked, to a school, a status (a closed one only when asked for) or a severity."""
    now = datetime.now(UTC)
    asked = {"school": school.strip(), "status": status.strip(), "severity": severity.strip()}
    context: dict[str, Any] = {
        "user": user,
        "asked": asked,
        "filtered": any(asked.values()),
        "schools": _queue_schools(request, user, schools_with_incidents(db, user.scope)),
        "statuses": STATUSES,
        "severities": SEVERITIES,
        "awaiting": awaiting_said(request.app.state) if user.scope is None else ONE_SCHOOL,
        "incidents": [],
    }
    try:
        narrowed = _queue_filter(**asked)
    except BadQueueFilter as exc:
        return templates.TemplateResponse(
            request, "queue.html", {**context, "error": str(exc)}, status_code=422
        )
    offset = (page - 1) * QUEUE_PAGE
    found = queue(db, user.scope, narrowed, now, QUEUE_PAGE, offset, with_alerts=False)
    context["incidents"] = [
        {
            **incident_out(i, incident, now),
            "left_text": left_text(incident.time_left(now)),
            "event_count": found.events[i],
        }
        for i, incident in found.listed
    ]
    context["paging"] = _paging(asked, page, offset, len(found.listed), found)
    return templates.TemplateResponse(request, "queue.html", context)


def _paging(
    asked: dict[str, str], page: int, offset: int, shown: int, found: Queue
) -> dict[str, Any]:
    """What the queue says of its length and where its other pages are: the links keep
    the filters asked."""
    pages = max(1, -(-found.total // QUEUE_PAGE))
    kept = {k: v for k, v in asked.items() if v}

    def link(number: int) -> str:
        query = {**kept, **({"page": str(number)} if number > 1 else {})}
        return "/desk?" + urlencode(query) if query else "/desk"

    return {
        "total": found.total,
        "overdue": found.overdue,
        "first": offset + 1,
        "last": offset + shown,
        "page": page,
        "pages": pages,
        "per_page": QUEUE_PAGE,
        "past_end": found.total > 0 and shown == 0,
        "previous": link(min(page - 1, pages)) if page > 1 else None,
        "next": link(page + 1) if page < pages else None,
        "first_page": link(1),
    }


def _incident_page(
    request: Request,
    user: User,
    incident_id: int,
    error: str | None = None,
    status: int = 200,
    revealed: Revealed | None = None,
    given: dict[str, str] | None = None,
) -> Response:
    """The incident page, its read recorded; ``given``: what a refused form held, shown
    again so that nothing typed is lost."""
    detail = audited_incident_detail(request.app.state.ledger, user, "page", incident_id)
    if detail is None:
        return _no_incident(request, user, incident_id)
    detail["history"] = [{**a, "at_uk": shown_in_school_time(a["at"])} for a in detail["history"]]
    context = {
        "user": user,
        "i": detail,
        "error": error,
        "can_act": user.role is Role.DPO,
        "left_text": left_text(_seconds(detail["seconds_left"])),
        "detected_uk": shown_in_school_time(detail["detected_at"]),
        "revealed": None if revealed is None else _revealed_shown(revealed),
        "given": given or {},
    }
    return templates.TemplateResponse(request, "incident.html", context, status_code=status)


def _revealed_shown(revealed: Revealed) -> dict[str, Any]:
    """The pupils of a reveal as the incident page lists them."""
    return {
        "read_seq": revealed.read_seq,
        "pupils": [
            {
                "upn": pupil.upn,
                "dob": shown_day(date.fromisoformat(pupil.dob)) if pupil.dob else None,
                "schools": pupil.schools,
                "events": [
                    {"type": event.event_type, "day": event_day(event)} for event in pupil.events
                ],
            }
            for pupil in revealed.pupils
        ],
    }


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, response_model=None)
def incident_page(incident_id: int, request: Request, user: PageReader) -> Response:
    return _incident_page(request, user, incident_id)


#: Who may reveal the pupils an incident concerned: the DPO, who tells their families.
_REVEALING = "reveal the pupils an incident concerned"


@router.post("/incidents/{incident_id}/pupils", response_class=HTMLResponse, response_model=None)
def reveal_page(incident_id: int, request: Request, user: PageReader) -> Response:
    """The incident page with its pupils revealed (UPN, date of birth, school), the
    reveal recorded in the ledger as a read: asked by a button, never by a link that a
    browser or a proxy might fetch on its own."""
    if user.role is not Role.DPO:
        return _forbidden(request, user, _REVEALING, back=f"/desk/incidents/{incident_id}")
    revealed = reveal_pupils(request.app.state.ledger, reader_of(user, "page"), incident_id, "page")
    if revealed is None:
        return _no_incident(request, user, incident_id)
    return _incident_page(request, user, incident_id, revealed=revealed)


@router.post("/incidents/{incident_id}/pupils.csv", response_model=None)
def families_download(incident_id: int, request: Request, user: PageReader) -> Response:
    """The families to notify (Art 34), one row per pupil, as a download; recorded as a
    read as the reveal on the page is."""
    if user.role is not Role.DPO:
        return _forbidden(request, user, _REVEALING, back=f"/desk/incidents/{incident_id}")
    revealed = reveal_pupils(request.app.state.ledger, reader_of(user, "page"), incident_id, "csv")
    if revealed is None:
        return _no_incident(request, user, incident_id)
    rows = families_rows(incident_id, revealed.pupils, event_name)
    return Response(
        "".join(csv_chunks(FAMILIES_COLUMNS, rows)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="incident-{incident_id}-families.csv"'
        },
    )


def _incomplete(action: ActionKind, risk: str, reasons: str, ico_reference: str) -> str | None:
    """What an action's form lacks, said as the DPO would put it right; None if whole."""
    if action is ActionKind.ASSESS:
        if risk not in {r.value for r in Risk}:
            return "Choose the risk to the pupils (no risk, risk or high risk) before recording it."
        if not reasons.strip():
            return "Give the reasons for the assessment."
    if action is ActionKind.REPORT and not ico_reference.strip():
        return "Give the reference the ICO gave the report."
    if action is ActionKind.CLOSE and not reasons.strip():
        return "Give the reason for closing the incident."
    return None


@router.post("/incidents/{incident_id}/{action}", response_model=None)
def incident_action(
    incident_id: int,
    action: ActionKind,
    request: Request,
    user: PageReader,
    risk: Annotated[str, Form(max_length=20)] = "",
    reasons: Annotated[str, Form(max_length=5000)] = "",
    ico_reference: Annotated[str, Form(max_length=100)] = "",
    reason: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    if user.role is not Role.DPO:
        forbidden(request, user)
        refusal = f"The {user.role.value} role may not act on incidents."
        return _incident_page(request, user, incident_id, refusal, 403)
    why = reason if action is ActionKind.CLOSE else reasons
    missing = _incomplete(action, risk, why, ico_reference)
    if missing is not None:
        given = {"risk": risk, "reasons": reasons, "reason": reason, "ico_reference": ico_reference}
        return _incident_page(request, user, incident_id, missing, 422, given=given)
    now = datetime.now(UTC)
    taken = Action(
        action,
        user.name,
        now,
        risk=Risk(risk) if action is ActionKind.ASSESS else None,
        reasons=why or None,
        ico_reference=ico_reference or None,
        reported_at=now if action is ActionKind.REPORT else None,
    )
    ledger = request.app.state.ledger
    try:
        take_action(ledger, incident_id, taken, user.scope)
    except UnknownIncident:
        return _no_incident(request, user, incident_id)
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


def _forbidden(request: Request, user: User, what: str, back: str = "/desk") -> Response:
    forbidden(request, user)
    where = (back, "Back to the incident" if back.startswith("/desk/incidents") else "Back")
    return error_page(request, 403, f"The {user.role.value} role may not {what}.", where)


_TO_SEARCH = ("/desk/search", "Back to the search")


def _asked(request: Request) -> dict[str, str]:
    """The search form's fields as given (empty ones dropped)."""
    return {k: v for k in _SEARCH_FIELDS if (v := request.query_params.get(k, "").strip())}


def _upn_in_url(request: Request) -> Response | None:
    if names_a_upn(request.query_params):
        return error_page(request, 400, _UPN_IN_URL, _TO_SEARCH)
    return None


def _filters(request: Request, asked: dict[str, str], after: int = 0) -> Filters:
    return filters_from(
        request.app.state.find_pupil,
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
        return error_page(request, 422, str(exc), _TO_SEARCH)
    return entries_download(request.app.state, reader_of(user, "page"), filters, format)


@router.get("/entries/{seq}", response_class=HTMLResponse, response_model=None)
def entry_page(seq: int, request: Request, user: PageReader) -> Response:
    state = request.app.state
    found = explained_entry(state.ledger, reader_of(user, "page"), seq, state.policy, state.schools)
    if found is None:
        entry_not_theirs(request, user, seq)
        return error_page(request, 404, f"There is no entry {seq}.", _TO_SEARCH)
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
    erasure: Annotated[int | None, Form(ge=1, le=MAX_SEQ)] = None,
) -> Response:
    """The subject-access report, printable, for the DPO to send to a parent: for the
    pupil of a search (by pseudonym) or of a UPN typed into the form; or, by its
    reference (``erasure``), the statement of an erasure printed again: an erased
    pupil's UPN finds nothing."""
    if user.role not in SAR_ROLES:
        return _forbidden(request, user, "run a subject-access report")
    state = request.app.state
    if erasure is not None:
        with state.ledger.engine.connect() as connection:
            found = erasure_statement(connection, erasure, user.scope, state.schools, state.school)
        if found is None:
            return error_page(request, 404, f"Entry {erasure} is no erasure.", _TO_SEARCH)
        return _erasure_page(request, user, "statement", statement=found)
    try:
        if upn.strip():
            key = pupil_key(upn, state.find_pupil, "UPN")
        elif pupil:
            key = given_pseudonym(pupil, "Pupil")
        else:
            raise BadFilter("UPN: give the pupil's UPN")
    except BadFilter as exc:
        return error_page(request, 422, str(exc), _TO_SEARCH)
    report = audited_sar(
        state.ledger,
        reader_of(user, "page"),
        key,
        state.policy,
        state.settings.witness_quorum,
        state.schools,
        state.school,
    )
    if report is None:
        return error_page(request, 404, "No entry names this pupil.", _TO_SEARCH)
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
    form opens on the latest school year with sharing in it (the current one if none
    has), and says when the ledger's sharing ran."""
    context: dict[str, Any] = {"user": user, "since": since, "until": until}
    if format is None:
        span = ledger_span(request.app.state.ledger, user.scope)
        if not since and not until:
            start_day, end_day = opening_year(span, datetime.now(SCHOOL_TIME).date())
            context.update(since=start_day.isoformat(), until=end_day.isoformat())
        context["span"] = span.said() if span else None
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
    notice = ropa_part(
        notice_now(state.policy, state.schools, state.school), start, end, state.schools is not None
    )
    report = audited_ropa(
        state.ledger, reader, state.policy, start, end, None, state.schools, notice
    )
    assert report is not None  # no school asked: the reader's own schools
    return report_response(report, "record-of-processing", format, back="/desk/ropa")


@router.get("/retention", response_class=HTMLResponse, response_model=None)
def retention_page(
    request: Request, user: PageReader, as_of: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    """The records the user's schools must now destroy, on a day (today unless asked):
    it names pupils by UPN, so only those who may see a subject-access report may open
    it, and each opening is a recorded read."""
    if user.role not in SAR_ROLES:
        return _forbidden(request, user, "see which pupils' records are due to be destroyed")
    today = datetime.now(SCHOOL_TIME).date()
    context: dict[str, Any] = {"user": user, "as_of": as_of or today.isoformat(), "items": []}
    try:
        day = date.fromisoformat(as_of) if as_of else today
    except ValueError:
        context.update(shown_as_of="that day", error="On: give a date, such as 2027-09-01")
        return templates.TemplateResponse(request, "retention.html", context, status_code=422)
    state = request.app.state
    packs = [state.policy, *(state.schools.policies.values() if state.schools else ())]
    due, _ = audited_due(
        state.ledger,
        reader_of(user, "page"),
        lambda urn: policy_of(state.schools, urn, state.policy),
        packs,
        day,
    )
    context["shown_as_of"] = shown_day(day)
    context["summary"] = (
        f"{counted(len(due.items), 'record')} of {counted(len(due.pupil_keys), 'pupil')}"
    )
    context["items"] = [
        {
            "school": item.school,
            "upn": due.upns.get(item.pupil, NOTHING),
            "category": category_name(item.category),
            "kept_until": shown_day(item.kept_until),
            "period": f"{item.period} {counted_from_name(item.counted_from)}",
        }
        for item in due.items
    ]
    return templates.TemplateResponse(request, "retention.html", context)


# -- erasing a pupil (the DPO alone) ------------------------------------------------------

_ERASING = "erase a pupil"


def _erasure_page(
    request: Request,
    user: User,
    step: str,
    *,
    status: int = 200,
    error: str | None = None,
    given: Mapping[str, str] | None = None,
    refusals: list[str] | None = None,
    statement: Statement | None = None,
) -> Response:
    """The erasure's pages, one ``step`` at a time: the form ("form"), what cannot be
    undone ("confirm"), the reasons it was refused ("refused"), the statement for the
    family ("statement")."""
    context = {
        "user": user,
        "step": step,
        "error": error,
        "given": given or {"upn": "", "reason": ""},
        "cannot_undo": CANNOT_UNDO,
        "hint": REASON_HINT,
        "refusals": refusals or [],
        "statement": statement,
    }
    return templates.TemplateResponse(request, "erase.html", context, status_code=status)


def _to_erase(request: Request, user: User, upn: str, reason: str) -> str | Response:
    """The pseudonym of the pupil to erase, or the page saying why not: the DPO alone may
    erase, and the form again for what is wrong in it."""
    if user.role is not Role.DPO:
        return _forbidden(request, user, _ERASING)
    given = {"upn": upn, "reason": reason}
    try:
        erasure_details(user.name, reason, "request", 0)
        return pupil_to_erase(request, user, upn, "UPN")
    except (BadFilter, ErasureRefused) as exc:
        said = str(exc)
        return _erasure_page(request, user, "form", status=422, error=said, given=given)
    except PupilUnknown:
        said = "No entry names a pupil of this UPN: there is nothing to erase."
        return _erasure_page(request, user, "form", status=404, error=said, given=given)


@router.get("/pupils/erase", response_class=HTMLResponse, response_model=None)
def erase_form(request: Request, user: PageReader) -> Response:
    """The form to erase a pupil at their family's request (UK GDPR Art 17)."""
    if user.role is not Role.DPO:
        return _forbidden(request, user, _ERASING)
    return _erasure_page(request, user, "form")


@router.post("/pupils/erase", response_class=HTMLResponse, response_model=None)
def erase_posted(
    request: Request,
    user: PageReader,
    upn: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    confirmed: Annotated[str, Form(max_length=3)] = "",
) -> Response:
    """The form as posted: first what erasing the pupil cannot undo, with the button that
    erases (nothing is erased by this step); then, ``confirmed``, the erasure, and the
    statement for the family, printable, or every reason it was refused."""
    given = {"upn": upn, "reason": reason}
    pupil = _to_erase(request, user, upn, reason)
    if isinstance(pupil, Response):
        return pupil
    if confirmed != "yes":
        return _erasure_page(request, user, "confirm", given=given)
    try:
        statement = erased_on_request(request, user, pupil, reason)
    except ErasureRefused as exc:
        refusals = exc.reasons
        return _erasure_page(request, user, "refused", status=409, refusals=refusals, given=given)
    return _erasure_page(request, user, "statement", statement=statement)
