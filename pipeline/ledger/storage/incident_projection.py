"""The breach desk's incidents, kept as alerts and actions are appended (DESIGN
invariant 10), so that no request folds every alert ever raised.

An incident is the alerts of one cause (rule, recipient, UK day, school) on the desk, and,
in order, the ``incident_action`` entries that refer to it; its id is its first alert's
seq. The ``incident`` table holds one row an incident (its cause, worst severity, when its
clock started, how many alerts and events, its last action and risk), written in the
transaction that appends an alert or an action; ``incident_alert`` files each alert under
its incident. An alert the relay marks superseded (its event re-decided before the alert
went out) leaves the desk: :func:`superseded` folds its incident again from what stays.

Every reader of incidents goes through :mod:`pipeline.incidents.desk`, which reads these
rows; ``ledger verify`` folds the outbox and the entries afresh and names each row that
differs (:func:`incident_faults`). Status words are the desk's: a row records the kind of
the last action taken, which the desk's lifecycle turns into a status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Table, bindparam, case, delete, false, func, or_, select, text

from pipeline.canonical import canonical_json
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.models import AlertOutbox, IncidentAlert, IncidentRow, LedgerEntry
from pipeline.schooltime import school_day
from schemas.alerts import (
    MERGE_DELAY_MISSED,
    MERGE_DELAY_MISSED_CAUSE,
    RETENTION_DUE,
    RETENTION_DUE_CAUSE,
    SEVERITY_RANK,
    WITNESS_REFUSAL,
    WITNESS_REFUSED_CAUSE,
    Severity,
)
from schemas.decisions import RULE_VERDICT, RuleId, Verdict

INCIDENTS: Table = IncidentRow.__table__  # type: ignore[attr-defined]
ALERTS: Table = IncidentAlert.__table__  # type: ignore[attr-defined]
_OUTBOX: Table = AlertOutbox.__table__  # type: ignore[attr-defined]
_ENTRY: Table = LedgerEntry.__table__  # type: ignore[attr-defined]
#: The kind of the entry recording a DPO's action on an incident.
#: The outbox status of an alert whose event was re-decided before it went out: it is on
#: no incident.
SUPERSEDED = "superseded"
#: The causes of the log's own alerts, which break no rule of the contract, by their kind.
LOG_CAUSES = {WITNESS_REFUSAL: WITNESS_REFUSED_CAUSE, MERGE_DELAY_MISSED: MERGE_DELAY_MISSED_CAUSE}

Cause = tuple[str, str | None, date, str | None]
#: The largest seq the ledger's columns (BIGINT) can hold.
_LARGEST_SEQ = 2**63 - 1
#: Incidents read at a time by their ids (well within SQLite's limit of parameters).
_CHUNK = 5_000


def alert_cause(alert: Mapping[str, Any]) -> Cause:
    """The alert's cause (rule, recipient, UK day, school): its first rule with the
    alert's own verdict (the rule that made it a breach, not a lesser one broken
    alongside). The log's own alerts (a witness refusing it, a merge delay missed), which
    break no rule of the contract, have a cause of their own for each kind, of no school;
    a school's records falling due have one a school and week (the week's Monday its day)."""
    day = school_day(datetime.fromisoformat(alert["recorded_at"]))
    if alert.get("kind") == RETENTION_DUE:
        # One incident a school and week, whatever the day it was raised.
        monday = day - timedelta(days=day.weekday())
        return (RETENTION_DUE_CAUSE, None, monday, alert.get("school"))
    own = LOG_CAUSES.get(alert.get("kind", ""))
    if own is not None:
        return (own, None, day, None)
    verdict = Verdict(alert["decision"])
    rules = [RuleId(r) for r in alert["rules"]]
    decisive = next((r for r in rules if RULE_VERDICT[r] is verdict), rules[0])
    return (decisive.value, alert.get("recipient"), day, alert.get("school"))


def cause_key(cause: Cause) -> str:
    """The text an incident's cause is unique by."""
    rule, recipient, day, school = cause
    return canonical_json([rule, recipient, day.isoformat(), school]).decode()


