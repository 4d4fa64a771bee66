"""Each event's current decision, kept as entries are appended (DESIGN invariant 10).

An event's current decision is its latest ``decision`` or ``reevaluation`` entry. Nearly
every event is decided once: the ``current_decision`` table holds a row only for an event
re-decided since (keyed by its first decision entry's seq: the seq of the re-decision now
current, and its verdict), so an event without a row stands as first decided and the
writer's common append writes nothing here. Every reader of a current decision asks this
module (:func:`redecided`); ``ledger verify`` rebuilds the table from the entries and names
each row that differs (:func:`current_decision_faults`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, text

from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.models import CurrentDecision, LedgerEntry

CURRENT: Table = CurrentDecision.__table__  # type: ignore[attr-defined]
_ENTRY: Table = LedgerEntry.__table__  # type: ignore[attr-defined]
#: The kind of the entry re-deciding an event after a late fact.

_KEEP = text(
    "INSERT INTO current_decision (event_seq, seq, decision) "
    "VALUES (:event_seq, :seq, :decision) "
    "ON CONFLICT (event_seq) DO UPDATE SET seq = excluded.seq, decision = excluded.decision "
    "WHERE excluded.seq > current_decision.seq"
)


def keep(connection: Connection, redecisions: Sequence[tuple[int, int, str | None]]) -> None:
    """Record re-decisions being appended, (event's first decision seq, re-decision's
    seq, its verdict) in seq order: inside the append's transaction."""
    if redecisions:
        connection.execute(
            _KEEP, [{"event_seq": e, "seq": s, "decision": d} for e, s, d in redecisions]
        )


def redecided(
    connection: Connection, event_seqs: Iterable[int]
) -> dict[int, tuple[int, str | None]]:
    """(seq of the current decision entry, its verdict) of each of ``event_seqs`` (first
    decision entries' seqs) that has been re-decided; the others stand as first decided."""
    wanted = sorted(set(event_seqs))
    if not wanted:
        return {}
    found: dict[int, tuple[int, str | None]] = {}
    for start in range(0, len(wanted), 10_000):
        chunk = wanted[start : start + 10_000]
        statement = select(CURRENT.c.event_seq, CURRENT.c.seq, CURRENT.c.decision).where(
            CURRENT.c.event_seq.in_(bindparam("seqs", expanding=True))
        )
        for event_seq, seq, decision in connection.execute(statement, {"seqs": chunk}):
            found[int(event_seq)] = (int(seq), decision)
    return found


def as_of(connection: Connection, up_to_seq: int) -> dict[int, str | None]:
    """For a reader of the ledger as it ended at ``up_to_seq`` (a report as of an earlier
    head): each event re-decided since, and the verdict it stood at then, when it had
    been re-decided by then (one without stood as first decided). A read of the few rows
    changed since, not of the table."""
    changed = connection.execute(
        select(CURRENT.c.event_seq).where(
            CURRENT.c.seq > up_to_seq, CURRENT.c.event_seq <= up_to_seq
        )
    ).scalars()
    later = [int(event_seq) for event_seq in changed]
    stood: dict[int, str | None] = dict.fromkeys(later)
    if later:
        stood.update({e: d for e, _, d in _rebuilt_rows(connection, later, up_to_seq)})
    return stood


def joined(statement: Any, event_seq: Any) -> Any:
    """``statement`` with the current decision of the event whose first decision's seq is
    the column ``event_seq``: columns ``current_seq`` and ``current_decision``, null for an
    event never re-decided."""
    return statement.add_columns(
        CURRENT.c.seq.label("current_seq"), CURRENT.c.decision.label("current_decision")
    ).outerjoin(CURRENT, CURRENT.c.event_seq == event_seq)


# -- checked against the entries ---------------------------------------------------------


def rebuilt(connection: Connection) -> dict[int, tuple[int, str | None]]:
    """The table as the entries make it: each re-decided event's latest re-decision."""
    return {e: (s, d) for e, s, d in _rebuilt_rows(connection, None, None)}


def _rebuilt_rows(
    connection: Connection, only: list[int] | None, up_to_seq: int | None
) -> list[tuple[int, int, str | None]]:
    statement = select(_ENTRY.c.refers_to, _ENTRY.c.seq, _ENTRY.c.decision).where(
        _ENTRY.c.refers_to.is_not(None),  # the partial index on refers_to
        _ENTRY.c.kind == EntryKind.REEVALUATION,
    )
    if only is not None:
        statement = statement.where(_ENTRY.c.refers_to.in_(only))
    if up_to_seq is not None:
        statement = statement.where(_ENTRY.c.seq <= up_to_seq)
    latest: dict[int, tuple[int, str | None]] = {}
    for refers_to, seq, decision in connection.execute(statement.order_by(_ENTRY.c.seq)):
        latest[int(refers_to)] = (int(seq), decision)
    return [(e, s, d) for e, (s, d) in latest.items()]


def rebuild(connection: Connection) -> int:
    """Fill an empty table from the entries (a ledger upgraded to it); how many rows."""
    rows = _rebuilt_rows(connection, None, None)
    keep(connection, rows)
    return len(rows)


def current_decision_faults(connection: Connection) -> list[tuple[int, str]]:
    """(event seq, what differs) for each ``current_decision`` row the entries do not
    bear out, and each re-decided event whose row is missing."""
    expected = rebuilt(connection)
    stored = {
        int(e): (int(s), d)
        for e, s, d in connection.execute(
            select(CURRENT.c.event_seq, CURRENT.c.seq, CURRENT.c.decision)
        )
    }
    faults: list[tuple[int, str]] = []
    for event_seq in sorted(expected.keys() | stored.keys()):
        said, row = expected.get(event_seq), stored.get(event_seq)
        if said == row:
            continue
        faults.append(
            (event_seq, f"current_decision: event seq {event_seq}: {_differs(said, row)}")
        )
    return faults


def _differs(said: tuple[int, str | None] | None, row: tuple[int, str | None] | None) -> str:
    if row is None:
        return f"the ledger says its current decision is seq {_said(said)}, but its row is missing"
    if said is None:
        return (
            f"a row says it was re-decided by seq {_said(row)}, but the ledger holds no "
            "re-evaluation of it (the row was inserted or changed)"
        )
    return f"the ledger says its current decision is seq {_said(said)}, the row says {_said(row)}"


def _said(value: tuple[int, str | None] | None) -> str:
    assert value is not None
    return f"{value[0]} ({value[1]})"
