"""What ``sharing-audit reconcile`` reads: which of the events a school sent the ledger
recorded, and (for one school) the decision entries of a period that nothing sent.

Both are audited reads, as ``ledger query`` is: the lookup by event id is recorded as a
``reconcile`` read naming how many ids were asked and found, and the listing of a
school's entries as an export of its filters (kind, school, period), so that "who
looked at this pupil's entries?" finds it as it finds any export.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

from pipeline.ledger.reading.queries import Filters
from pipeline.ledger.reading.reads import Requester, export, record_read
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.store import Ledger, from_utc_text, utc_text

#: Event ids looked up per query.
CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Found:
    """The events sent that the ledger recorded: each id's first decision entry's seq and
    when the event occurred (the ledger's UTC text)."""

    seqs: dict[str, int]
    first: str | None
    last: str | None


def recorded(ledger: Ledger, reader: Requester, event_ids: Collection[str]) -> Found:
    """Which of ``event_ids`` have a decision entry; the lookup recorded as a read."""
    seqs: dict[str, int] = {}
    times: list[str] = []
    ids = list(event_ids)
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        for start in range(0, len(ids), CHUNK):
            for entry in Ledger.decisions_for(connection, ids[start : start + CHUNK]):
                if entry.event_id is not None and entry.seq <= as_of:
                    seqs[entry.event_id] = entry.seq
                    times += [entry.occurred_at] if entry.occurred_at else []
    record_read(
        ledger,
        reader,
        "reconcile",
        returned=len(seqs),
        as_of=as_of,
        extra={"asked": len(ids)},
    )
    return Found(seqs, min(times, default=None), max(times, default=None))


def unsent(
    ledger: Ledger, reader: Requester, sent: Collection[str], since: str, until: str | None
) -> Iterator[Entry]:
    """The decision entries of the reader's school (``reader.schools``) that occurred from
    ``since`` up to and including ``until`` whose event is not in ``sent``. Recorded as an
    export of those filters before the first is produced."""
    end = None if until is None else utc_text(from_utc_text(until) + timedelta(microseconds=1))
    filters = Filters(kind=EntryKind.DECISION, since=since, until=end)
    _, rows = export(
        ledger, reader, filters, "reconcile", along=lambda _, chunk: ({"entry": e} for e in chunk)
    )
    for row in rows:
        entry: Entry = row["entry"]
        if entry.refers_to is None and entry.event_id not in sent:
            yield entry


def scoped(reader: Requester, school: str) -> Requester:
    return replace(reader, schools=(school,))