@dataclass(frozen=True, slots=True)
class Kept:
    """One ``incident`` row, as the fold of its alerts and actions leaves it."""

    id: int
    cause: str
    rule: str
    recipient: str | None
    day: str
    school: str | None
    severity: str
    breach: bool
    detected_at: str
    alerts: int = 0
    events: int = 0
    last_alert: int = 0
    actions: int = 0
    last_action: str | None = None
    last_action_seq: int | None = None
    risk: str | None = None


_COLUMNS = tuple(f.name for f in fields(Kept))


def with_alert(kept: Kept | None, seq: int, alert: Mapping[str, Any], new_event: bool) -> Kept:
    """The incident after the alert ``seq`` joins it (opens it, when ``kept`` is None).
    ``new_event``: the alert is about an event none of the incident's alerts was about."""
    severity = Severity(alert["severity"])
    breach = alert["decision"] == Verdict.BREACH.value
    if kept is None:
        rule, recipient, day, school = alert_cause(alert)
        kept = Kept(
            seq,
            cause_key((rule, recipient, day, school)),
            rule,
            recipient,
            day.isoformat(),
            school,
            severity.value,
            breach,
            alert["recorded_at"],
        )
    worse = max(severity, Severity(kept.severity), key=SEVERITY_RANK.__getitem__)
    return replace(
        kept,
        severity=worse.value,
        breach=kept.breach or breach,
        alerts=kept.alerts + 1,
        events=kept.events + new_event,
        last_alert=seq,
    )


def with_action(kept: Kept, seq: int, details: Mapping[str, Any]) -> Kept:
    """The incident after the action entry ``seq`` with these ``details``."""
    action = details.get("action")
    risk = details.get("risk") if action == "assess" else kept.risk
    return replace(
        kept,
        actions=kept.actions + 1,
        last_action=str(action) if action is not None else None,
        last_action_seq=seq,
        risk=risk,
    )


# -- kept on append ----------------------------------------------------------------------


def keep(
    connection: Connection,
    alerts: Sequence[tuple[int, Mapping[str, Any]]],
    actions: Sequence[tuple[int, int | None, Mapping[str, Any]]],
) -> None:
    """Fold the alerts (seq, alert) and actions (seq, incident referred to, details) an
    append brings, in seq order, into their incidents' rows: inside the append's
    transaction, under the chain's lock (every change to these rows is)."""
    if not alerts and not actions:
        return
    causes = {seq: cause_key(alert_cause(alert)) for seq, alert in alerts}
    by_cause = {
        k.cause: k for k in _kept_where(connection, INCIDENTS.c.cause, set(causes.values()))
    }
    by_id = {k.id: k for k in by_cause.values()}
    wanted = {ref for _, ref, _ in actions if ref is not None and ref not in by_id}
    by_id.update({k.id: k for k in _kept_where(connection, INCIDENTS.c.id, wanted)})
    by_cause.update({k.cause: k for k in by_id.values()})
    seen = _events_seen(connection, by_cause, alerts, causes)
    filed: list[dict[str, Any]] = []
    touched: set[int] = set()
    for seq, alert in alerts:
        known = by_cause.get(causes[seq])
        event = alert.get("event_id")
        new_event = bool(event) and (causes[seq], event) not in seen
        if event:
            seen.add((causes[seq], event))
        kept = with_alert(known, seq, alert, new_event)
        by_cause[kept.cause] = by_id[kept.id] = kept
        touched.add(kept.id)
        filed.append({"seq": seq, "incident": kept.id, "event_id": event or None})
    for seq, refers_to, details in actions:
        incident = by_id.get(refers_to) if refers_to is not None else None
        if incident is not None:
            by_id[incident.id] = with_action(incident, seq, details)
            touched.add(incident.id)
    _write(connection, [by_id[i] for i in sorted(touched)])
    if filed:
        connection.execute(ALERTS.insert(), filed)


