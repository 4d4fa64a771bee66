"""Retention due, read from the ledger: what each school holds of each pupil, the
register's facts and dates of birth, handed to the pure computation
(:func:`pipeline.policy.retention.retention_due`).

What a school holds is read from its decided sharing events (never a rejected one, which
may not even name its pupils rightly), grouped in the database by school, pupil, category
list and declared oldest records, so a pupil's many censuses of the same categories come
back as one row. The declared ``oldest_record`` is read out of the stored payload by the
database's own JSON functions; a payload that cannot be read (an erased pupil's, say)
leaves the record dated from its first sharing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, false, func, or_, select

from pipeline.ledger.reading.reads import Requester, record_read
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.dialects import dialect_of
from pipeline.ledger.storage.store import (
    ENTRY,
    FACT,
    IDENTITY,
    PAYLOAD,
    PUPIL,
    Ledger,
    NewEntry,
    any_of,
    from_utc_text,
    utc_text,
)
from pipeline.ledger.writing.ingest import fact_from_json
from pipeline.plural import counted
from pipeline.policy.pack import Policy
from pipeline.policy.retention import Due, Held, Period, limits, merged, periods, retention_due
from pipeline.register import Leaving, Register, SchoolFact
from pipeline.schooltime import SCHOOL_TIME, school_day
from schemas.alerts import Severity
from schemas.decisions import Verdict
from schemas.events import SHARING_TYPES


@dataclass(frozen=True, slots=True)
class DueList:
    """What is due on a day, with each listed pupil's UPN for the school to act on."""

    as_of: date
    items: list[Due]
    upns: dict[str, str]

    @property
    def pupil_keys(self) -> list[str]:
        return list(dict.fromkeys(item.pupil for item in self.items))


def _oldest_record(connection: Connection, category: str | None = None) -> Any:
    """The payload's ``data.oldest_record`` (of ``category`` alone, when given) as JSON
    text (NULL where absent): from the copy kept beside the payload, which the database
    can read (see :mod:`pipeline.ledger.records.payloads`)."""
    column = PAYLOAD.c.oldest_record
    if category is None:
        return column
    return dialect_of(connection).json_text(column, category)


def _scoped(statement: Any, column: Any, schools: tuple[str, ...] | None) -> Any:
    return statement if schools is None else statement.where(column.in_(schools))


def _sharing(statement: Any) -> Any:
    """Only first decisions of sharing events, never a rejected one."""
    return statement.where(
        ENTRY.c.kind == EntryKind.DECISION,
        ENTRY.c.refers_to.is_(None),
        ENTRY.c.event_type.in_(SHARING_TYPES),
        ENTRY.c.decision != "rejected",
    )


def _of_dated(statement: Any, dated: Collection[str]) -> Any:
    """Only events sharing a category whose period counts from the record."""
    if "*" in dated:
        return statement
    mentions = [ENTRY.c.categories.contains(f'"{category}"') for category in sorted(dated)]
    return statement.where(or_(false(), *mentions))


def held_in(
    connection: Connection,
    dated: Collection[str],
    pupils: Collection[str],
    schools: tuple[str, ...] | None = None,
) -> list[Held]:
    """Every category each school holds of each of ``pupils``, with its first sharing day
    and the oldest record of it any sharing declared. Declared records are read once an
    event, and only from events sharing a ``dated`` category: a census names every pupil
    of a school, and its payload is read once, not once a pupil."""
    if not pupils:
        return []
    # Only the events naming these pupils: their payloads are the ones read.
    theirs = select(PUPIL.c.seq).where(any_of(connection, PUPIL.c.pupil_key, list(pupils)))
    declared = (
        _scoped(
            _of_dated(
                _sharing(select(ENTRY.c.seq, _oldest_record(connection).label("oldest")))
                .join(PAYLOAD, PAYLOAD.c.seq == ENTRY.c.seq)
                .where(ENTRY.c.seq.in_(theirs)),
                dated,
            ),
            ENTRY.c.school,
            schools,
        )
        .cte("declared")
        .prefix_with("MATERIALIZED")
    )
    statement = (
        _sharing(
            select(
                ENTRY.c.school,
                PUPIL.c.pupil_key,
                ENTRY.c.categories,
                declared.c.oldest,
                func.min(ENTRY.c.occurred_at),
            )
        )
        .join(PUPIL, PUPIL.c.seq == ENTRY.c.seq)
        .outerjoin(declared, declared.c.seq == ENTRY.c.seq)
        .where(any_of(connection, PUPIL.c.pupil_key, list(pupils)))
        .group_by(ENTRY.c.school, PUPIL.c.pupil_key, ENTRY.c.categories, declared.c.oldest)
    )
    held: list[Held] = []
    days: dict[str, date] = {}
    records: dict[str | None, dict[str, date]] = {}
    for school, pupil, categories, oldest, first in connection.execute(
        _scoped(statement, ENTRY.c.school, schools)
    ):
        shared_on = days.get(first)
        if shared_on is None:
            shared_on = days[first] = school_day(from_utc_text(first))
        declared_of = records.get(oldest)
        if declared_of is None:
            declared_of = records[oldest] = _declared(oldest)
        for category in orjson.loads(categories):
            held.append(Held(school, pupil, category, shared_on, declared_of.get(category)))
    return merged(held)


