"""The auditors' API: search and export the ledger, subject access, the record of processing.

Every route here reads pupil-level data, so every one records a ``read`` entry in the
ledger before it answers (see :mod:`pipeline.ledger.reads`). Auditors, the DPO and admins
may search, export and build the record of processing; only the DPO and admins may run a
subject-access report, because it shows the pupil's plain identifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from pipeline.api.app import READERS, reader_of, role
from pipeline.ledger.asking import BadFilter, filters_from, instant, pupil_key
from pipeline.ledger.queries import Filters
from pipeline.ledger.reads import Requester, export, opened, readers_of, record_read, search
from pipeline.ledger.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.reports.formats import ReportFormat, entries_csv, entries_jsonl, rendered
from pipeline.reports.ropa import audited_ropa
from pipeline.reports.sar import audited_sar
from pipeline.users import Role, User

router = APIRouter()
Readers = Annotated[User, role(*READERS)]
SAR_ROLES = (Role.DPO, Role.ADMIN)
SubjectAccess = Annotated[User, role(*SAR_ROLES)]

# Text a person types: bounded, and no control characters (PostgreSQL refuses NUL).
_TEXT = {"max_length": 200, "pattern": r"^[^\x00-\x1f]*$"}
MAX_SEQ = 2**62


class LedgerEntryOut(BaseModel):
    """A ledger entry with the ledger's own field names."""

    seq: int
    kind: str
    refers_to: int | None
    event_id: str | None
    event_type: str | None
    occurred_at: str | None
    recorded_at: str
    school: str | None
    recipient: str | None
    pupil_keys: list[str]
    categories: list[str]
    lawful_basis: str | None
    decision: str | None
    rules: list[str]
    reasons: list[str]
    policy_version: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    payload_digest: str | None
    details: dict[str, Any] | None
    prev_hash: str
    hash: str


class SearchPage(BaseModel):
    entries: list[LedgerEntryOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")
    as_of: int = Field(description="the chain's head when the search ran: later entries wait")
    read_seq: int = Field(description="the read entry this search was recorded as")


class EntryOpened(BaseModel):
    entry: LedgerEntryOut
    explanation: list[dict[str, str]]
    policy_version: str | None
    decided_by_current_policy: bool | None
    refers_to: LedgerEntryOut | None
    referred_by: list[LedgerEntryOut]


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def search_filters(
    request: Request,
    upn: Annotated[str | None, Query(description="a pupil's UPN, pseudonymised here")] = None,
    recipient: Annotated[str | None, Query(**_TEXT)] = None,
    type: Annotated[str | None, Query(**_TEXT, description="event type or a word of it")] = None,
    decision: Annotated[str | None, Query(**_TEXT)] = None,
    rule: Annotated[str | None, Query(**_TEXT)] = None,
    category: Annotated[str | None, Query(**_TEXT)] = None,
    kind: Annotated[str | None, Query(**_TEXT)] = None,
    since: Annotated[str | None, Query(**_TEXT, description="date or RFC 3339 time")] = None,
    until: Annotated[str | None, Query(**_TEXT, description="before this date or time")] = None,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="cursor: entries after seq")] = 0,
) -> Filters:
    try:
        return filters_from(
            request.app.state.pseudonym, upn=upn, recipient=recipient, event_type_=type,
            decision=decision, rule=rule, category=category, kind=kind, since=since,
            until=until, after=after, names={"upn": "upn"},
        )  # fmt: skip
    except BadFilter as exc:
        raise HTTPException(422, str(exc)) from None


Searched = Annotated[Filters, Depends(search_filters)]


def entries_download(
    ledger: Ledger, reader: Requester, filters: Filters, form: ExportFormat
) -> StreamingResponse:
    """The matching entries as a streamed download; the read is recorded first."""
    total, found = export(ledger, reader, filters, form.value)
    body: Iterator[Any] = entries_csv(found) if form is ExportFormat.csv else entries_jsonl(found)
    media = "text/csv; charset=utf-8" if form is ExportFormat.csv else "application/x-ndjson"
    headers = {
        "Content-Disposition": f'attachment; filename="ledger-entries.{form.value}"',
        "X-Entry-Count": str(total),
    }
    return StreamingResponse(body, media_type=media, headers=headers)


def opened_entry(ledger: Ledger, reader: Requester, seq: int, policy: Policy) -> dict[str, Any]:
    """Entry ``seq`` explained, the read recorded; 404 for a seq the ledger lacks or could
    never hold (past the databases' 64-bit integers)."""
    found = opened(ledger, reader, seq) if 1 <= seq <= MAX_SEQ else None
    if found is None:
        raise HTTPException(404, f"no entry {seq}")
    entry = found["entry"]
    version = entry["policy_version"]
    return {
        **found,
        "explanation": [
            {"rule": rule, "reason": reason}
            for rule, reason in zip(entry["rules"], entry["reasons"], strict=False)
        ],
        "policy_version": version,
        "decided_by_current_policy": None if version is None else version == policy.version,
    }


