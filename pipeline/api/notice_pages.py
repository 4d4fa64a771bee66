"""The desk's privacy notice pages: the notice of each of the user's schools, made from
its pack and the register as ``sharing-audit notice`` makes it, and the notice against
practice (:mod:`pipeline.reports.notice_check`), a printable page or a download.

A school the user does not serve answers as if it did not exist (DESIGN invariant 8)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from pipeline.api.audit import report_response
from pipeline.api.deps import reader_of
from pipeline.api.pages import PageReader, error_page, templates
from pipeline.ledger.reading.asking import BadFilter, instant
from pipeline.policy.notice import notice_of
from pipeline.policy.schools import controller_of, policy_of
from pipeline.reports.formats import ReportFormat, notice_html
from pipeline.reports.notice_check import audited_notice_check, notice_now
from pipeline.reports.ropa import ledger_span, opening_year
from pipeline.schooltime import SCHOOL_TIME
from pipeline.users import User

router = APIRouter(prefix="/desk/notice", include_in_schema=False)
_BACK = ("/desk/notice", "Back to the privacy notice")


def _schools(request: Request, user: User) -> list[str | None]:
    """The schools whose notice the user may see: their own of the register; with no
    register, the deployment's one school (None)."""
    register = request.app.state.schools
    if register is None:
        return [None]
    return [urn for urn in register.names if user.scope is None or urn in user.scope]


@router.get("", response_class=HTMLResponse, response_model=None)
def notice_page(
    request: Request,
    user: PageReader,
    school: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The notice of one school (``school``, or the user's only one), a printable page
    with no script; else the list of the user's schools, and the form for the notice
    against practice."""
    state = request.app.state
    mine = _schools(request, user)
    if not school and len(mine) != 1:
        return templates.TemplateResponse(request, "notice_form.html", _check_form(request, user))
    if school and school not in mine:
        return error_page(request, 404, f"No school {school} here.", _BACK)
    urn = school or mine[0]
    pack = policy_of(state.schools, urn, state.policy)
    says = notice_of(pack, controller_of(state.schools, urn, state.school))
    today = datetime.now(SCHOOL_TIME).date()
    back = "/desk/notice/check" if len(mine) == 1 else "/desk/notice"
    return HTMLResponse(notice_html(says, today, back=back))


def _check_form(request: Request, user: User) -> dict[str, Any]:
    """The form for the notice against practice, opening on the latest school year with
    sharing in it, as the record of processing's does."""
    span = ledger_span(request.app.state.ledger, user.scope)
    start_day, end_day = opening_year(span, datetime.now(SCHOOL_TIME).date())
    return {
        "user": user,
        "since": start_day.isoformat(),
        "until": end_day.isoformat(),
        "span": span.said() if span else None,
        "schools": _schools(request, user),
    }


@router.get("/check", response_model=None)
def notice_check_page(
    request: Request,
    user: PageReader,
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    format: ReportFormat | None = None,
) -> Response:
    """The form, then the notice against practice of the user's schools over a period."""
    if format is None:
        return templates.TemplateResponse(request, "notice_form.html", _check_form(request, user))
    try:
        start = instant(since, "From") if since else None
        end = instant(until, "Before") if until else None
    except BadFilter as exc:
        context = {**_check_form(request, user), "since": since, "until": until}
        return templates.TemplateResponse(
            request, "notice_form.html", {**context, "error": str(exc)}, status_code=422
        )
    state = request.app.state
    current = notice_now(state.policy, state.schools, state.school)
    report = audited_notice_check(
        state.ledger,
        reader_of(user, "page"),
        current,
        start,
        end,
        None,
        state.schools is not None,
    )
    assert report is not None  # no school asked: the reader's own schools
    return report_response(report, "notice-check", format, back="/desk/notice/check")