def _kept_where(connection: Connection, column: Any, values: Iterable[Any]) -> list[Kept]:
    wanted = sorted(values)
    if not wanted:
        return []
    statement = select(*(INCIDENTS.c[name] for name in _COLUMNS)).where(
        column.in_(bindparam("wanted", expanding=True))
    )
    return [_row_kept(row) for row in connection.execute(statement, {"wanted": wanted})]


def _row_kept(row: Any) -> Kept:
    values = dict(row._mapping)
    values["breach"] = bool(values["breach"])
    return Kept(**values)


def _events_seen(
    connection: Connection,
    by_cause: Mapping[str, Kept],
    alerts: Sequence[tuple[int, Mapping[str, Any]]],
    causes: Mapping[int, str],
) -> set[tuple[str, str]]:
    """(cause, event id) of the batch's events already on their incidents."""
    ids = {by_cause[c].id: c for c in set(causes.values()) if c in by_cause}
    events = sorted({str(a["event_id"]) for _, a in alerts if a.get("event_id")})
    if not ids or not events:
        return set()
    statement = select(ALERTS.c.incident, ALERTS.c.event_id).where(
        ALERTS.c.incident.in_(bindparam("ids", expanding=True)),
        ALERTS.c.event_id.in_(bindparam("events", expanding=True)),
    )
    rows = connection.execute(statement, {"ids": sorted(ids), "events": events})
    return {(ids[incident], event) for incident, event in rows}


#: The incident's row written whole, new or not. SQL text, where every other statement on
#: the ledger's tables is SQLAlchemy's: both databases take this ON CONFLICT as written,
#: and the dialects' own insert constructs, tried in its place, slowed the DPO's actions
#: under the chain's lock (the DPO-loop test fell short in 2 of 6 runs on PostgreSQL,
#: against none of 6 with this).
_UPSERT = text(
    f"INSERT INTO incident ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _COLUMNS)}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "id")
)


def _write(connection: Connection, kept: Sequence[Kept]) -> None:
    if kept:
        connection.execute(_UPSERT, [dict(zip(_COLUMNS, astuple(k), strict=True)) for k in kept])


def superseded(connection: Connection, seqs: Sequence[int]) -> None:
    """Take the alerts ``seqs``, just marked superseded, off their incidents, and fold each
    incident again from the alerts that stay (its id is its first remaining alert's seq;
    one left with none is gone). Under the chain's lock, in the marking's transaction."""
    if not seqs:
        return
    gone = set(seqs)
    on = select(ALERTS.c.incident).where(ALERTS.c.seq.in_(bindparam("s", expanding=True)))
    hit = sorted(set(connection.execute(on, {"s": sorted(gone)}).scalars()))
    if not hit:
        return
    ids = {"i": hit}
    members = select(ALERTS.c.seq).where(ALERTS.c.incident.in_(bindparam("i", expanding=True)))
    remaining = [int(s) for s in connection.execute(members, ids).scalars() if s not in gone]
    for table, column in ((ALERTS, ALERTS.c.incident), (INCIDENTS, INCIDENTS.c.id)):
        connection.execute(delete(table).where(column.in_(bindparam("i", expanding=True))), ids)
    _refilled(connection, _alert_bodies(connection, remaining))


