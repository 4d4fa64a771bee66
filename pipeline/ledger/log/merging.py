"""The log's maximum merge delay (MMD), kept or missed.

Every entry the log gave a receipt for is promised to be in a checkpoint it signs within
the MMD of its recording (``SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS``): an auditor holding
a receipt older than that whose entry no checkpoint includes holds proof the log
misbehaved. The log checks its own promise too, so that the school hears of it first:
when signing has stopped (no key, the database's lock starved, a bug), the oldest
receipted entry outside every signed checkpoint grows older than the MMD, and that is a
high-severity alert, an incident on the DPO's desk, raised once when the miss begins and
not again for each turn of the signer while it lasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select

from pipeline.ledger.log.checkpoints import CHECKPOINT
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.store import ENTRY, Ledger, NewEntry, from_utc_text, now_text, utc_text
from schemas.alerts import Severity
from schemas.decisions import Verdict

#: The entries a receipt is owed for: records read from a topic (not a file's lines, whose
#: position is ``file:NAME``), not the log's own re-evaluations
#: (``pipeline.ledger.writing.receipting``).
_RECEIPTED = (
    ENTRY.c.topic.is_not(None),
    ENTRY.c.topic.not_like("file:%"),
    ENTRY.c.kind != EntryKind.REEVALUATION,
)


@dataclass(frozen=True, slots=True)
class Unmerged:
    """The receipted entries in no signed checkpoint: how many, after which signed size,
    and when the oldest of them was recorded (None: there are none)."""

    signed: int
    entries: int
    oldest: datetime | None

    def overdue(self, now: datetime, merge_delay: float) -> bool:
        """Whether the oldest was recorded more than ``merge_delay`` seconds before ``now``."""
        return self.oldest is not None and now - self.oldest > timedelta(seconds=merge_delay)


def signed_size(connection: Connection) -> int:
    """The size of the largest checkpoint the log signed (0: none)."""
    return int(connection.execute(select(func.max(CHECKPOINT.c.size))).scalar() or 0)


def unmerged(connection: Connection, count: bool = True) -> Unmerged:
    """The receipted entries after the latest signed checkpoint (counted when ``count``:
    the oldest alone is one row read)."""
    signed = signed_size(connection)
    oldest = connection.execute(
        select(ENTRY.c.recorded_at)
        .where(ENTRY.c.seq > signed, *_RECEIPTED)
        .order_by(ENTRY.c.seq)
        .limit(1)
    ).scalar()
    if oldest is None:
        return Unmerged(signed, 0, None)
    entries = 0
    if count:
        entries = int(
            connection.execute(
                select(func.count()).where(ENTRY.c.seq > signed, *_RECEIPTED)
            ).scalar()
            or 0
        )
    return Unmerged(signed, entries, from_utc_text(oldest))


def missed_alert_open(connection: Connection, signed: int) -> bool:
    """Whether a missed merge delay was alerted after the checkpoint of size ``signed``:
    the miss it told of lasts until a checkpoint includes that alert's entry."""
    return (
        connection.execute(
            select(ENTRY.c.seq)
            .where(ENTRY.c.seq > signed, ENTRY.c.kind == EntryKind.MERGE_DELAY_MISSED)
            .limit(1)
        ).first()
        is not None
    )


def check_merge_delay(
    ledger: Ledger, merge_delay: float, why: str = "", now: datetime | None = None
) -> int | None:
    """Raise the alert if the log has missed its merge delay at ``now`` and no alert was
    raised for this miss yet (``why``: what the signer last met, if it knows); the alert
    entry's seq, or None when the promise holds or the miss was already told."""
    at = now or datetime.now(UTC)
    with ledger.engine.connect() as connection:
        if not unmerged(connection, count=False).overdue(at, merge_delay):
            return None  # the usual answer, read without the chain-head lock
    with ledger.locked() as connection:  # one alert, whichever worker's signer is first
        late = unmerged(connection)
        if not late.overdue(at, merge_delay) or missed_alert_open(connection, late.signed):
            return None
        seq = Ledger.head(connection)[0] + 1
        reason = missed_reason(late, merge_delay, why)
        details = {
            "max_merge_delay_seconds": merge_delay,
            "signed_size": late.signed,
            "entries": late.entries,
            "oldest_recorded_at": utc_text(late.oldest) if late.oldest else None,
            "why": why,
        }
        entry = Entry.act(
            seq, EntryKind.MERGE_DELAY_MISSED, details, recorded_at=now_text(), reasons=[reason]
        )
        alert = {**entry.alert_fields(), "decision": Verdict.REVIEW.value}
        high = Severity.HIGH.value
        ledger.append(connection, [NewEntry(entry, alert=(high, {**alert, "severity": high}))])
    return seq


def missed_reason(late: Unmerged, merge_delay: float, why: str) -> str:
    """The alert's reason, in words the DPO can act on."""
    assert late.oldest is not None
    due = late.oldest + timedelta(seconds=merge_delay)
    noun = "entry" if late.entries == 1 else "entries"
    verb = "is" if late.entries == 1 else "are"
    said = (
        f"the log failed its own promise to include every entry it gave a receipt for in "
        f"a signed checkpoint within {merge_delay:g} seconds: {late.entries:,} receipted "
        f"{noun}, the oldest recorded at {utc_text(late.oldest)}, {verb} in no signed "
        f"checkpoint, and the promise has been broken since {utc_text(due)} (the last "
        f"checkpoint signed has size {late.signed:,}); anyone holding their receipts can "
        "prove the log broke its word"
    )
    return f"{said}; checkpoints are not being signed: {why}" if why else said
