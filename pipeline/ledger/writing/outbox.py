"""The alert outbox: what the relay has yet to send, and marking it sent or superseded.

An alert is held for a while before it goes out, and goes out only if its entry is still
its event's current decision. Records on different topics arrive in no fixed order, so a
referral is often decided a moment before the consent it relies on arrives; it is then
re-decided as allowed, and paging the DPO for the first decision would be noise. The
ledger keeps both entries whatever happens; only the alert waits.

Delivery is at-least-once: a relay that dies between the broker's acknowledgement and
marking the rows sends them again. The alert's ``seq`` lets a consumer drop the repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select, update

from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage import decision_projection, incident_projection
from pipeline.ledger.storage.incident_projection import SUPERSEDED as SUPERSEDED
from pipeline.ledger.storage.store import ENTRY, OUTBOX, Ledger, now_text, utc_text

SENT = "sent"
#: An alert the broker would not take (see ``agents.relay``): its entry stays on the desk.
SET_ASIDE = "set_aside"


@dataclass(frozen=True, slots=True)
class PendingAlert:
    seq: int
    severity: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Due:
    """Alerts whose hold is over: those to send, and those a later entry superseded."""

    send: list[PendingAlert]
    superseded: list[int]


def due_alerts(ledger: Ledger, hold_seconds: float = 0.0, limit: int = 500) -> Due:
    """The oldest unsent alerts recorded at least ``hold_seconds`` ago, in ledger order."""
    cutoff = utc_text(datetime.now(UTC) - timedelta(seconds=hold_seconds))
    statement = (
        select(OUTBOX.c.seq, OUTBOX.c.severity, OUTBOX.c.body, ENTRY.c.kind, ENTRY.c.refers_to)
        .join(ENTRY, ENTRY.c.seq == OUTBOX.c.seq)
        .where(OUTBOX.c.relayed_at.is_(None), OUTBOX.c.created_at <= cutoff)
        .order_by(OUTBOX.c.seq)
        .limit(limit)
    )
    with ledger.engine.connect() as connection:
        rows = connection.execute(statement).all()
        base = {r.seq: (r.refers_to if r.kind == EntryKind.REEVALUATION else r.seq) for r in rows}
        latest = {
            event: seq
            for event, (seq, _) in decision_projection.redecided(connection, base.values()).items()
        }
    due = Due([], [])
    for row in rows:
        if latest.get(base[row.seq], row.seq) > row.seq:
            due.superseded.append(row.seq)
        else:
            due.send.append(PendingAlert(row.seq, row.severity, row.body.encode()))
    return due


def mark_relayed(ledger: Ledger, seqs: list[int], status: str = SENT) -> None:
    """Mark the alerts ``seqs`` sent, set aside or superseded. Superseded alerts leave the
    desk: their incidents are folded again in the same transaction, under the chain's
    lock (the one lock every change to the incidents is made under; it is held for a few
    rows, and only when an alert was superseded)."""
    if not seqs:
        return
    marking = update(OUTBOX).where(OUTBOX.c.seq.in_(seqs), OUTBOX.c.relayed_at.is_(None))
    if status != SUPERSEDED:
        with ledger.engine.begin() as connection:
            connection.execute(marking.values(relayed_at=now_text(), status=status))
        return
    with ledger.locked() as connection:
        marked = connection.execute(
            marking.values(relayed_at=now_text(), status=status).returning(OUTBOX.c.seq)
        )
        incident_projection.superseded(connection, [int(seq) for seq in marked.scalars()])


#: The status of an alert not yet sent, superseded or set aside.
PENDING = "pending"


def alert_counts(connection: Connection) -> dict[str, int]:
    """How many alerts the outbox holds by status (``pending`` for those not yet relayed)."""
    rows = connection.execute(select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status))
    return {str(status or PENDING): int(n) for status, n in rows}