def report_response(
    report: dict[str, Any], kind: str, form: ReportFormat, back: str | None = None
) -> Response:
    """A report as a response: a download for CSV, a page for HTML, else JSON."""
    body, media = rendered(report, kind, form, back)
    headers = (
        {"Content-Disposition": f'attachment; filename="{kind}.csv"'}
        if form is ReportFormat.csv else {}
    )  # fmt: skip
    return Response(body, media_type=media, headers=headers)


def period(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """A report's period as the ledger's UTC text, or a 422 naming what is wrong."""
    try:
        return (instant(since, "since") if since else None,
                instant(until, "until") if until else None)  # fmt: skip
    except BadFilter as exc:
        raise HTTPException(422, str(exc)) from None


def pupil_of(upn: str, pseudonym: Callable[[str], str]) -> str:
    try:
        return pupil_key(upn, pseudonym, "upn")
    except BadFilter as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/entries", response_model=SearchPage, tags=["audit"])
def search_entries(
    request: Request,
    user: Readers,
    filters: Searched,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Entries matching the filters, oldest first, a page at a time (cursor: ``after``)."""
    page = search(request.app.state.ledger, reader_of(user, "api"), filters, limit)
    return {"entries": page.entries, "next_after": page.next_after, "as_of": page.as_of,
            "read_seq": page.read_seq}  # fmt: skip


@router.get("/entries/export", tags=["audit"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})  # fmt: skip
def export_entries(
    request: Request,
    user: Readers,
    filters: Searched,
    format: ExportFormat = ExportFormat.csv,
) -> StreamingResponse:
    """Every matching entry, streamed as CSV or JSON Lines (the ledger's field names)."""
    ledger = request.app.state.ledger
    return entries_download(ledger, reader_of(user, "api"), filters, format)


@router.get("/entries/{seq}", response_model=EntryOpened, tags=["audit"])
def open_entry(request: Request, seq: int, user: Readers) -> dict[str, Any]:
    """One entry, why it was decided so, and the entries before and after it that it
    is linked to (re-evaluations, incident actions, reads)."""
    state = request.app.state
    return opened_entry(state.ledger, reader_of(user, "api"), seq, state.policy)


@router.get("/pupils/sar", tags=["audit"], response_class=Response,
            responses={200: {"content": {"application/json": {}, "text/csv": {},
                                         "text/html": {}}}})  # fmt: skip
def subject_access(
    request: Request,
    user: SubjectAccess,
    upn: Annotated[str, Query(max_length=20)],
    format: ReportFormat = ReportFormat.json,
) -> Response:
    """The subject-access report (UK GDPR Art 15) for one pupil. DPO and admins only."""
    state = request.app.state
    key = pupil_of(upn, state.pseudonym)
    report = audited_sar(state.ledger, reader_of(user, "api"), key, state.policy)
    return report_response(report, "subject-access", format)


@router.get("/pupils/readers", response_model=list[LedgerEntryOut], tags=["audit"])
def pupil_readers(
    request: Request,
    user: Readers,
    upn: Annotated[str, Query(max_length=20)],
) -> list[dict[str, Any]]:
    """Who looked at this pupil's record: every read whose answer held their entries."""
    state = request.app.state
    key = pupil_of(upn, state.pseudonym)
    with state.ledger.engine.connect() as connection:
        found = readers_of(connection, key)
        as_of = Ledger.head(connection)[0]
    record_read(state.ledger, reader_of(user, "api"), "readers", returned=len(found),
                as_of=as_of, pupil_keys=[key])  # fmt: skip
    return found


@router.get("/reports/ropa", tags=["audit"], response_class=Response,
            responses={200: {"content": {"application/json": {}, "text/csv": {},
                                         "text/html": {}}}})  # fmt: skip
def record_of_processing(
    request: Request,
    user: Readers,
    since: Annotated[str | None, Query(**_TEXT)] = None,
    until: Annotated[str | None, Query(**_TEXT)] = None,
    format: ReportFormat = ReportFormat.json,
) -> Response:
    """The Article 30 record of processing, counted from events in [since, until)."""
    state = request.app.state
    start, end = period(since, until)
    report = audited_ropa(state.ledger, reader_of(user, "api"), state.policy, start, end)
    return report_response(report, "record-of-processing", format)
