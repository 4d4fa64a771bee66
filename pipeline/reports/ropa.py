"""The record of processing activities (UK GDPR Art 30), built from what was observed.

A school's Article 30 record usually says what the school believes it shares. This one
is counted from the ledger over a period: per recipient and event type, the purpose the
pack gives, the categories, lawful bases, special-category conditions and channels
actually used, how many events and pupils, and how many were breaches, each event
counted at its current decision.
Next to each row is what the policy pack permits, and where practice went beyond it.

A period is shown as the days a school means by it (a school year: 1 Sep 2025 to 31 Aug
2026), and a period with no sharing in it says so, and when the ledger's sharing ran:
after a year is over, an empty record most likely asks for the wrong year.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, select

from pipeline.ledger.reading.queries import in_period
from pipeline.ledger.reading.reads import Requester, record_read
from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage import decision_projection
from pipeline.ledger.storage.store import ENTRY, PAYLOAD, Ledger, from_utc_text, now_text
from pipeline.policy.pack import Permission, Policy
from pipeline.policy.schools import Schools, policy_of
from pipeline.schooltime import (
    SCHOOL_TIME,
    school_day,
    school_year,
    shown_day,
    shown_in_school_time,
)
from schemas.events import SHARING_KIND, SHARING_TYPES

VERDICTS = ("allowed", "review", "breach", "rejected")


@dataclass(slots=True)
class _Group:
    """What one recipient received in one event type, as counted so far."""

    recipients: set[str] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    lawful_bases: set[str] = field(default_factory=set)
    special_conditions: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    pupils: set[str] = field(default_factory=set)
    decisions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    evidence: bool = False  # some event in it was decided, not rejected


def _differences(
    key: str | None, kind: str, permission: Permission | None, group: _Group
) -> list[str]:
    """Where what was shared goes beyond what the pack permits."""
    if key is None:
        return ["the recipient is not in the policy's registry"]
    if permission is None:
        return [f"the policy does not permit any {kind} to this recipient"]
    found = []
    for label, used, permitted in (
        ("categories", group.categories, permission.categories),
        ("lawful bases", group.lawful_bases, permission.lawful_bases),
        ("special-category conditions", group.special_conditions, permission.special_conditions),
        ("channels", group.channels, permission.channels),
    ):
        beyond = sorted(used - permitted)
        if beyond:
            found.append(f"{label} the policy does not permit: {', '.join(beyond)}")
    return found


@dataclass(frozen=True, slots=True)
class Span:
    """When the ledger's sharing ran: the first and the last sharing event's time (the
    ledger's UTC text)."""

    first: str
    last: str

    def said(self) -> str:
        """``from 3 Sep 2025 to 18 Jul 2026``."""
        first, last = (school_day(from_utc_text(t)) for t in (self.first, self.last))
        return f"from {shown_day(first)} to {shown_day(last)}"


def opening_year(span: Span | None, today: date) -> tuple[date, date]:
    """The school year a record of processing opens on: the latest that has sharing in
    it (a year over, the next begun, its record is the one asked for), else ``today``'s."""
    return school_year(school_day(from_utc_text(span.last)) if span else today)


def _day_or_time(text: str, before: bool) -> str:
    """A period's end as a person reads it: the day, where it falls at midnight in
    England (the last day itself for an end ``before`` which the period stops), else the
    time to the minute."""
    moment = from_utc_text(text).astimezone(SCHOOL_TIME)
    if moment.time() == time():
        return shown_day(moment.date() - timedelta(days=1) if before else moment.date())
    return shown_in_school_time(moment - timedelta(microseconds=1) if before else moment)


def period_words(since: str | None, until: str | None) -> dict[str, str | None]:
    """A period [since, until) as its first and last days (``from``, ``to``; None for an
    end left open), and the whole of it as a phrase (``between 1 Sep 2025 and 31 Aug
    2026``; empty for all time)."""
    start = _day_or_time(since, before=False) if since else None
    end = _day_or_time(until, before=True) if until else None
    if start and end:
        phrase = f"between {start} and {end}"
    else:
        phrase = f"from {start}" if start else f"up to {end}" if end else ""
    return {"from": start, "to": end, "phrase": phrase}


def nothing_recorded(period: Mapping[str, str | None], span: Span | None) -> str:
    """Why a record of processing is empty, in words: the period, and when the ledger's
    sharing ran (or that it has none)."""
    asked = f"No sharing recorded {period['phrase']}".rstrip()
    if span is None:
        return f"{asked}: the ledger holds no sharing events yet."
    return f"{asked}; the ledger's sharing events run {span.said()}."


def build_ropa(
    observed: Iterable[tuple[Entry, Mapping[str, Any] | None]],
    policy: Policy,
    since: str | None,
    until: str | None,
    register: Schools | None = None,
) -> dict[str, Any]:
    """The record from observed sharing events (each entry at its current decision, with
    its payload's ``data``). Under a register of schools, a row per school, each compared
    with its school's pack. Pure."""
    groups, all_pupils, unreadable = _grouped(observed, policy, register)
    rows = [
        _row(school, recipient, event_type, group, policy_of(register, school, policy))
        for (school, recipient, event_type), group in sorted(
            groups.items(), key=lambda item: (item[0][0] or "", *item[0][1:])
        )
    ]
    return {
        "period": {"since": since, "until": until, **period_words(since, until)},
        "policy": {"name": policy.name, "version": policy.version},
        "totals": {
            "events": sum(r["events"] for r in rows),
            "pupils": len(all_pupils),
            **{v: sum(r[v] for r in rows) for v in VERDICTS},
            "rows_differing_from_policy": sum(bool(r["differences"]) for r in rows),
            "unreadable": unreadable,
        },
        "rows": rows,
    }


def _grouped(
    observed: Iterable[tuple[Entry, Mapping[str, Any] | None]],
    policy: Policy,
    register: Schools | None,
) -> tuple[dict[tuple[str | None, str, str], _Group], set[str], int]:
    """The observed events grouped by school (under a register), recipient and event type;
    every pupil they name; and how many could not say whom they went to."""
    groups: dict[tuple[str | None, str, str], _Group] = {}
    all_pupils: set[str] = set()
    unreadable = 0
    for event, data in observed:
        recipient = event.recipient
        if recipient is None:  # a record too malformed to say whom it went to
            unreadable += 1
            continue
        school = event.school if register is not None else None
        key = policy_of(register, school, policy).recipient_key(recipient)
        group = groups.setdefault((school, key or recipient, event.event_type or ""), _Group())
        group.recipients.add(recipient)
        group.pupils.update(event.pupil_keys)
        all_pupils.update(event.pupil_keys)
        group.decisions[event.decision or ""] += 1
        if event.decision == "rejected":
            continue  # what a malformed event claims is not evidence of practice
        group.evidence = True
        data = data or {}
        group.categories.update(event.categories)
        if event.lawful_basis:
            group.lawful_bases.add(event.lawful_basis)
        if data.get("special_condition"):
            group.special_conditions.add(data["special_condition"])
        if data.get("channel"):
            group.channels.add(data["channel"])
    return groups, all_pupils, unreadable


def _row(
    school: str | None, recipient: str, event_type: str, group: _Group, own: Policy
) -> dict[str, Any]:
    """One row of the record: what a group of events shared, beside what ``own`` (the
    school's pack) permits."""
    key = own.recipient_key(recipient)
    kind = SHARING_KIND[event_type]
    permission = own.permission_for(key, kind)
    return {
        "school": school,
        "recipient": recipient,
        "recipient_name": own.recipient_name(key),
        "event_type": event_type,
        "gateway": permission.gateway if permission else None,
        "purpose": permission.purpose if permission else None,
        "categories": sorted(group.categories),
        "lawful_bases": sorted(group.lawful_bases),
        "special_conditions": sorted(group.special_conditions),
        "channels": sorted(group.channels),
        "recipients": len(group.recipients),
        "events": sum(group.decisions.values()),
        "pupils": len(group.pupils),
        **group.decisions,
        "permitted": None
        if permission is None
        else {
            "categories": sorted(permission.categories),
            "lawful_bases": sorted(permission.lawful_bases),
            "special_conditions": sorted(permission.special_conditions),
            "channels": sorted(permission.channels),
        },
        "differences": _differences(key, kind, permission, group) if group.evidence else [],
    }


def sharing_span(
    connection: Connection, schools: tuple[str, ...] | None = None, up_to_seq: int | None = None
) -> Span | None:
    """When the sharing events (of ``schools`` alone, when given) ran; None if there are
    none. Two index walks on the time of each event, not a scan."""
    found = []
    for order in (ENTRY.c.occurred_at.asc(), ENTRY.c.occurred_at.desc()):
        statement = select(ENTRY.c.occurred_at).where(
            ENTRY.c.kind == "decision",
            ENTRY.c.event_type.in_(SHARING_TYPES),
            ENTRY.c.occurred_at.is_not(None),
        )
        if schools is not None:
            statement = statement.where(ENTRY.c.school.in_(schools or ("",)))
        if up_to_seq is not None:
            statement = statement.where(ENTRY.c.seq <= up_to_seq)
        found.append(connection.execute(statement.order_by(order).limit(1)).scalar())
    first, last = found
    return Span(first, last) if first and last else None


def ledger_span(ledger: Ledger, schools: tuple[str, ...] | None = None) -> Span | None:
    """:func:`sharing_span` of the ledger as it is (no pupil is read: it is no read)."""
    with ledger.engine.connect() as connection:
        return sharing_span(connection, schools)


def observed_events(
    connection: Connection,
    since: str | None,
    until: str | None,
    up_to_seq: int,
    schools: tuple[str, ...] | None = None,
) -> Iterator[tuple[Entry, dict[str, Any] | None]]:
    """Sharing events that occurred in [since, until) (from ``schools`` alone, when given:
    their URNs), each entry at its current decision, with its payload's ``data``."""
    stood = decision_projection.as_of(connection, up_to_seq)
    statement = (
        decision_projection.joined(select(ENTRY, PAYLOAD.c.body), ENTRY.c.seq)
        .outerjoin(PAYLOAD, PAYLOAD.c.seq == ENTRY.c.seq)
        .where(
            ENTRY.c.kind == "decision",
            ENTRY.c.event_type.in_(SHARING_TYPES),
            ENTRY.c.seq <= up_to_seq,
        )
        .order_by(ENTRY.c.seq)
    )
    statement = in_period(statement, since, until, schools)
    rows = connection.execute(statement.execution_options(stream_results=True, yield_per=2_000))
    for row in rows.mappings():
        entry = Entry.from_row(row)
        if entry.seq in stood:  # re-decided after the head the report is as of
            if (then := stood[entry.seq]) is not None:
                entry = entry._replace(decision=then)
        elif row["current_seq"] is not None:
            entry = entry._replace(decision=row["current_decision"])
        yield entry, orjson.loads(row["body"])["data"] if row["body"] else None


def record_of_processing(
    connection: Connection,
    policy: Policy,
    since: str | None,
    until: str | None,
    up_to_seq: int,
    schools: tuple[str, ...] | None = None,
    register: Schools | None = None,
) -> dict[str, Any]:
    """The record of every school in the ledger, or of ``schools`` (URNs)."""
    observed = observed_events(connection, since, until, up_to_seq, schools)
    report = build_ropa(observed, policy, since, until, register)
    totals = report["totals"]
    empty = not totals["events"] and not totals["unreadable"]
    span = sharing_span(connection, schools, up_to_seq) if empty else None
    return {
        **report,
        "school": schools[0] if schools and len(schools) == 1 else None,
        "schools": list(schools) if schools is not None else None,
        "nothing_recorded": nothing_recorded(report["period"], span) if empty else None,
    }


#: A part of the record made beside it from the same snapshot: the ledger up to entry
#: ``as_of``, of ``schools`` (None: every school). The privacy notice against practice
#: (:func:`pipeline.reports.notice_check.ropa_part`) is one.
Part = Callable[[Connection, int, tuple[str, ...] | None], dict[str, Any]]


def audited_ropa(
    ledger: Ledger,
    reader: Requester,
    policy: Policy,
    since: str | None,
    until: str | None,
    school: str | None = None,
    register: Schools | None = None,
    notice: Part | None = None,
) -> dict[str, Any] | None:
    """The record (of ``school`` alone, when given), its read recorded: it is counted from
    pupil-level entries. A reader confined to some schools gets theirs, and None for
    another school's. ``notice``: the notice against practice, as the record's part."""
    if reader.schools is not None and school is not None and school not in reader.schools:
        return None
    schools = (school,) if school is not None else reader.schools
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        report = record_of_processing(connection, policy, since, until, as_of, schools, register)
        if notice is not None:
            report["notice"] = notice(connection, as_of, schools)
    seq = record_read(
        ledger,
        reader,
        "ropa",
        returned=report["totals"]["events"],
        as_of=as_of,
        extra={"period": {"since": since, "until": until}, "school": school},
    )
    return {**report, "as_of": as_of, "read_seq": seq, "generated_at": now_text()}