def _declared(text: str | None) -> dict[str, date]:
    """The declared oldest record of each category; nothing from what cannot be read."""
    if not text:
        return {}
    try:
        found = orjson.loads(text)
        return {category: date.fromisoformat(day) for category, day in found.items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}


def register_in(
    connection: Connection,
    schools: tuple[str, ...] | None = None,
    pupils: Collection[str] | None = None,
) -> tuple[Register, set[str]]:
    """The register's facts of the schools (every school's when None), of ``pupils``
    (every pupil's when None), by pupil key, and the keys of the pupils with a leaving
    recorded."""
    statement = select(ENTRY.c.school, FACT.c.fact).join(ENTRY, ENTRY.c.seq == FACT.c.seq)
    if pupils is not None:
        statement = statement.where(any_of(connection, FACT.c.pupil_key, list(pupils)))
    register = Register(pupil_key=lambda key: key)
    leavers: set[str] = set()
    for school, text in connection.execute(_scoped(statement, ENTRY.c.school, schools)):
        key, fact = fact_from_json(orjson.loads(text))
        register.add_keyed(SchoolFact(school, key, fact))
        if isinstance(fact, Leaving):
            leavers.add(key)
    return register, leavers


def born_before(connection: Connection, day: date | None) -> dict[str, date | None]:
    """The dates of birth before ``day``, by pupil key (none without a day)."""
    if day is None:
        return {}
    rows = connection.execute(
        select(IDENTITY.c.pupil_key, IDENTITY.c.dob).where(
            IDENTITY.c.dob.is_not(None), IDENTITY.c.dob < day.isoformat()
        )
    )
    return {key: date.fromisoformat(dob) for key, dob in rows}


def recorded_before(
    connection: Connection,
    dated: Collection[str],
    day: date | None,
    schools: tuple[str, ...] | None = None,
) -> set[str]:
    """The pupils of events sharing a ``dated`` category first shared, or declaring an
    oldest record of one, before ``day``."""
    if day is None or not dated:
        return set()
    declared = (
        [_oldest_record(connection).is_not(None)]
        if "*" in dated
        else [_oldest_record(connection, c) < day.isoformat() for c in sorted(dated)]
    )
    started = utc_text(datetime.combine(day, time(), SCHOOL_TIME))
    # The events first, each payload read once; then their pupils.
    events = (
        _scoped(
            _of_dated(
                _sharing(select(ENTRY.c.seq))
                .outerjoin(PAYLOAD, PAYLOAD.c.seq == ENTRY.c.seq)
                .where(or_(ENTRY.c.occurred_at < started, *declared)),
                dated,
            ),
            ENTRY.c.school,
            schools,
        )
        .cte("early")
        .prefix_with("MATERIALIZED")
    )
    statement = select(PUPIL.c.pupil_key).join(events, events.c.seq == PUPIL.c.seq).distinct()
    return set(connection.execute(statement).scalars())


def due_in(
    connection: Connection,
    policy_for: Callable[[str], Policy],
    packs: Iterable[Policy],
    as_of: date,
    schools: tuple[str, ...] | None = None,
) -> DueList:
    """What the schools (every school when None) must destroy by ``as_of``; ``packs`` are
    every pack ``policy_for`` may give. Only the holdings of pupils who could have
    anything due are read (:class:`~pipeline.policy.retention.Limits`)."""
    within = limits(packs, as_of)
    register, leavers = register_in(connection, schools)
    dobs = born_before(connection, within.born_before)
    pupils = (
        leavers
        | dobs.keys()
        | recorded_before(connection, within.dated, within.recorded_before, schools)
    )
    held = held_in(connection, within.dated, pupils, schools)
    items = retention_due(held, register, dobs, policy_for, as_of)
    listed = list(dict.fromkeys(item.pupil for item in items))
    found = Ledger.identities(connection, listed)
    return DueList(as_of, items, {key: upn for key, (upn, _) in found.items()})