# -- read by the desk --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Narrowed:
    """Which incidents a reader asks for: of ``schools`` alone (URNs; None: every school,
    and the log's own incidents of none), with these ``ids`` alone, leaving out those
    whose last action was ``unless_last`` (the desk's closing), and, when given, only
    those whose last action is one of ``last`` (None: no action yet) or of ``severity``."""

    schools: tuple[str, ...] | None = None
    ids: tuple[int, ...] | None = None
    unless_last: str | None = None
    last: tuple[str | None, ...] | None = None
    severity: str | None = None

    def where(self) -> list[Any]:
        clauses: list[Any] = []
        if self.schools is not None:
            clauses.append(INCIDENTS.c.school.in_(self.schools or ("",)))
        if self.ids is not None:
            # An id no seq can be (a BIGINT's range) names no incident: never a parameter.
            held = tuple(i for i in self.ids if 0 < i <= _LARGEST_SEQ)
            clauses.append(INCIDENTS.c.id.in_(held or (0,)))
        if self.unless_last is not None:
            clauses.append(
                INCIDENTS.c.last_action.is_(None) | (INCIDENTS.c.last_action != self.unless_last)
            )
        if self.last is not None:
            column = INCIDENTS.c.last_action
            named = sorted(k for k in self.last if k is not None)
            none = [column.is_(None)] if None in self.last else []
            clauses.append(or_(false(), *none, *([column.in_(named)] if named else [])))
        if self.severity is not None:
            clauses.append(INCIDENTS.c.severity == self.severity)
        return clauses


@dataclass(frozen=True, slots=True)
class Found:
    """Incidents as the desk reads them: each row, its alerts (seq, event id) in order, and
    its actions (seq, recorded at, the entry's details) in order."""

    kept: dict[int, Kept]
    alerts: dict[int, list[tuple[int, str | None]]]
    actions: dict[int, list[tuple[int, str, dict[str, Any]]]]


def found(connection: Connection, narrowed: Narrowed, with_alerts: bool = True) -> Found:
    """The incidents ``narrowed`` asks for, with their alerts (none, unless
    ``with_alerts``) and the seqs of the actions taken on them: each read by the
    incidents' ids, through an index, whatever the ledger's length."""
    statement = select(*(INCIDENTS.c[name] for name in _COLUMNS)).where(*narrowed.where())
    kept = {k.id: k for k in (_row_kept(r) for r in connection.execute(statement))}
    alerts: dict[int, list[tuple[int, str | None]]] = {i: [] for i in kept}
    actions: dict[int, list[tuple[int, str, dict[str, Any]]]] = {i: [] for i in kept}
    ids = sorted(kept)
    filed = select(ALERTS.c.incident, ALERTS.c.seq, ALERTS.c.event_id).where(
        ALERTS.c.incident.in_(bindparam("ids", expanding=True))
    )
    acted = select(_ENTRY.c.refers_to, _ENTRY.c.seq, _ENTRY.c.recorded_at, _ENTRY.c.details).where(
        _ENTRY.c.refers_to.in_(bindparam("ids", expanding=True)),
        _ENTRY.c.refers_to.is_not(None),  # the partial index on refers_to
        _ENTRY.c.kind == EntryKind.INCIDENT_ACTION,
    )
    for start in range(0, len(ids), _CHUNK):
        chunk = {"ids": ids[start : start + _CHUNK]}
        if with_alerts:
            for incident, seq, event in connection.execute(filed, chunk):
                alerts[incident].append((int(seq), event))
        for incident, seq, at, details in connection.execute(acted, chunk):
            actions[incident].append((int(seq), at, orjson.loads(details or "{}")))
    for filed_alerts in alerts.values():
        filed_alerts.sort()
    for taken in actions.values():
        taken.sort(key=lambda action: action[0])
    return Found(kept, alerts, actions)


@dataclass(frozen=True, slots=True)
class Queued:
    """One page of the queue: its incidents' ids in the queue's order, how many incidents
    the queue holds in all, and how many of those are past their ICO deadline."""

    ids: list[int]
    total: int
    overdue: int


