"""The DPO's breach desk over HTTP: the queue of incidents, one with the entries behind it,
and the actions that move it along. Readers see; only the DPO acts. Actions go into the
ledger's chain with the user's name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from pipeline.api.deps import Db, Dpo, LedgerOf, Reader, not_theirs, reader_of
from pipeline.incidents.desk import QueueFilter, UnknownIncident, incidents, queue, take_action
from pipeline.incidents.lifecycle import (
    Action,
    ActionKind,
    Incident,
    Risk,
    TransitionRefused,
)
from pipeline.ledger.reading.queries import entries_at
from pipeline.ledger.reading.reads import record_read
from pipeline.ledger.storage.store import Ledger
from pipeline.logging import get_logger
from pipeline.schooltime import shown_in_school_time
from pipeline.users import User

log = get_logger(__name__)
router = APIRouter(prefix="/incidents", tags=["desk"])


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
    school: str | None = Field(default=None, description="URN of the school that shared")
    day: str
    detected_at: datetime
    deadline: datetime | None
    deadline_uk: str | None
    seconds_left: float | None
    overdue: bool
    risk: str | None
    entries: list[int]
    events: list[str] = Field(description="ids of the events its alerts are about")
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


class Closing(BaseModel):
    reason: str = Field(min_length=1, max_length=5000)


def action_out(action: Action) -> dict[str, Any]:
    return {
        "action": action.kind.value,
        "by": action.by,
        "at": action.at,
        "risk": action.risk.value if action.risk else None,
        "reasons": action.reasons,
        "ico_reference": action.ico_reference,
    }


def incident_out(incident_id: int, incident: Incident, now: datetime) -> dict[str, Any]:
    left = incident.time_left(now)
    deadline = incident.deadline
    return {
        "id": incident_id,
        "severity": incident.severity.value,
        "breach": incident.breach,
        "status": incident.status.value,
        "rule": incident.cause.rule,
        "recipient": incident.cause.recipient,
        "school": incident.cause.school,
        "day": incident.cause.day.isoformat(),
        "detected_at": incident.detected_at,
        "deadline": deadline,
        "deadline_uk": shown_in_school_time(deadline) if deadline else None,
        "seconds_left": left.total_seconds() if left is not None else None,
        "overdue": incident.overdue(now),
        "risk": incident.risk.value if incident.risk else None,
        "entries": list(incident.entries),
        "events": sorted(incident.events),
        "next": [k.value for k in incident.allowed()],
        "history": [action_out(a) for a in incident.history],
    }


def audited_incident_detail(
    ledger: Ledger, user: User, via: str, incident_id: int
) -> dict[str, Any] | None:
    """An incident with the ledger entries behind it, recorded as a read: it shows the
    entries' pupils. The reading connection is given back before the read is recorded."""
    with ledger.engine.connect() as db:
        as_of = Ledger.head(db)[0]
        incident = incidents(db, user.scope, (incident_id,)).get(incident_id)
        if incident is None:
            return None
        shown = entries_at(db, list(incident.entries))
    record_read(
        ledger,
        reader_of(user, via),
        "incident",
        returned=len(shown),
        as_of=as_of,
        refers_to=incident_id,
        extra={"entries": list(incident.entries)},
    )
    return {
        **incident_out(incident_id, incident, datetime.now(UTC)),
        "ledger_entries": [entry.as_dict() for entry in shown],
    }


#: The most incidents one request of the list returns.
MOST_LISTED = 1_000


@router.get("", response_model=list[IncidentOut])
def list_incidents(
    user: Reader,
    db: Db,
    response: Response,
    include_closed: bool = False,
    limit: Annotated[int, Query(ge=1, le=MOST_LISTED)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[dict[str, Any]]:
    """The queue, least time left first, ``limit`` from ``offset``: how many there are in
    all is in the ``X-Total-Count`` header, and the next page, when there is one, in
    ``Link`` (RFC 8288, ``rel="next"``)."""
    now = datetime.now(UTC)
    found = queue(db, user.scope, QueueFilter(with_closed=include_closed), now, limit, offset)
    response.headers["X-Total-Count"] = str(found.total)
    if offset + limit < found.total:
        closed = str(include_closed).lower()
        query = urlencode({"include_closed": closed, "limit": limit, "offset": offset + limit})
        response.headers["Link"] = f'</incidents?{query}>; rel="next"'
    return [incident_out(i, incident, now) for i, incident in found.listed]


def incident_not_theirs(request: Request, user: User, incident_id: int) -> None:
    """Log an attempt on another school's incident (see :func:`not_theirs`)."""
    not_theirs(request, user, lambda db: incident_id in incidents(db, ids=(incident_id,)))


def no_incident(request: Request, user: User, incident_id: int) -> HTTPException:
    """The 404 for an incident the user may not see: another school's, or none."""
    incident_not_theirs(request, user, incident_id)
    return HTTPException(404, f"no incident {incident_id}")


@router.get("/{incident_id}", response_model=IncidentDetail)
def get_incident(
    incident_id: int, request: Request, user: Reader, ledger: LedgerOf
) -> dict[str, Any]:
    detail = audited_incident_detail(ledger, user, "api", incident_id)
    if detail is None:
        raise no_incident(request, user, incident_id)
    return detail


def _act(request: Request, incident_id: int, action: Action, user: User) -> dict[str, Any]:
    try:
        _, updated = take_action(request.app.state.ledger, incident_id, action, user.scope)
    except UnknownIncident:
        raise no_incident(request, user, incident_id) from None
    except TransitionRefused as refused:
        raise HTTPException(409, str(refused)) from None
    log.info("incident_action", incident=incident_id, action=action.kind.value, by=action.by)
    return incident_out(incident_id, updated, datetime.now(UTC))


def _now() -> datetime:
    return datetime.now(UTC)


@router.post("/{incident_id}/acknowledge", response_model=IncidentOut)
def acknowledge(incident_id: int, request: Request, user: Dpo) -> dict[str, Any]:
    return _act(request, incident_id, Action(ActionKind.ACKNOWLEDGE, user.name, _now()), user)


@router.post("/{incident_id}/assess", response_model=IncidentOut)
def assess(incident_id: int, body: Assessment, request: Request, user: Dpo) -> dict[str, Any]:
    action = Action(ActionKind.ASSESS, user.name, _now(), risk=body.risk, reasons=body.reasons)
    return _act(request, incident_id, action, user)


@router.post("/{incident_id}/report", response_model=IncidentOut)
def report(incident_id: int, body: IcoReport, request: Request, user: Dpo) -> dict[str, Any]:
    when = body.reported_at or _now()
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    action = Action(
        ActionKind.REPORT, user.name, _now(), ico_reference=body.ico_reference, reported_at=when
    )
    return _act(request, incident_id, action, user)


@router.post("/{incident_id}/notify-subjects", response_model=IncidentOut)
def notify_subjects(incident_id: int, request: Request, user: Dpo) -> dict[str, Any]:
    return _act(request, incident_id, Action(ActionKind.NOTIFY_SUBJECTS, user.name, _now()), user)


@router.post("/{incident_id}/close", response_model=IncidentOut)
def close(incident_id: int, body: Closing, request: Request, user: Dpo) -> dict[str, Any]:
    action = Action(ActionKind.CLOSE, user.name, _now(), reasons=body.reason)
    return _act(request, incident_id, action, user)
