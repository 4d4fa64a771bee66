"""The alert outbox: reading what the relay has yet to send, and marking it sent.

Delivery is at-least-once: a relay that dies between the broker's acknowledgement and
marking the rows sends them again. The alert's ``seq`` lets a consumer drop the repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from pipeline.ledger.store import OUTBOX, Ledger, now_text


@dataclass(frozen=True, slots=True)
class PendingAlert:
    seq: int
    severity: str
    body: bytes


def pending_alerts(ledger: Ledger, limit: int = 500) -> list[PendingAlert]:
    """The oldest alerts not yet relayed, in ledger order."""
    statement = (
        select(OUTBOX.c.seq, OUTBOX.c.severity, OUTBOX.c.body)
        .where(OUTBOX.c.relayed_at.is_(None))
        .order_by(OUTBOX.c.seq)
        .limit(limit)
    )
    with ledger.engine.connect() as connection:
        rows = connection.execute(statement).all()
    return [PendingAlert(r.seq, r.severity, r.body.encode()) for r in rows]


def mark_relayed(ledger: Ledger, seqs: list[int]) -> None:
    if not seqs:
        return
    with ledger.engine.begin() as connection:
        _mark(connection, seqs)


def _mark(connection: Connection, seqs: list[int]) -> None:
    connection.execute(
        update(OUTBOX)
        .where(OUTBOX.c.seq.in_(seqs), OUTBOX.c.relayed_at.is_(None))
        .values(relayed_at=now_text())
    )