def queued(
    connection: Connection,
    narrowed: Narrowed,
    clock_stops: Collection[str],
    overdue_before: str,
    limit: int | None,
    offset: int = 0,
) -> Queued:
    """The DPO's queue, one page of it (``limit`` from ``offset``; None: all): the
    incidents ``narrowed`` asks for, least time left first: the breaches whose clock runs
    (no action in ``clock_stops`` is their last), by when it started, then every other;
    at equal time left the gravest first, then by id. ``overdue_before``: the
    ``detected_at`` (UTC text) before which a running clock has passed its deadline.

    Counted by the database, and read in two parts, each in an order an index serves: the
    running clocks in ``detected_at`` order (a page stops after its own rows, however
    many incidents there are), and, for a page past them, the stopped ones."""
    running = INCIDENTS.c.breach.is_(True) & (
        INCIDENTS.c.last_action.is_(None) | INCIDENTS.c.last_action.not_in(sorted(clock_stops))
    )
    gravest = case(
        *((INCIDENTS.c.severity == s.value, r) for s, r in SEVERITY_RANK.items()), else_=-1
    ).desc()
    where = narrowed.where()
    late = running & (INCIDENTS.c.detected_at < overdue_before)
    counted = select(
        func.count(),
        func.coalesce(func.sum(case((running, 1), else_=0)), 0),
        func.coalesce(func.sum(case((late, 1), else_=0)), 0),
    ).where(*where)
    total, clocks, overdue = (int(n) for n in connection.execute(counted).one())
    ids: list[int] = []
    if offset < clocks:
        first = select(INCIDENTS.c.id).where(*where, running)
        first = first.order_by(INCIDENTS.c.detected_at, gravest, INCIDENTS.c.id)
        ids += connection.execute(first.limit(limit).offset(offset)).scalars()
    wanted = None if limit is None else limit - len(ids)
    if (wanted is None or wanted > 0) and offset + len(ids) < total:
        rest = select(INCIDENTS.c.id).where(*where, ~running)
        rest = rest.order_by(gravest, INCIDENTS.c.id).limit(wanted)
        ids += connection.execute(rest.offset(max(0, offset - clocks))).scalars()
    return Queued([int(i) for i in ids], total, overdue)


def alerted_by(connection: Connection, seqs: Iterable[int]) -> list[int]:
    """The ids of the incidents whose alerts the entries ``seqs`` raised."""
    wanted = sorted(set(seqs))
    if not wanted:
        return []
    statement = select(ALERTS.c.incident).where(ALERTS.c.seq.in_(bindparam("s", expanding=True)))
    return sorted({int(i) for i in connection.execute(statement, {"s": wanted}).scalars()})


def schools_with_incidents(connection: Connection, schools: tuple[str, ...] | None) -> list[str]:
    """The schools (URNs) any incident is of, of ``schools`` alone when given."""
    statement = select(INCIDENTS.c.school).distinct().where(INCIDENTS.c.school.is_not(None))
    if schools is not None:
        statement = statement.where(INCIDENTS.c.school.in_(schools or ("",)))
    return sorted(str(s) for s in connection.execute(statement).scalars())


# -- rebuilt from the outbox and the entries ---------------------------------------------