def periods_of(
    connection: Connection,
    policy_for: Callable[[str], Policy],
    pupils: Collection[str],
    as_of: date,
) -> list[Period]:
    """The retention period of every record any school holds of ``pupils`` on
    ``as_of`` (see :func:`~pipeline.policy.retention.periods`): whether erasing a pupil
    is refused, and when the ledger's own retention lets it go, both follow from them."""
    if not pupils:
        return []
    register, _ = register_in(connection, pupils=pupils)
    dobs = {
        key: date.fromisoformat(dob)
        for key, (_, dob) in Ledger.identities(connection, pupils).items()
        if dob
    }
    held = held_in(connection, {"*"}, pupils)
    return periods(held, register, dobs, policy_for, as_of)


#: The read entry a listing of what is due leaves in the ledger.
DUE_READ = "retention.due"


def audited_due(
    ledger: Ledger,
    reader: Requester,
    policy_for: Callable[[str], Policy],
    packs: Iterable[Policy],
    as_of: date,
) -> tuple[DueList, int]:
    """What the reader's schools (``reader.schools``; every school when None) must
    destroy by ``as_of``, and the seq of the read entry recording the listing: it names
    pupils by UPN, so who listed them, when, and which pupils are kept in the chain."""
    with ledger.engine.connect() as connection:
        due = due_in(connection, policy_for, packs, as_of, reader.schools)
        head = Ledger.head(connection)[0]
    seq = record_read(
        ledger,
        reader,
        DUE_READ,
        returned=len(due.items),
        as_of=head,
        pupil_keys=due.pupil_keys,
        extra={"due_as_of": as_of.isoformat()},
    )
    return due, seq


#: The columns of a due list written out (CSV, JSON Lines): dates in ISO form.
DUE_COLUMNS = ("school", "upn", "category", "kept_until", "due_since", "counted_from", "period")


def due_rows(due: DueList) -> list[tuple[str, str, str, str, str, str, str]]:
    """The due list's rows under :data:`DUE_COLUMNS`."""
    return [
        (
            item.school,
            due.upns.get(item.pupil, ""),
            item.category,
            item.kept_until.isoformat(),
            item.due_on.isoformat(),
            item.counted_from,
            item.period,
        )
        for item in due.items
    ]


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def alerted_this_week(connection: Connection, today: date) -> set[str]:
    """The schools already alerted of records due in ``today``'s week (school time)."""
    since = utc_text(datetime.combine(_week_start(today), time(), SCHOOL_TIME))
    rows = connection.execute(
        select(ENTRY.c.details).where(
            ENTRY.c.kind == EntryKind.RETENTION_DUE, ENTRY.c.recorded_at >= since
        )
    )
    return {orjson.loads(details)["school"] for (details,) in rows}


def raise_retention_due(
    ledger: Ledger,
    policy_for: Callable[[str], Policy],
    packs: Iterable[Policy],
    now: datetime | None = None,
) -> list[int]:
    """One low-severity alert a school and week for the records it holds past their
    period, never one a pupil (the DPO opens ``retention due`` for the list); the seqs of
    the alert entries made. The alert names no pupil: only how many records of how many."""
    at = now or datetime.now(UTC)
    today = school_day(at)
    packs = list(packs)
    with ledger.engine.connect() as connection:
        due = due_in(connection, policy_for, packs, today)
        told = alerted_this_week(connection, today)
    by_school: dict[str, list[Due]] = {}
    for item in due.items:
        if item.school not in told:
            by_school.setdefault(item.school, []).append(item)
    if not by_school:
        return []
    made: list[int] = []
    with ledger.locked() as connection:
        told = alerted_this_week(connection, today)  # another worker may have been first
        seq = Ledger.head(connection)[0]
        batch: list[NewEntry] = []
        for school, items in sorted(by_school.items()):
            if school in told:
                continue
            seq += 1
            pupils = len({item.pupil for item in items})
            reason = (
                f"school {school} holds {counted(len(items), 'record')} of "
                f"{counted(pupils, 'pupil')} past their retention period and not recorded "
                f"destroyed on {today.isoformat()}: list them with sharing-audit retention due "
                f"--school {school}, destroy them, and record each destruction"
            )
            details = {
                "school": school,
                "as_of": today.isoformat(),
                "records": len(items),
                "pupils": pupils,
            }
            entry = Entry.act(
                seq, EntryKind.RETENTION_DUE, details, recorded_at=utc_text(at), reasons=[reason]
            )
            alert = {**entry.alert_fields(), "school": school, "decision": Verdict.REVIEW.value}
            low = Severity.LOW.value
            batch.append(NewEntry(entry, alert=(low, {**alert, "severity": low})))
            made.append(seq)
        ledger.append(connection, batch)
    return made
