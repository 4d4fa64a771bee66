"""The privacy notice against practice: what the school told parents beside what it did.

A notice must name every recipient of a pupil's data (UK GDPR Art 13(1)(e), 14(1)(e)).
This report takes each sharing event of a period, finds the notice the school had
published and in force when it happened (:mod:`pipeline.ledger.writing.notices`), and lists:

- recipients the school shared with that the notice in force did not name; sharing
  with a named recipient for a purpose the notice did not give them (a census return
  sent to another school, which the notice names only as the next school); and
  categories it sent a named recipient that the notice did not say it would;
- recipients the notice names that received nothing in the period;
- events shared when no notice had been published;
- whether the pack now in force would make the notice say something else (a recipient
  added, a category, a law), which stays flagged until a new notice is published.

Every sharing event counts but a rejected one (a record too malformed to be evidence of
what was shared), breaches included: a breach was still shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, select

from pipeline.ledger.reading.queries import in_period
from pipeline.ledger.reading.reads import Requester, record_read
from pipeline.ledger.storage.store import ENTRY, Ledger, now_text
from pipeline.ledger.writing.notices import Published, in_force, published_notices
from pipeline.policy.notice import (
    Says,
    named_as,
    notice_changes,
    notice_of,
    shared_for,
    shared_with,
)
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Controller, Schools, controller_of, policy_of
from pipeline.reports.ropa import Part, period_words
from pipeline.shown import plain_recipient
from schemas.events import SHARING_KIND, SHARING_TYPES

#: What a school's notice would say now, by its URN (None: the deployment's one school).
CurrentNotice = Callable[[str | None], Says]


def notice_now(policy: Policy, register: Schools | None, one: Controller | None) -> CurrentNotice:
    """What each school's notice would say under the pack in force now: its own pack
    and its details as the register gives them (``one``: the deployment's one school, as
    its settings give it, with no register)."""
    return lambda urn: notice_of(
        policy_of(register, urn, policy), controller_of(register, urn, one)
    )


class Shared(NamedTuple):
    """One sharing event, as the check needs it: the school that shared (its URN), with
    whom, what, and when (the ledger's UTC text)."""

    school: str | None
    recipient: str
    event_type: str
    categories: tuple[str, ...]
    at: str


@dataclass(slots=True)
class _Unnamed:
    events: int = 0
    categories: set[str] = field(default_factory=set)
    first: str | None = None
    last: str | None = None

    def add(self, event: Shared, categories: Iterable[str]) -> None:
        self.events += 1
        self.categories.update(categories)
        self.first = min(self.first or event.at, event.at)
        self.last = max(self.last or event.at, event.at)


@dataclass(slots=True)
class _School:
    """What one school shared in the period, against its notices."""

    unnamed: dict[str, _Unnamed] = field(default_factory=dict)
    beyond: dict[str, _Unnamed] = field(default_factory=dict)
    unsaid: dict[tuple[str, str], _Unnamed] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    in_force: dict[int, Published] = field(default_factory=dict)
    without_notice: int = 0


def compared(
    shared: Iterable[Shared],
    notices: Iterable[Published],
    current: CurrentNotice,
    since: str | None,
    until: str | None,
    by_school: bool,
    schools: Iterable[str] = (),
) -> dict[str, Any]:
    """The report from the period's sharing events (``shared``) and every notice
    published; ``by_school``: under a register, each school against its own notices
    (else every event against the deployment's); ``schools``: those to report on even
    with nothing shared. Pure."""
    published: dict[str | None, list[Published]] = {}
    for each in notices:
        published.setdefault(each.school if by_school else None, []).append(each)
    found: dict[str | None, _School] = {
        urn: _School() for urn in ([*schools, *published] if by_school else [None])
    }
    # What each notice says is sent to whom, and what for.
    said: dict[int, tuple[dict[str, set[str]], dict[str, set[str]]]] = {}
    for event in shared:
        school = event.school if by_school else None
        mine = found.setdefault(school, _School())
        notice = in_force(published.get(school, []), event.at)
        if notice is None:
            mine.without_notice += 1
            continue
        if notice.seq not in said:
            said[notice.seq] = shared_with(notice.says), shared_for(notice.says)
        mine.in_force[notice.seq] = notice
        named = named_as(notice.says, event.recipient)
        if named is None:
            mine.unnamed.setdefault(event.recipient, _Unnamed()).add(event, event.categories)
            continue
        mine.used.add(named)
        sent, purposes = said[notice.seq]
        if SHARING_KIND[event.event_type] not in purposes[named]:
            unsaid = mine.unsaid.setdefault((named, event.event_type), _Unnamed())
            unsaid.add(event, event.categories)
        beyond = set(event.categories) - sent[named]
        if beyond:
            mine.beyond.setdefault(named, _Unnamed()).add(event, beyond)
    rows = [
        _school_row(urn, mine, published.get(urn, []), current, since, until)
        for urn, mine in sorted(found.items(), key=lambda item: item[0] or "")
    ]
    return {
        "period": {"since": since, "until": until, **period_words(since, until)},
        "schools": rows,
        "totals": {
            "unnamed_recipients": sum(len(r["unnamed_recipients"]) for r in rows),
            "unnamed_categories": sum(len(r["unnamed_categories"]) for r in rows),
            "unnamed_purposes": sum(len(r["unnamed_purposes"]) for r in rows),
            "unused_recipients": sum(len(r["unused_recipients"]) for r in rows),
            "without_notice": sum(r["without_notice"] for r in rows),
            "out_of_date": sum(bool(r["changes"]) for r in rows),
            "no_notice": sum(r["latest"] is None for r in rows),
        },
    }


def _in_period(notices: list[Published], since: str | None, until: str | None) -> list[Published]:
    """The notices in force at some moment of [since, until): the one in force at its
    start, and each coming into force within it."""
    first = in_force(notices, since) if since else None
    return [
        n
        for n in notices
        if n is first
        or (
            (since is None or n.in_force_from >= since)
            and (until is None or n.in_force_from < until)
        )
    ]


def _school_row(
    urn: str | None,
    mine: _School,
    notices: list[Published],
    current: CurrentNotice,
    since: str | None,
    until: str | None,
) -> dict[str, Any]:
    in_force_then = {n.seq: n for n in _in_period(notices, since, until)} | mine.in_force
    names: dict[str, str] = {}
    for notice in in_force_then.values():
        names.update({rid: r["name"] for rid, r in notice.says["recipients"].items()})
    named_in_period = {rid for n in in_force_then.values() for rid in n.says["recipients"]}
    latest = max(notices, key=lambda n: (n.in_force_from, n.seq), default=None)
    now = current(urn)
    return {
        "school": urn,
        "notices": [n.summary() for n in sorted(in_force_then.values(), key=lambda n: n.seq)],
        "latest": latest.summary() if latest else None,
        "pack": now["pack"],
        "changes": notice_changes(latest.says, now) if latest else [],
        "unnamed_recipients": [
            _unnamed_row(recipient, plain_recipient(recipient), u)
            for recipient, u in sorted(mine.unnamed.items())
        ],
        "unnamed_categories": [
            _unnamed_row(rid, names.get(rid, rid), u) for rid, u in sorted(mine.beyond.items())
        ],
        "unnamed_purposes": [
            {**_unnamed_row(rid, names.get(rid, rid), u), "event_type": event_type}
            for (rid, event_type), u in sorted(mine.unsaid.items())
        ],
        "unused_recipients": [
            {"recipient": rid, "name": names[rid]} for rid in sorted(named_in_period - mine.used)
        ],
        "without_notice": mine.without_notice,
    }


def _unnamed_row(recipient: str, name: str, u: _Unnamed) -> dict[str, Any]:
    return {
        "recipient": recipient,
        "name": name,
        "categories": sorted(u.categories),
        "events": u.events,
        "first": u.first,
        "last": u.last,
    }


def shared_events(
    connection: Connection,
    since: str | None,
    until: str | None,
    up_to_seq: int,
    schools: tuple[str, ...] | None = None,
) -> Iterator[Shared]:
    """The sharing events that occurred in [since, until) (of ``schools`` alone, when
    given), but the rejected: the entries' own columns, no payload. A rejected event is
    never decided again, so its first decision is its current one."""
    statement = (
        select(
            ENTRY.c.school,
            ENTRY.c.recipient,
            ENTRY.c.event_type,
            ENTRY.c.categories,
            ENTRY.c.occurred_at,
        )
        .where(
            ENTRY.c.kind == "decision",
            ENTRY.c.event_type.in_(SHARING_TYPES),
            ENTRY.c.decision != "rejected",
            ENTRY.c.recipient.is_not(None),
            ENTRY.c.occurred_at.is_not(None),
            ENTRY.c.seq <= up_to_seq,
        )
        .order_by(ENTRY.c.seq)
    )
    statement = in_period(statement, since, until, schools)
    rows = connection.execute(statement.execution_options(stream_results=True, yield_per=5_000))
    for school, recipient, event_type, categories, at in rows:
        yield Shared(school, recipient, event_type, tuple(orjson.loads(categories)), at)


def notice_against_practice(
    connection: Connection,
    current: CurrentNotice,
    since: str | None,
    until: str | None,
    up_to_seq: int,
    schools: tuple[str, ...] | None,
    by_school: bool,
) -> dict[str, Any]:
    """The report of ``schools`` (URNs; None: every school) up to entry ``up_to_seq``."""
    shared = shared_events(connection, since, until, up_to_seq, schools)
    notices = published_notices(connection, up_to_seq, schools)
    return compared(shared, notices, current, since, until, by_school, schools or ())


def ropa_part(
    current: CurrentNotice, since: str | None, until: str | None, by_school: bool
) -> Part:
    """The notice against practice as a part of the record of processing of the same
    period (:func:`pipeline.reports.ropa.audited_ropa`), whose read it is part of."""

    def part(connection: Connection, as_of: int, schools: tuple[str, ...] | None) -> dict[str, Any]:
        return notice_against_practice(connection, current, since, until, as_of, schools, by_school)

    return part


def audited_notice_check(
    ledger: Ledger,
    reader: Requester,
    current: CurrentNotice,
    since: str | None,
    until: str | None,
    school: str | None,
    by_school: bool,
) -> dict[str, Any] | None:
    """The report (of ``school`` alone, when given), its read recorded: it is counted
    from pupil-level entries. None for a school the reader may not see."""
    if reader.schools is not None and school is not None and school not in reader.schools:
        return None
    schools = (school,) if school is not None else reader.schools
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        report = notice_against_practice(
            connection, current, since, until, as_of, schools, by_school
        )
    seq = record_read(
        ledger,
        reader,
        "notice_check",
        returned=len(report["schools"]),
        as_of=as_of,
        extra={"period": {"since": since, "until": until}, "school": school},
    )
    return {**report, "as_of": as_of, "read_seq": seq, "generated_at": now_text()}