def _alert_bodies(
    connection: Connection, seqs: Sequence[int] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(seq, alert) of the alerts on the desk (not superseded), in seq order; of ``seqs``
    alone when given. Streamed, each body parsed as it comes: a check of every alert
    ever raised holds one at a time, not hundreds of thousands."""
    statement = select(_OUTBOX.c.seq, _OUTBOX.c.body).where(
        (_OUTBOX.c.status.is_(None)) | (_OUTBOX.c.status != SUPERSEDED)
    )
    if seqs is not None:
        if not seqs:
            return
        statement = statement.where(_OUTBOX.c.seq.in_(bindparam("s", expanding=True)))
    statement = statement.order_by(_OUTBOX.c.seq).execution_options(yield_per=_CHUNK)
    for seq, body in connection.execute(statement, {"s": list(seqs or [])}):
        yield int(seq), orjson.loads(body)


def _action_entries(
    connection: Connection, incidents: Iterable[int] | None = None
) -> list[tuple[int, int | None, dict[str, Any]]]:
    """(seq, incident, details) of the actions on incidents (on ``incidents`` alone, when
    given), in seq order."""
    statement = select(_ENTRY.c.seq, _ENTRY.c.refers_to, _ENTRY.c.details).where(
        _ENTRY.c.refers_to.is_not(None),  # the partial index on refers_to
        _ENTRY.c.kind == EntryKind.INCIDENT_ACTION,
    )
    wanted: dict[str, Any] = {}
    if incidents is not None:
        wanted["i"] = sorted(incidents)
        if not wanted["i"]:
            return []
        statement = statement.where(_ENTRY.c.refers_to.in_(bindparam("i", expanding=True)))
    out = []
    for seq, refers_to, details in connection.execute(statement.order_by(_ENTRY.c.seq), wanted):
        try:
            decoded = orjson.loads(details or "{}")
        except orjson.JSONDecodeError:
            continue  # not what the writer wrote: the chain's check names the entry
        out.append((int(seq), refers_to, decoded if isinstance(decoded, dict) else {}))
    return out


class Folding:
    """Alerts folded into incidents one at a time, in seq order, holding only the
    incidents and, to count each incident's events once, a 16-byte mark of each (cause,
    event) met: a check of every alert ever raised holds neither the alerts nor their
    filings, which a caller compares or writes as they come."""

    def __init__(self) -> None:
        self._by_cause: dict[str, Kept] = {}
        self._met: set[bytes] = set()

    def add(self, seq: int, alert: Mapping[str, Any]) -> tuple[int, str | None]:
        """The alert's filing: the incident it joins (or opens) and its event, if any."""
        cause = cause_key(alert_cause(alert))
        event = alert.get("event_id") or None
        new_event = False
        if event:
            # A digest, not the strings: 200,000 alerts' marks in 16 MB, not 50. SHA-256
            # cut to 128 bits: no two of them meet by chance.
            mark = hashlib.sha256(f"{cause}\0{event}".encode()).digest()[:16]
            new_event = mark not in self._met
            self._met.add(mark)
        kept = self._by_cause[cause] = with_alert(self._by_cause.get(cause), seq, alert, new_event)
        return kept.id, event

    def incidents(self) -> dict[int, Kept]:
        """The incidents the alerts added make, by id, before any action."""
        return {k.id: k for k in self._by_cause.values()}


def folded(
    alerts: Iterable[tuple[int, Mapping[str, Any]]],
) -> tuple[dict[int, Kept], list[dict[str, Any]]]:
    """The incidents these alerts (in seq order) make, by id, before any action; each
    alert's filing."""
    folding = Folding()
    filed = []
    for seq, alert in alerts:
        incident, event = folding.add(seq, alert)
        filed.append({"seq": seq, "incident": incident, "event_id": event})
    return folding.incidents(), filed


def _acted(
    by_id: dict[int, Kept], actions: Iterable[tuple[int, int | None, Mapping[str, Any]]]
) -> dict[int, Kept]:
    """The incidents after the actions (in seq order) that refer to one of them."""
    for seq, refers_to, details in actions:
        if refers_to is not None and refers_to in by_id:
            by_id[refers_to] = with_action(by_id[refers_to], seq, details)
    return by_id


def _refilled(connection: Connection, alerts: Iterable[tuple[int, Mapping[str, Any]]]) -> int:
    """Write the incidents these alerts and the actions on them make; how many."""
    by_id, filed = folded(alerts)
    by_id = _acted(by_id, _action_entries(connection, by_id))
    _write(connection, list(by_id.values()))
    if filed:
        connection.execute(ALERTS.insert(), filed)
    return len(by_id)


def rebuilt(
    connection: Connection,
) -> tuple[dict[int, Kept], dict[int, tuple[int, str | None]]]:
    """The rows the outbox and the entries make, all at once: incidents by id, and each
    alert's incident and event by the alert's seq (what :func:`incident_faults` compares
    as it reads, for a caller that wants the whole of it)."""
    by_id, filed = folded(_alert_bodies(connection))
    alerts = {f["seq"]: (f["incident"], f["event_id"]) for f in filed}
    return _acted(by_id, _action_entries(connection)), alerts


