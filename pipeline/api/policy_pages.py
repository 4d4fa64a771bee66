"""The desk's policy page: a candidate pack (the pack in force, a shipped pack, or a YAML
file the DPO uploads) beside the pack in force, rule by rule, and what it would have
decided of the user's schools' sharing over a period.

The what-if is a read of pupil-level entries (pupils by pseudonym alone), recorded as
every read is, and scoped to the user's schools; only a DPO or an admin may ask it, as
they are who change the pack.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from pipeline.api.deps import SAR_ROLES, forbidden, reader_of
from pipeline.api.pages import PageReader, error_page, templates
from pipeline.ledger.reading.asking import BadFilter, instant
from pipeline.packs import pack_text, shipped_packs
from pipeline.policy.diff import pack_differences
from pipeline.policy.pack import PackError, Policy
from pipeline.policy.schools import Schools, policy_of
from pipeline.policy.whatif import candidate_packs
from pipeline.reports.formats import what_if_body_html
from pipeline.reports.whatif import Candidate, audited_what_if, packs_in_force
from pipeline.shown import NAMING, Naming
from pipeline.users import User

router = APIRouter(prefix="/desk", include_in_schema=False)

#: The most bytes of an uploaded pack read (the guards refuse a larger request first).
MOST_PACK = 60_000
_IN_FORCE = ""
IN_FORCE = "the pack in force"


def _may_change_packs(request: Request, user: User) -> Response | None:
    if user.role in SAR_ROLES:
        return None
    forbidden(request, user)
    return error_page(
        request,
        403,
        f"The {user.role.value} role may not try a change of policy.",
        ("/desk", "Back"),
    )


def _first_school(user: User, schools: Schools | None) -> str | None:
    """The school whose pack in force the candidate is laid beside: the user's first, else
    the register's first, else none (a deployment of one school)."""
    if user.scope:
        return user.scope[0]
    return next(iter(schools.names), None) if schools is not None else None


def _context(request: Request, user: User, **more: Any) -> dict[str, Any]:
    return {
        "user": user,
        "packs": shipped_packs(),
        "pack": _IN_FORCE,
        "since": "",
        "until": "",
        **more,
    }


@router.get("/policy", response_class=HTMLResponse, response_model=None)
def policy_page(request: Request, user: PageReader) -> Response:
    """The form: which candidate, over which period."""
    refused = _may_change_packs(request, user)
    if refused is not None:
        return refused
    return templates.TemplateResponse(request, "policy.html", _context(request, user))


@router.post("/policy", response_class=HTMLResponse, response_model=None)
def policy_tried(
    request: Request,
    user: PageReader,
    pack: Annotated[str, Form(max_length=100)] = _IN_FORCE,
    since: Annotated[str, Form(max_length=40)] = "",
    until: Annotated[str, Form(max_length=40)] = "",
    candidate: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """The candidate beside the pack in force, and the events it would decide otherwise."""
    refused = _may_change_packs(request, user)
    if refused is not None:
        return refused
    state = request.app.state
    context = _context(request, user, pack=pack, since=since, until=until)
    school = _first_school(user, state.schools)
    with state.ledger.engine.connect() as connection:
        default, now = packs_in_force(connection, state.policy, state.schools)
    in_force = policy_of(now, school, default)
    try:
        start = instant(since, "From") if since else None
        end = instant(until, "Before") if until else None
        name = candidate.filename if candidate is not None else None
        uploaded = candidate.file.read(MOST_PACK + 1) if candidate is not None and name else b""
        if len(uploaded) > MOST_PACK:
            raise PackError(name or "the file", ["is too large to be a pack"])
        if uploaded:
            text, source = _text_of(uploaded, name)
        elif pack and pack != _IN_FORCE:
            if pack not in shipped_packs():
                raise PackError(pack, ["is not a pack shipped with sharing-audit"])
            text, source = pack_text(pack)
        else:
            text, source = "", IN_FORCE
        packs = candidate_packs(text, source, state.schools) if text else _in_force(default, now)
    except BadFilter as exc:
        context["error"] = str(exc)
        return templates.TemplateResponse(request, "policy.html", context, status_code=422)
    except PackError as exc:
        context["error"] = f"The candidate policy {exc.source} cannot be used:"
        context["problems"] = exc.problems
        return templates.TemplateResponse(request, "policy.html", context, status_code=422)
    report = audited_what_if(
        state.ledger,
        reader_of(user, "page"),
        packs,
        source,
        state.policy,
        start,
        end,
        None,
        state.schools,
    )
    assert report is not None  # no school asked: the reader's own schools
    candidate_pack = packs(school)
    naming = Naming(state.policy, state.schools)
    context.update(
        in_force=in_force,
        candidate_pack=candidate_pack,
        differences=[d.as_dict() for d in pack_differences(in_force, candidate_pack)],
        report=report,
        what_if=Markup(what_if_body_html(report, entry_link=True, **{NAMING: naming})),
    )
    return templates.TemplateResponse(request, "policy.html", context)


def _text_of(uploaded: bytes, name: str | None) -> tuple[str, str]:
    source = name or "the uploaded file"
    try:
        return uploaded.decode("utf-8"), source
    except UnicodeDecodeError:
        raise PackError(source, ["is not UTF-8 text: save the pack as UTF-8"]) from None


def _in_force(default: Policy, now: Schools | None) -> Candidate:
    """The pack in force as the candidate: each school's own (a replay that must change
    nothing: what the DPO tries first)."""
    return lambda urn: policy_of(now, urn, default)
