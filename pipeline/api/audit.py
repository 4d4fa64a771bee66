"""The auditors' API: search and export the ledger, subject access, the record of processing.

Every route here reads pupil-level data, so every one records a ``read`` entry in the
ledger before it answers (see :mod:`pipeline.ledger.reading.reads`). Auditors, the DPO and admins
may search, export and build the record of processing; only the DPO and admins may run a
subject-access report, because it shows the pupil's plain identifiers; only the DPO may
erase a pupil (``POST /pupils/erase``), whose erasure entry records it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from pipeline.api.deps import Dpo, Reader, SubjectAccess, not_theirs, reader_of
from pipeline.incidents.desk import open_incidents_of
from pipeline.ledger.log.receipts import HOW_TO_CHECK, proofs_for
from pipeline.ledger.privacy.erasure import (
    MOST_REASON,
    ErasureRefused,
    Needs,
    erase,
    erasure_details,
)
from pipeline.ledger.reading.asking import (
    PSEUDONYM_PATTERN,
    BadFilter,
    filters_from,
    instant,
    names_a_upn,
    pupil_key,
)
from pipeline.ledger.reading.queries import Filters, entries, entry_at
from pipeline.ledger.reading.reads import (
    Requester,
    export,
    opened,
    read_in_scope,
    readers_of,
    record_read,
    search,
)
from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.pupils import NOBODY
from pipeline.logging import get_logger
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools, policy_of
from pipeline.reports.erasure import Statement, erasure_statement
from pipeline.reports.formats import ReportFormat, entries_csv, entries_jsonl, rendered
from pipeline.reports.notice_check import notice_now, ropa_part
from pipeline.reports.ropa import audited_ropa
from pipeline.reports.sar import audited_sar
from pipeline.schooltime import school_day
from pipeline.users import User

log = get_logger(__name__)
router = APIRouter(tags=["audit"])

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


UPN_IN_URL = (
    "a UPN is never taken in a URL, where access logs and browser histories keep it: "
    "POST it in the body (POST /entries/search, /entries/export, /pupils/sar, "
    "/pupils/readers), or give the pupil's pseudonym as pupil="
)
Text = Annotated[str | None, Field(**_TEXT)]


class Asked(BaseModel):
    """A search as asked in a request body, the one place a UPN is taken."""

    model_config = ConfigDict(extra="forbid")

    upn: str | None = Field(default=None, max_length=20, description="pseudonymised here")
    pupil: str | None = Field(default=None, pattern=PSEUDONYM_PATTERN, description="a pseudonym")
    recipient: Text = None
    type: Text = Field(default=None, description="event type or a word of it")
    decision: Text = None
    rule: Text = None
    category: Text = None
    kind: Text = None
    since: Text = Field(default=None, description="date or RFC 3339 time")
    until: Text = Field(default=None, description="before this date or time")
    after: int = Field(default=0, ge=0, le=MAX_SEQ, description="cursor: entries after seq")


class SearchAsked(Asked):
    limit: int = Field(default=100, ge=1, le=500)


class ExportAsked(Asked):
    format: ExportFormat = ExportFormat.csv


class PupilAsked(BaseModel):
    """One pupil, by UPN or by pseudonym."""

    model_config = ConfigDict(extra="forbid")

    upn: str | None = Field(default=None, max_length=20)
    pupil: str | None = Field(default=None, pattern=PSEUDONYM_PATTERN)


class SarAsked(PupilAsked):
    format: ReportFormat = ReportFormat.json


def filters_of(request: Request, asked: Asked) -> Filters:
    """The filters a search asks for, or a 422 naming what is wrong."""
    try:
        return filters_from(
            request.app.state.find_pupil,
            upn=asked.upn,
            pupil=asked.pupil,
            recipient=asked.recipient,
            event_type_=asked.type,
            decision=asked.decision,
            rule=asked.rule,
            category=asked.category,
            kind=asked.kind,
            since=asked.since,
            until=asked.until,
            after=asked.after,
            names={"upn": "upn"},
        )
    except BadFilter as exc:
        raise HTTPException(422, str(exc)) from None


def search_filters(
    request: Request,
    pupil: Annotated[
        str | None, Query(pattern=PSEUDONYM_PATTERN, description="a pseudonym")
    ] = None,
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
    if names_a_upn(request.query_params):
        raise HTTPException(400, UPN_IN_URL)
    asked = Asked(
        pupil=pupil,
        recipient=recipient,
        type=type,
        decision=decision,
        rule=rule,
        category=category,
        kind=kind,
        since=since,
        until=until,
        after=after,
    )
    return filters_of(request, asked)


Searched = Annotated[Filters, Depends(search_filters)]


def entries_download(
    state: Any, reader: Requester, filters: Filters, form: ExportFormat
) -> StreamingResponse:
    """The matching entries of the app whose ``state`` is given (its ledger, and its
    settings' witness quorum for the proofs of JSON Lines), as a streamed download; the
    read is recorded first."""
    ledger: Ledger = state.ledger
    if form is ExportFormat.csv:
        total, found = export(ledger, reader, filters, form.value)
        body: Iterator[Any] = entries_csv(found)
    else:
        quorum = state.settings.witness_quorum
        total, found = jsonl_with_inclusion(ledger, reader, filters, quorum)
        body = entries_jsonl(found)
    media = "text/csv; charset=utf-8" if form is ExportFormat.csv else "application/x-ndjson"
    headers = {
        "Content-Disposition": f'attachment; filename="ledger-entries.{form.value}"',
        "X-Entry-Count": str(total),
    }
    return StreamingResponse(body, media_type=media, headers=headers)


def jsonl_with_inclusion(
    ledger: Ledger, reader: Requester, filters: Filters, quorum: int
) -> tuple[int, Iterator[dict[str, Any]]]:
    """The export's entries, each with its inclusion proof against the checkpoint served
    as current when the export began, then, as the last line, that checkpoint (no proofs
    and no such line when the log has signed none). Entries after it carry no proof."""
    with ledger.engine.connect() as connection:
        proofs = proofs_for(connection, quorum)
    if proofs is None:
        return export(ledger, reader, filters, ExportFormat.jsonl.value)
    pinned = proofs

    def along(connection: Connection, chunk: Sequence[Entry]) -> Iterator[dict[str, Any]]:
        proved = pinned.inclusions(connection, [entry.seq for entry in chunk])
        return ({**entry.as_dict(), "inclusion": proved[entry.seq]} for entry in chunk)

    total, found = export(ledger, reader, filters, ExportFormat.jsonl.value, along)

    def then_the_checkpoint() -> Iterator[dict[str, Any]]:
        yield from found
        yield {**pinned.named(), "how_to_check": HOW_TO_CHECK}

    return total, then_the_checkpoint()


def explained_entry(
    ledger: Ledger, reader: Requester, seq: int, policy: Policy, schools: Schools | None = None
) -> dict[str, Any] | None:
    """Entry ``seq`` explained, the read recorded; None for a seq the ledger lacks or
    could never hold (past the databases' 64-bit integers)."""
    found = opened(ledger, reader, seq) if 1 <= seq <= MAX_SEQ else None
    if found is None:
        return None
    entry, earlier = found.entry, found.refers_to
    version = entry.policy_version
    return {
        "entry": entry.as_dict(),
        "refers_to": None if earlier is None else earlier.as_dict(),
        "referred_by": [later.as_dict() for later in found.referred_by],
        "judged": found.judged,
        "explanation": [
            {"rule": rule, "reason": reason}
            for rule, reason in zip(entry.rules, entry.reasons, strict=False)
        ],
        "policy_version": version,
        "decided_by_current_policy": None
        if version is None
        else version == policy_of(schools, entry.school, policy).version,
    }


def entry_not_theirs(request: Request, user: User, seq: int) -> None:
    """Log an attempt on another school's entry (see :func:`not_theirs`)."""
    if 1 <= seq <= MAX_SEQ:
        not_theirs(request, user, lambda db: entry_at(db, seq) is not None)


def report_response(
    report: dict[str, Any], kind: str, form: ReportFormat, back: str | None = None
) -> Response:
    """A report as a response: a download for CSV, a page for HTML, else JSON."""
    body, media = rendered(report, kind, form, back)
    headers = (
        {"Content-Disposition": f'attachment; filename="{kind}.csv"'}
        if form is ReportFormat.csv
        else {}
    )
    return Response(body, media_type=media, headers=headers)


def period(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """A report's period as the ledger's UTC text, or a 422 naming what is wrong."""
    try:
        return (
            instant(since, "since") if since else None,
            instant(until, "until") if until else None,
        )
    except BadFilter as exc:
        raise HTTPException(422, str(exc)) from None


def pupil_of(request: Request, asked: PupilAsked) -> str:
    """The pseudonym of the pupil asked about, or a 422 naming what is wrong."""
    if (asked.upn is None) == (asked.pupil is None):
        raise HTTPException(422, "give the pupil's upn or their pseudonym as pupil, not both")
    if asked.pupil is not None:
        return asked.pupil
    try:
        return pupil_key(asked.upn or "", request.app.state.find_pupil, "upn")
    except BadFilter as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/entries", response_model=SearchPage)
def search_entries(
    request: Request,
    user: Reader,
    filters: Searched,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Entries matching the filters, oldest first, a page at a time (cursor: ``after``).
    A pupil is named here by pseudonym; to search by UPN, POST to /entries/search."""
    return searched(request, user, filters, limit)


@router.post("/entries/search", response_model=SearchPage)
def search_entries_asked(request: Request, user: Reader, asked: SearchAsked) -> dict[str, Any]:
    """As ``GET /entries``, the search in the body: the way to search by UPN."""
    return searched(request, user, filters_of(request, asked), asked.limit)


def searched(request: Request, user: User, filters: Filters, limit: int) -> dict[str, Any]:
    page = search(request.app.state.ledger, reader_of(user, "api"), filters, limit)
    return {
        "entries": [entry.as_dict() for entry in page.entries],
        "next_after": page.next_after,
        "as_of": page.as_of,
        "read_seq": page.read_seq,
    }


@router.get(
    "/entries/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
def export_entries(
    request: Request,
    user: Reader,
    filters: Searched,
    format: ExportFormat = ExportFormat.csv,
) -> StreamingResponse:
    """Every matching entry, streamed as CSV or JSON Lines (the ledger's field names)."""
    return entries_download(request.app.state, reader_of(user, "api"), filters, format)


_DOWNLOADS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}
}


@router.post("/entries/export", response_class=StreamingResponse, responses=_DOWNLOADS)
def export_entries_asked(request: Request, user: Reader, asked: ExportAsked) -> StreamingResponse:
    """As ``GET /entries/export``, the search in the body: the way to export by UPN."""
    filters = filters_of(request, asked)
    return entries_download(request.app.state, reader_of(user, "api"), filters, asked.format)


@router.get("/entries/{seq}", response_model=EntryOpened)
def open_entry(request: Request, seq: int, user: Reader) -> dict[str, Any]:
    """One entry, why it was decided so, and the entries before and after it that it
    is linked to (re-evaluations, incident actions, reads)."""
    state = request.app.state
    found = explained_entry(state.ledger, reader_of(user, "api"), seq, state.policy, state.schools)
    if found is None:
        entry_not_theirs(request, user, seq)
        raise HTTPException(404, f"no entry {seq}")
    return found


@router.post(
    "/pupils/sar",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/csv": {}, "text/html": {}}}},
)
def subject_access(request: Request, user: SubjectAccess, asked: SarAsked) -> Response:
    """The subject-access report (UK GDPR Art 15) for one pupil. DPO and admins only."""
    state = request.app.state
    key = pupil_of(request, asked)
    report = audited_sar(
        state.ledger,
        reader_of(user, "api"),
        key,
        state.policy,
        state.settings.witness_quorum,
        state.schools,
        state.school,
    )
    if report is None:
        raise HTTPException(404, "no such pupil")
    return report_response(report, "subject-access", asked.format)


def _pupil_in_scope(connection: Connection, key: str, schools: tuple[str, ...]) -> bool:
    """Whether any entry of these schools names the pupil."""
    return (
        next(iter(entries(connection, Filters(pupil_key=key, schools=schools, limit=1))), None)
        is not None
    )


@router.post("/pupils/readers", response_model=list[LedgerEntryOut])
def pupil_readers(request: Request, user: Reader, asked: PupilAsked) -> list[dict[str, Any]]:
    """Who looked at this pupil's record: every read whose answer held their entries."""
    state = request.app.state
    key = pupil_of(request, asked)
    with state.ledger.engine.connect() as connection:
        if user.scope is not None and not _pupil_in_scope(connection, key, user.scope):
            raise HTTPException(404, "no such pupil")
        found = [r.as_dict() for r in readers_of(connection, key) if read_in_scope(r, user.scope)]
        as_of = Ledger.head(connection)[0]
    record_read(
        state.ledger,
        reader_of(user, "api"),
        "readers",
        returned=len(found),
        as_of=as_of,
        pupil_keys=[key],
    )
    return found


@router.get(
    "/reports/ropa",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/csv": {}, "text/html": {}}}},
)
def record_of_processing(
    request: Request,
    user: Reader,
    since: Annotated[str | None, Query(**_TEXT)] = None,
    until: Annotated[str | None, Query(**_TEXT)] = None,
    school: Annotated[
        str | None, Query(pattern=r"^[0-9]{6}$", description="one school's record (URN)")
    ] = None,
    format: ReportFormat = ReportFormat.json,
) -> Response:
    """The Article 30 record of processing, counted from events in [since, until), of
    every school or of one."""
    state = request.app.state
    start, end = period(since, until)
    reader = reader_of(user, "api")
    notice = ropa_part(
        notice_now(state.policy, state.schools, state.school), start, end, state.schools is not None
    )
    report = audited_ropa(
        state.ledger, reader, state.policy, start, end, school, state.schools, notice
    )
    if report is None:
        raise HTTPException(404, f"no school {school}")
    return report_response(report, "record-of-processing", format)


class EraseAsked(BaseModel):
    """A pupil to erase, by UPN, and why (kept for ever: no name, no date of birth)."""

    model_config = ConfigDict(extra="forbid")

    upn: str = Field(max_length=20)
    reason: str = Field(max_length=4 * MOST_REASON, pattern=r"^[^\x00-\x1f]*$")


class PupilUnknown(LookupError):
    """No entry the user may see names a pupil of the UPN given."""


def pupil_to_erase(request: Request, user: User, upn: str, name: str = "upn") -> str:
    """The pseudonym of the pupil of ``upn``; :class:`BadFilter` for what is not a UPN,
    :class:`PupilUnknown` for one no entry names, or none of the user's schools' (as if
    there were none: the attempt is logged, see :func:`not_theirs`)."""
    key = pupil_key(upn, request.app.state.find_pupil, name)
    if key == NOBODY:
        raise PupilUnknown
    if user.scope is not None:
        with request.app.state.ledger.engine.connect() as connection:
            theirs = _pupil_in_scope(connection, key, user.scope)
        if not theirs:
            not_theirs(request, user, lambda _: True)
            raise PupilUnknown
    return key


def erased_on_request(request: Request, user: User, pupil: str, reason: str) -> Statement:
    """Erase ``pupil`` at their family's request (UK GDPR Art 17), as ``user``, judged
    by the deployment's packs, key and incidents (:func:`pipeline.ledger.privacy.erasure.refusals`);
    the statement for the family. Raises :class:`ErasureRefused` with every reason."""
    state = request.app.state
    needs = Needs(
        lambda urn: policy_of(state.schools, urn, state.policy),
        school_day(datetime.now(UTC)),
        state.pseudonym,
        open_incidents_of,
        state.schools,
    )
    erased = erase(state.ledger, pupil, by=user.name, reason=reason, rule="request", needs=needs)
    log.info("pupil_erased_on_request", by=user.name, erasure=erased.seq, via=request.url.path)
    with state.ledger.engine.connect() as connection:
        statement = erasure_statement(connection, erased.seq, None, state.schools, state.school)
    assert statement is not None  # the entry just made
    return statement


@router.post("/pupils/erase")
def erase_pupil(request: Request, user: Dpo, asked: EraseAsked) -> Any:
    """Erase a pupil at their family's request (UK GDPR Art 17): their UPN and date of
    birth are deleted and the erasure recorded in the ledger. DPO only. Answers the
    statement to give the family; 409 with every reason while the data is still needed."""
    try:
        erasure_details(user.name, asked.reason, "request", 0)
        pupil = pupil_to_erase(request, user, asked.upn)
    except (BadFilter, ErasureRefused) as exc:
        raise HTTPException(422, str(exc)) from None
    except PupilUnknown:
        raise HTTPException(404, "no such pupil") from None
    try:
        return erased_on_request(request, user, pupil, asked.reason).as_dict()
    except ErasureRefused as refused:
        said = {"detail": "the pupil cannot be erased yet", "reasons": refused.reasons}
        return JSONResponse(said, status_code=409)