def rebuild(connection: Connection) -> int:
    """Fill empty tables from the outbox and the entries (a ledger upgraded to them); how
    many incidents."""
    return _refilled(connection, _alert_bodies(connection))


def incident_faults(connection: Connection) -> list[tuple[int, str]]:
    """(incident id or alert seq, what differs) for each ``incident`` or ``incident_alert``
    row that the outbox and the entries do not bear out, and each missing. The alerts are
    folded as they are read and each filing compared with its row as it comes, both in
    seq order: ten years of alerts are never held at once."""
    folding = Folding()
    filings = ((seq, folding.add(seq, alert)) for seq, alert in _alert_bodies(connection))
    statement = select(ALERTS.c.seq, ALERTS.c.incident, ALERTS.c.event_id).order_by(ALERTS.c.seq)
    rows = (
        (int(seq), (int(incident), event))
        for seq, incident, event in connection.execute(
            statement.execution_options(yield_per=_CHUNK)
        )
    )
    filing_faults = [
        (seq, f"incident_alert: alert {seq} {_filing(said_in, row_in)}")
        for seq, said_in, row_in in _paired(filings, rows)
        if said_in != row_in
    ]
    expected = _acted(folding.incidents(), _action_entries(connection))
    stored = {k.id: k for k in _kept_where_all(connection)}
    faults: list[tuple[int, str]] = []
    for number in sorted(expected.keys() | stored.keys()):
        said, row = expected.get(number), stored.get(number)
        if row is None:
            faults.append(
                (number, f"incident: the ledger makes incident {number}, but its row is missing")
            )
        elif said is None:
            faults.append(
                (
                    number,
                    f"incident: a row holds incident {number}, but no alert on the desk opens "
                    "it (the row was inserted or changed)",
                )
            )
        elif said != row:
            differs = [
                f"{name} {getattr(row, name)!r}, but the ledger says {getattr(said, name)!r}"
                for name in _COLUMNS
                if getattr(said, name) != getattr(row, name)
            ]
            faults.append((number, f"incident: incident {number} has " + "; ".join(differs)))
    return faults + filing_faults


_Filing = tuple[int, str | None]


def _paired(
    said: Iterator[tuple[int, _Filing]], kept: Iterator[tuple[int, _Filing]]
) -> Iterator[tuple[int, _Filing | None, _Filing | None]]:
    """(seq, the ledger's filing, the row's) for every seq either stream holds, each
    stream in seq order; None where one holds none."""
    left, right = next(said, None), next(kept, None)
    while left is not None or right is not None:
        if right is None or (left is not None and left[0] < right[0]):
            assert left is not None
            yield left[0], left[1], None
            left = next(said, None)
        elif left is None or right[0] < left[0]:
            yield right[0], None, right[1]
            right = next(kept, None)
        else:
            yield left[0], left[1], right[1]
            left, right = next(said, None), next(kept, None)


def _filing(said: tuple[int, str | None] | None, row: tuple[int, str | None] | None) -> str:
    if row is None:
        return f"is on incident {_on(said)} as the ledger says, but its row is missing"
    if said is None:
        return (
            f"is filed under incident {_on(row)}, but it is on no incident on the desk "
            "(the row was inserted, or its alert superseded)"
        )
    return f"is filed under incident {_on(row)}, but the ledger puts it on {_on(said)}"


def _on(filing: tuple[int, str | None] | None) -> str:
    assert filing is not None
    incident, event = filing
    return f"{incident} (event {event})" if event else str(incident)


def _kept_where_all(connection: Connection) -> list[Kept]:
    statement = select(*(INCIDENTS.c[name] for name in _COLUMNS))
    return [_row_kept(row) for row in connection.execute(statement)]
