"""Retention due: which pupils' records of which categories a school must now destroy.

Sharing is checked against retention when it happens (``retention.expired``), but a record
nobody shares again is never checked: a pupil who left six years ago may still have
attendance records on file. This answers, for a day, which records are past their period
and not recorded as destroyed. Pure: no I/O. The ledger's adapter
(:mod:`pipeline.ledger.retention`) gathers what each school holds, the register and the
dates of birth.

A school holds a category of a pupil's record when it has shared it (any decided event of
the school naming the pupil with that category). Its period starts, as the pack says
(``counted_from``), on the day the pupil left that school (a pupil still on roll is never
due), on their date of birth (not due while it is unknown), or on the record's own date:
the oldest record of the category any shared event declared (``oldest_record``), else the
day it was first shared, the latest the record can date from. The record is kept through
the period's last day (:func:`~pipeline.policy.calendar.add_period`) and due from the day
after, as ``retention.expired`` judges a sharing of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from pipeline.policy.calendar import add_period, earliest_unexpired
from pipeline.policy.pack import Policy
from pipeline.register import WHOLE_RECORD, Register
from pipeline.schooltime import SCHOOL_TIME


@dataclass(frozen=True, slots=True)
class Held:
    """A category of a pupil's record a school holds, with the dates its period may start
    from."""

    school: str
    pupil: str
    category: str
    first_shared: date
    oldest_record: date | None = None

    @property
    def record_from(self) -> date:
        """The record's own date: the oldest declared, else when first shared."""
        return self.oldest_record if self.oldest_record is not None else self.first_shared


@dataclass(frozen=True, slots=True, order=True)
class Due:
    """A record past its period: kept through ``kept_until``, to be destroyed from the
    day after."""

    school: str
    pupil: str
    category: str
    kept_until: date
    counted_from: str
    period: str

    @property
    def due_on(self) -> date:
        return self.kept_until + timedelta(days=1)


def merged(held: Iterable[Held]) -> list[Held]:
    """One holding per school, pupil and category: the earliest first sharing and the
    oldest record declared by any of its sharings."""
    out: dict[tuple[str, str, str], Held] = {}
    for one in held:
        key = (one.school, one.pupil, one.category)
        seen = out.get(key)
        if seen is None:
            out[key] = one
            continue
        oldest = [d for d in (seen.oldest_record, one.oldest_record) if d is not None]
        out[key] = Held(
            one.school,
            one.pupil,
            one.category,
            min(seen.first_shared, one.first_shared),
            min(oldest) if oldest else None,
        )
    return list(out.values())


@dataclass(frozen=True, slots=True)
class Limits:
    """Who could have anything due on a day, under any of a deployment's packs: a pupil
    who left (any school), one born before ``born_before``, or one of a record of a
    ``dated`` category (counted from the record) from before ``recorded_before``. Nobody
    else can, so the ledger's adapter reads only these pupils' holdings. ``*`` among
    ``dated`` when a pack's default counts from the record, so every category may be."""

    dated: frozenset[str]
    born_before: date | None
    recorded_before: date | None


def limits(packs: Iterable[Policy], as_of: date) -> Limits:
    """The loosest limits of ``packs`` on ``as_of`` (the shortest period of each start)."""
    dated: set[str] = set()
    before: dict[str, date] = {}
    for pack in packs:
        rules = [*pack.retention.items(), ("*", pack.default_retention)]
        for category, rule in rules:
            if rule.counted_from == "left":
                continue
            if rule.counted_from == "record":
                dated.add(category)
            limit = earliest_unexpired(as_of, rule.years, rule.months, rule.days)
            before[rule.counted_from] = max(before.get(rule.counted_from, limit), limit)
    return Limits(frozenset(dated), before.get("dob"), before.get("record"))


def end_of_day(day: date) -> datetime:
    """The last instant of ``day`` in school time: facts timed on that day are in force."""
    return datetime.combine(day + timedelta(days=1), time(), SCHOOL_TIME) - timedelta(
        microseconds=1
    )


def retention_due(
    held: Iterable[Held],
    register: Register,
    dates_of_birth: Mapping[str, date | None],
    policy_for: Callable[[str], Policy],
    as_of: date,
) -> list[Due]:
    """Every holding past its period on ``as_of`` and not recorded destroyed by then (the
    category or the whole record, by the school that holds it), in school, pupil and
    category order. ``policy_for`` gives a school's pack by URN; facts and holdings are
    expected one per school, pupil and category (see :func:`merged`)."""
    at = end_of_day(as_of)
    found: list[Due] = []
    for one in held:
        policy = policy_for(one.school)
        rule = policy.retention_for(one.category)
        facts = register.facts_of(one.school, one.pupil)
        start: date | None
        if rule.counted_from == "left":
            leaving = facts.leaving(at)
            start = leaving.left_on if leaving is not None else None
        elif rule.counted_from == "dob":
            start = dates_of_birth.get(one.pupil)
        else:
            start = one.record_from
        if start is None:
            continue
        kept_until = add_period(start, rule.years, rule.months, rule.days)
        if kept_until >= as_of:
            continue
        if facts.destructions:
            destroyed = facts.destroyed(at)
            if WHOLE_RECORD in destroyed or one.category in destroyed:
                continue
        found.append(
            Due(one.school, one.pupil, one.category, kept_until, rule.counted_from, rule.describe())
        )
    found.sort()
    return found
