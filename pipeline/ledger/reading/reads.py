"""Audited reads: whoever searches, exports or reports on pupil-level data leaves an entry.

A ``read`` entry records who asked (name, role, and whether through the API, the pages or
the command line), what for (the action and the filters, pupils by pseudonym), how many
entries the answer held, and the chain's head when it was asked (``as_of``). The answer is
pinned to that head, so the entries a read returned can always be worked out again from
the append-only ledger: that is how :func:`readers_of` answers "who looked at this
child's record?" without copying every pupil of a year's export into one entry.

The read is recorded before anything is returned; if it cannot be recorded, nothing is.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

import orjson
from sqlalchemy import Connection, or_, select

from pipeline.ledger.reading.queries import (
    Filters,
    count,
    entries,
    entries_at,
    entry_at,
    in_scope,
    judged,
    nth_seq,
    referring_to,
)
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.store import ENTRY, Ledger, any_of
from pipeline.ledger.writing.acts import append_act
from pipeline.ledger.writing.pupils import NOBODY

#: Entries an export hands its ``along`` at once: what that adds to each (an inclusion
#: proof) is read for all of them together, two queries a chunk rather than one or two an
#: entry.
EXPORT_CHUNK = 200
#: What an export makes of each chunk of its entries, on the export's own connection.
Along = Callable[[Connection, Sequence[Entry]], Iterable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is reading, and through what."""

    name: str
    role: str
    via: str  # "api", "page" or "cli"
    schools: tuple[str, ...] | None = None  # the schools they may see; None: every school


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a search, and the cursor for the next (None on the last page)."""

    entries: list[Entry]
    next_after: int | None
    as_of: int
    read_seq: int


def record_read(
    ledger: Ledger,
    reader: Requester,
    action: str,
    *,
    returned: int,
    as_of: int,
    filters: Filters | None = None,
    through: int | None = None,
    pupil_keys: Sequence[str] = (),
    refers_to: int | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """Append the read entry; its ``seq``.

    ``through`` is the last ``seq`` the answer could hold (a page ends before ``as_of``);
    ``pupil_keys`` are the pupils the read was about, so that the pupil index finds it.
    A read about a UPN the ledger holds no identity for (never recorded, or erased:
    :data:`~pipeline.ledger.writing.pupils.NOBODY`) names no pupil: named, it would be found by
    every later search for any unknown UPN, and listed in its report's accesses.
    """
    details: dict[str, Any] = {
        "action": action,
        "by": reader.name,
        "role": reader.role,
        "via": reader.via,
        "returned": returned,
        "as_of": as_of,
    }
    if filters is not None:
        details["filters"] = filters.asked()
        details["after_seq"] = filters.after_seq
        details["through_seq"] = through if through is not None else as_of
    if reader.schools is not None:
        details["schools"] = list(reader.schools)
    details.update(extra or {})
    named = [key for key in pupil_keys if key != NOBODY]
    return append_act(ledger, EntryKind.READ, details, refers_to=refers_to, pupil_keys=named)


def search(ledger: Ledger, reader: Requester, filters: Filters, limit: int) -> Page:
    """One page of entries matching ``filters`` after ``filters.after_seq`` (of the
    reader's schools alone, when confined), recorded."""
    filters = replace(filters, schools=reader.schools)
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        pinned = replace(filters, up_to_seq=as_of, limit=limit + 1)
        found = list(entries(connection, pinned))
    more = len(found) > limit
    found = found[:limit]
    through = found[-1].seq if more else as_of
    read_seq = record_read(
        ledger,
        reader,
        "search",
        returned=len(found),
        as_of=as_of,
        filters=filters,
        through=through,
        pupil_keys=_asked_pupils(filters),
    )
    return Page(found, through if more else None, as_of, read_seq)


def export(
    ledger: Ledger,
    reader: Requester,
    filters: Filters,
    form: str,
    along: Along | None = None,
) -> tuple[int, Iterator[dict[str, Any]]]:
    """How many entries an export holds, and the entries, streamed a page at a time;
    passed through ``along`` first, :data:`EXPORT_CHUNK` at a time, on the export's own
    connection (a request holds one at a time).

    The read is recorded (with the count) before the first entry is produced. A reader
    confined to some schools exports their entries alone.
    """
    filters = replace(filters, schools=reader.schools)
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        pinned = replace(filters, up_to_seq=as_of)
        total = count(connection, pinned)
        through = None  # all of them, up to as_of
        if filters.limit is not None and total > filters.limit:
            total, through = filters.limit, nth_seq(connection, pinned, filters.limit)
    record_read(
        ledger,
        reader,
        "export",
        returned=total,
        as_of=as_of,
        filters=filters,
        through=through,
        pupil_keys=_asked_pupils(filters),
        extra={"format": form},
    )

    def streamed() -> Iterator[dict[str, Any]]:
        with ledger.engine.connect() as connection:
            found = entries(connection, pinned)
            if along is None:
                yield from (entry.as_dict() for entry in found)
                return
            while chunk := list(islice(found, EXPORT_CHUNK)):
                yield from along(connection, chunk)

    return total, streamed()


@dataclass(frozen=True, slots=True)
class Opened:
    """An entry as opened: it, the entry it refers to, and the later entries referring to
    it (of those the reader may see)."""

    entry: Entry
    refers_to: Entry | None
    referred_by: list[Entry]
    #: What the rules judged of the entry's event beyond its columns (see :func:`judged`).
    judged: dict[str, Any] = field(default_factory=dict)


def opened(ledger: Ledger, reader: Requester, seq: int) -> Opened | None:
    """Entry ``seq`` with the entry it refers to and the later entries referring to it;
    None if there is none the reader may see (another school's is as if it did not
    exist)."""
    scope = reader.schools
    with ledger.engine.connect() as connection:
        as_of = Ledger.head(connection)[0]
        entry = entry_at(connection, seq)
        if not in_scope(entry, scope):
            return None
        assert entry is not None
        earlier = entry_at(connection, entry.refers_to) if entry.refers_to else None
        earlier = earlier if in_scope(earlier, scope) else None
        later = [e for e in referring_to(connection, seq) if in_scope(e, scope)]
        fields = judged(connection, entry)
    # Every entry the answer shows is named, so that opening an incident action (which
    # names no pupil) counts among the readers of the pupils of the decision it shows.
    shown = sorted({seq, *(e.seq for e in (earlier, *later) if e is not None)})
    record_read(
        ledger,
        reader,
        "open",
        returned=len(shown),
        as_of=as_of,
        refers_to=seq,
        extra={"entries": shown},
    )
    return Opened(entry, earlier, later, fields)


def read_in_scope(read: Entry, schools: tuple[str, ...] | None) -> bool:
    """Whether a reader confined to ``schools`` (None: every school) may see ``read``:
    one made by someone who may see one of those schools (a read by a reader of another
    school alone is that school's)."""
    made_by = (read.details or {}).get("schools")
    return schools is None or made_by is None or not set(made_by).isdisjoint(schools)


def _asked_pupils(filters: Filters) -> list[str]:
    return [filters.pupil_key] if filters.pupil_key else []


def readers_of(
    connection: Connection, pupil_key: str, naming: list[Entry] | None = None
) -> list[Entry]:
    """Every read whose answer held an entry naming this pupil, oldest first.

    A read about the pupil names them itself; a read that opened one of their entries
    refers to it (an opened incident lists its entries); any other search or export is
    replayed against the pupil's entries (its filters, within the seqs it covered).
    ``naming``: the entries naming the pupil, when the caller has them already.
    """
    if naming is None:
        naming = list(entries(connection, Filters(pupil_key=pupil_key)))
    own: list[Entry] = []
    reads: dict[int, Entry] = {}
    for entry in naming:
        if entry.kind == EntryKind.READ:
            reads[entry.seq] = entry
        else:
            own.append(entry)
    if own:
        shown = ShownEntries(own)
        candidates = connection.execute(
            select(ENTRY.c.seq, ENTRY.c.refers_to, ENTRY.c.details).where(
                ENTRY.c.kind == EntryKind.READ,
                ENTRY.c.seq > own[0].seq,
                or_(
                    ENTRY.c.pupil_keys == "[]",
                    any_of(connection, ENTRY.c.refers_to, list(shown.seqs)),
                ),
            )
        )
        held = [
            seq
            for seq, refers_to, details in candidates
            if seq not in reads and shown.shown_by(orjson.loads(details or "{}"), refers_to)
        ]
        # Only the reads that held the pupil's entries are decoded whole.
        reads.update((read.seq, read) for read in entries_at(connection, held))
    return [reads[seq] for seq in sorted(reads)]


class ShownEntries:
    """A pupil's own entries (not reads), seq order, and whether a read showed any: it
    opened one, opened an incident listing one, or its search or export covered one.

    Auditors repeat the same searches, so the entries a filter matches are worked out once
    per distinct filter; each read then only checks its window of seqs.
    """

    def __init__(self, own: Sequence[Entry]) -> None:
        self.own = own
        self.seqs = {e.seq for e in own}
        self._matching: dict[tuple[tuple[str, Any], ...], list[int]] = {}

    def shown_by(self, details: dict[str, Any], refers_to: int | None = None) -> bool:
        if refers_to in self.seqs or not self.seqs.isdisjoint(details.get("entries", ())):
            return True
        filters = details.get("filters")
        if filters is None:
            return False
        matching = self._matching_seqs(filters)
        first_after = bisect.bisect_right(matching, details["after_seq"])
        return first_after < len(matching) and matching[first_after] <= details["through_seq"]

    def _matching_seqs(self, filters: dict[str, Any]) -> list[int]:
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in filters.items()))
        if key not in self._matching:
            self._matching[key] = [
                e.seq
                for e in self.own
                if all(_matches(e, name, value) for name, value in filters.items())
            ]
        return self._matching[key]


def _matches(entry: Entry, name: str, value: Any) -> bool:
    """One filter of :class:`Filters`, as the query applies it, on a decoded entry."""
    if name in ("recipient", "event_type", "decision", "kind"):
        return bool(getattr(entry, name) == value)
    if name == "schools":
        return entry.school in value
    if name in ("rule", "category", "pupil_key"):
        listed = {"rule": "rules", "category": "categories", "pupil_key": "pupil_keys"}[name]
        return value in getattr(entry, listed)
    occurred = entry.occurred_at
    if occurred is None:
        return False
    return bool(occurred >= value if name == "since" else occurred < value)
