"""Retention due: which pupils' records of which categories a school must now destroy.

Sharing is checked against retention when it happens (``retention.expired``), but a record
nobody shares again is never checked: a pupil who left six years ago may still have
attendance records on file. This answers, for a day, which records are past their period
and not recorded as destroyed. Pure: no I/O. The ledger's adapter
(:mod:`pipeline.ledger.privacy.retention`) gathers what each school holds, the register and the
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
from pipeline.policy.pack import Policy, Retention
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


@dataclass(frozen=True, slots=True)
class Period:
    """A holding's retention period on a day: kept through ``kept_until``, or, while
    ``kept_until`` is None, for a period that cannot end yet (a pupil still on roll, a date
    of birth not known). ``destroyed``: the day the school recorded the record destroyed
    (the category or the whole record), if it has."""

    school: str
    pupil: str
    category: str
    kept_until: date | None
    rule: Retention
    destroyed: date | None = None

    @property
    def counted_from(self) -> str:
        return self.rule.counted_from

    @property
    def period(self) -> str:
        """The period in words ("6 years"): made when asked, not for every holding."""
        return self.rule.describe()

    @property
    def ended(self) -> date | None:
        """The last day the school must keep the record: its period's last day, or the day
        it was destroyed, whichever is earlier; None while it may not end yet."""
        ends = [d for d in (self.kept_until, self.destroyed) if d is not None]
        return min(ends) if ends else None


def periods(
    held: Iterable[Held],
    register: Register,
    dates_of_birth: Mapping[str, date | None],
    policy_for: Callable[[str], Policy],
    as_of: date,
) -> list[Period]:
    """Every holding's period as the register stands at the end of ``as_of``, in the
    holdings' order. ``policy_for`` gives a school's pack by URN; holdings are
    expected one per school, pupil and category (see :func:`merged`). One computation
    serves what is due (:func:`retention_due`) and whether a period still needs a pupil's
    data (:func:`still_kept`)."""
    at = end_of_day(as_of)
    found: list[Period] = []
    for one in held:
        rule = policy_for(one.school).retention_for(one.category)
        facts = register.facts_of(one.school, one.pupil)
        start: date | None
        if rule.counted_from == "left":
            leaving = facts.leaving(at)
            start = leaving.left_on if leaving is not None else None
        elif rule.counted_from == "dob":
            start = dates_of_birth.get(one.pupil)
        else:
            start = one.record_from
        kept_until = (
            None if start is None else add_period(start, rule.years, rule.months, rule.days)
        )
        destroyed = None
        if facts.destructions:
            done = facts.destroyed(at)
            fact = done.get(one.category) or done.get(WHOLE_RECORD)
            destroyed = fact.at.astimezone(SCHOOL_TIME).date() if fact is not None else None
        found.append(Period(one.school, one.pupil, one.category, kept_until, rule, destroyed))
    return found


def retention_due(
    held: Iterable[Held],
    register: Register,
    dates_of_birth: Mapping[str, date | None],
    policy_for: Callable[[str], Policy],
    as_of: date,
) -> list[Due]:
    """Every holding past its period on ``as_of`` and not recorded destroyed by then (the
    category or the whole record, by the school that holds it), in school, pupil and
    category order."""
    return sorted(
        Due(p.school, p.pupil, p.category, p.kept_until, p.counted_from, p.period)
        for p in periods(held, register, dates_of_birth, policy_for, as_of)
        if p.kept_until is not None and p.kept_until < as_of and p.destroyed is None
    )


def still_kept(found: Iterable[Period], as_of: date) -> list[Period]:
    """The periods that still need the data on ``as_of``: not ended by then (or not able
    to end yet), and not destroyed. Erasing a pupil is refused while any is (issue 32)."""
    return [p for p in found if p.destroyed is None and (p.ended is None or p.ended >= as_of)]


def last_kept(found: Iterable[Period]) -> dict[str, date | None]:
    """Each pupil's last day any school must keep any of their records: the latest end of
    their periods, or None while one may not end yet. The ledger keeps a pupil
    identifiable for its own period after this day."""
    out: dict[str, date | None] = {}
    for p in found:
        ended = p.ended
        if ended is None or p.pupil not in out:
            out[p.pupil] = ended
        elif (before := out[p.pupil]) is not None:
            out[p.pupil] = max(before, ended)
    return out


def ledger_keeps(
    found: Iterable[Period], policy_for: Callable[[str], Policy]
) -> dict[str, date | None]:
    """Each pupil's last day the ledger keeps them identifiable: for each school holding
    any of their records, its last kept day (:func:`last_kept` of its periods alone) plus
    its pack's ``ledger_retention``; the latest of these (a pupil several schools hold
    goes when the last of them lets go), or None while any period may not end yet. The
    ledger's retention lets the pupil go from the day after."""
    by_school: dict[str, list[Period]] = {}
    for p in found:
        by_school.setdefault(p.school, []).append(p)
    days: dict[str, list[date | None]] = {}
    for school, held in by_school.items():
        kept = policy_for(school).ledger_retention
        for pupil, last in last_kept(held).items():
            through = None if last is None else add_period(last, kept.years, kept.months, kept.days)
            days.setdefault(pupil, []).append(through)
    return {pupil: _latest(through) for pupil, through in days.items()}


def _latest(days: list[date | None]) -> date | None:
    """The latest of ``days``; None when any is (a period that may not end yet)."""
    known = [day for day in days if day is not None]
    return max(known) if len(known) == len(days) else None
