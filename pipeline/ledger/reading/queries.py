"""Reading the ledger: filtered entry streams, stats, current decisions.

Results stream in ``seq`` order in pages, so a year of a trust's entries never has to fit
in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, text

from pipeline.ledger.records.chain import ENTRY_FIELDS
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.models import RECIPIENT_INDEXED, holds
from pipeline.ledger.storage.store import (
    ENTRY,
    FACT,
    HEAD,
    PAYLOAD,
    PUPIL,
    PUPILS,
    Ledger,
    any_of,
    binary_results,
)
from pipeline.ledger.writing.ingest import UNKNOWN_PUPIL_NOTE
from pipeline.ledger.writing.outbox import alert_counts
from schemas.events import LIFECYCLE_TYPES

PAGE = 2_000
ENTRY_COLUMNS = (*ENTRY_FIELDS, "prev_hash", "hash")


@dataclass(frozen=True, slots=True)
class Filters:
    """What an auditor asks for. ``since``/``until`` are the ledger's UTC text, compared on
    ``occurred_at``; ``up_to_seq`` pins a result to the chain as it stood when it was asked
    for, so an export or a repeated page answers the same whatever was appended since."""

    pupil_key: str | None = None
    recipient: str | None = None
    event_type: str | None = None
    decision: str | None = None
    rule: str | None = None
    category: str | None = None
    kind: str | None = None
    since: str | None = None
    until: str | None = None
    after_seq: int = 0
    up_to_seq: int | None = None
    limit: int | None = None
    #: The schools (URNs) whose entries a reader confined to them may see; None: every
    #: school. Entries that belong to no school (reads, desk actions) are the trust's.
    schools: tuple[str, ...] | None = None

    def asked(self) -> dict[str, Any]:
        """The filters that were given, as recorded in an audited read."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in asdict(self).items()
            if value is not None and name not in ("after_seq", "limit", "up_to_seq")
        }


def _statement(filters: Filters, after: int) -> Any:
    statement, seq = _filtered(select(*(ENTRY.c[name] for name in ENTRY_COLUMNS)), filters)
    return statement.where(seq > after).order_by(seq)


def _filtered(statement: Any, filters: Filters) -> tuple[Any, Any]:
    """``statement`` narrowed to ``filters``, and the ``seq`` column to page and order by.

    A pupil filter joins its index table and pages on the index's own ``seq`` (its
    primary key is (the pupil's number, seq)), so a page of one pupil's entries is read
    in order from that index whatever the planner thinks of the rest. The index is not
    believed: each entry it finds must name the pupil in its hashed fields, so a row
    slipped into the index never puts another child's entry into an answer (``ledger
    verify`` names the row: :mod:`pipeline.ledger.integrity.projections`). A recipient
    filter reads the entry's own column, through its index (recipient, seq).
    """
    seq: Any = ENTRY.c.seq
    if filters.pupil_key is not None:
        statement = statement.join(PUPIL, PUPIL.c.seq == ENTRY.c.seq).where(
            PUPIL.c.pupil_key == filters.pupil_key,
            _listing(ENTRY.c.pupil_keys, filters.pupil_key),
        )
        seq = PUPIL.c.seq
    if filters.recipient is not None:
        # The index holds recipients of 200 characters at most: so does the search, which
        # the entry_recipient table (cut at 200) answered before it.
        statement = statement.where(ENTRY.c.recipient == filters.recipient, text(RECIPIENT_INDEXED))
    if filters.event_type is not None:
        statement = statement.where(ENTRY.c.event_type == filters.event_type)
    if filters.decision is not None:
        statement = statement.where(ENTRY.c.decision == filters.decision)
    if filters.rule is not None:
        statement = statement.where(_listing(ENTRY.c.rules, filters.rule))
    if filters.category is not None:
        statement = statement.where(_listing(ENTRY.c.categories, filters.category))
    if filters.kind is not None:
        statement = statement.where(ENTRY.c.kind == filters.kind)
    if filters.since is not None:
        statement = statement.where(ENTRY.c.occurred_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(ENTRY.c.occurred_at < filters.until)
    if filters.up_to_seq is not None:
        statement = statement.where(seq <= filters.up_to_seq)
    if filters.schools is not None:
        statement = statement.where(ENTRY.c.school.in_(filters.schools or ("",)))
    return statement, seq


def in_period(
    statement: Any, since: str | None, until: str | None, schools: Sequence[str] | None
) -> Any:
    """``statement`` narrowed to the events that occurred from ``since`` until before
    ``until`` (either open), of ``schools`` alone when given (none: no entry), as the
    reports over a period (RoPA, notice against practice, what-if) count them."""
    if since is not None:
        statement = statement.where(ENTRY.c.occurred_at >= since)
    if until is not None:
        statement = statement.where(ENTRY.c.occurred_at < until)
    if schools is not None:
        statement = statement.where(ENTRY.c.school.in_(schools or ("",)))
    return statement


def in_scope(entry: Entry | None, schools: tuple[str, ...] | None) -> bool:
    """Whether a reader confined to ``schools`` (None: every school) may see ``entry``."""
    return entry is not None and (schools is None or entry.school in schools)


def _listing(column: Any, value: str) -> Any:
    """``column`` (a stored JSON list of strings) holds ``value``: matched with its quotes,
    so that a search for ``sen`` never matches ``sensitive``."""
    return holds(column, orjson.dumps(value).decode())


def count(connection: Connection, filters: Filters) -> int:
    """How many entries match ``filters`` after ``after_seq`` (ignoring ``limit``): what
    an export of them streams, and its recorded read says it returned."""
    statement, seq = _filtered(select(func.count()).select_from(ENTRY), filters)
    return int(connection.execute(statement.where(seq > filters.after_seq)).scalar_one())


def nth_seq(connection: Connection, filters: Filters, n: int) -> int | None:
    """The ``seq`` of the ``n``-th entry (from 1) matching ``filters`` after ``after_seq``."""
    statement, seq = _filtered(select(ENTRY.c.seq), filters)
    statement = statement.where(seq > filters.after_seq).order_by(seq).offset(n - 1).limit(1)
    found = connection.execute(statement).scalar()
    return int(found) if found is not None else None


def entry_at(connection: Connection, seq: int) -> Entry | None:
    row = (
        connection.execute(
            select(*(ENTRY.c[name] for name in ENTRY_COLUMNS)).where(ENTRY.c.seq == seq)
        )
        .mappings()
        .first()
    )
    return Entry.from_row(row) if row is not None else None


def entries_at(connection: Connection, seqs: Sequence[int]) -> list[Entry]:
    """The entries with these seqs, in seq order."""
    rows = connection.execute(
        select(*(ENTRY.c[name] for name in ENTRY_COLUMNS))
        .where(any_of(connection, ENTRY.c.seq, seqs))
        .order_by(ENTRY.c.seq)
    ).mappings()
    return [Entry.from_row(row) for row in rows]


def pupils_named(connection: Connection, seqs: Sequence[int]) -> list[str]:
    """The pupils (pseudonyms) the entries ``seqs`` name in their hashed fields, each once,
    in seq order: read from the entries, not the pupil index, since what this answers
    may leave the school (an incident's notice)."""
    rows = connection.execute(
        select(ENTRY.c.pupil_keys)
        .where(any_of(connection, ENTRY.c.seq, list(seqs)))
        .order_by(ENTRY.c.seq)
    )
    named: dict[str, None] = {}
    for (keys,) in rows:
        named.update(dict.fromkeys(orjson.loads(keys)))
    return list(named)


#: What the rules judged of a sharing event that its entry's columns do not hold.
JUDGED_DATA = ("special_condition", "consent_ref", "channel", "oldest_record", "purpose")
#: What a lifecycle fact states, as the register keeps it (its pupil, by pseudonym, aside).
JUDGED_FACT = ("ref", "recipients", "categories", "left_on", "destination")


def judged(connection: Connection, entry: Entry) -> dict[str, Any]:
    """The fields of ``entry``'s event that the rules judged beyond those the entry holds:
    a sharing event's channel, Art 9 condition, consent reference and dates of its oldest
    records, from its payload; a lifecycle event's fact, from the register. A re-decision
    is of the event its first decision recorded; an act, or an event recorded with
    neither (rejected), has none."""
    seq = entry.refers_to if entry.kind == EntryKind.REEVALUATION else entry.seq
    if seq is None or entry.event_type is None:
        return {}
    body = connection.execute(select(PAYLOAD.c.body).where(PAYLOAD.c.seq == seq)).scalar()
    if body is not None:
        data = orjson.loads(body).get("data", {})
        return {name: data[name] for name in JUDGED_DATA if name in data}
    fact = connection.execute(select(FACT.c.fact).where(FACT.c.seq == seq)).scalar()
    if fact is not None:
        stated = orjson.loads(fact)
        return {name: stated[name] for name in JUDGED_FACT if name in stated}
    return {}


def referring_to(connection: Connection, seq: int) -> list[Entry]:
    """The later entries that refer to entry ``seq``: re-evaluations, actions, reads."""
    rows = connection.execute(
        select(*(ENTRY.c[name] for name in ENTRY_COLUMNS))
        .where(ENTRY.c.refers_to.is_not(None), ENTRY.c.refers_to == seq)
        .order_by(ENTRY.c.seq)
    ).mappings()
    return [Entry.from_row(row) for row in rows]


def entries(connection: Connection, filters: Filters = Filters()) -> Iterator[Entry]:
    """Entries matching ``filters`` in ``seq`` order.

    One query whose rows are fetched a page at a time (a server-side cursor on
    PostgreSQL), not one query per page: a page query's plan can sort everything that
    matches to find each page's first rows, which over a year's export is quadratic. A
    ``limit`` of at most a page (a screen's) is read in one round trip instead: the
    cursor's declare, the fetch that finds its end and its close were a third of a
    pupil's page on PostgreSQL.
    """
    statement = _statement(filters, filters.after_seq)
    if filters.limit is not None:
        statement = statement.limit(filters.limit)
    if filters.limit is None or filters.limit > PAGE:
        # Options of this statement alone: set on the connection, they would stay there.
        statement = statement.execution_options(stream_results=True, yield_per=PAGE)
    with binary_results(connection):
        result = connection.execute(statement)
    for row in result.mappings():
        yield Entry.from_row(row)


def stats(connection: Connection) -> dict[str, Any]:
    """Counts by kind, decision and event type, and the chain head; and how many
    lifecycle facts were about a pupil the ledger held no identity for at a school that
    had erased one (:func:`~pipeline.ledger.writing.ingest.facts_for_unknown_pupils`)."""

    def counts(column: Any) -> dict[str, int]:
        rows = connection.execute(select(column, func.count()).group_by(column)).all()
        return {str(value): int(n) for value, n in rows}

    head = connection.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
    first, last = connection.execute(
        select(func.min(ENTRY.c.recorded_at), func.max(ENTRY.c.recorded_at))
    ).one()
    # Each pupil the ledger named has one number: the pupils named, without reading the
    # index's rows (``ledger verify`` names a number no entry uses).
    pupils = connection.execute(select(func.count()).select_from(PUPILS)).scalar()
    alerts = alert_counts(connection)
    unknown = connection.execute(
        select(func.count()).where(
            ENTRY.c.kind == EntryKind.DECISION,
            ENTRY.c.event_type.in_(LIFECYCLE_TYPES),
            ENTRY.c.reasons.contains(UNKNOWN_PUPIL_NOTE, autoescape=True),
        )
    ).scalar_one()
    return {
        "entries": int(head.seq),
        "head_hash": head.hash,
        "first_recorded_at": first,
        "last_recorded_at": last,
        "pupils": int(pupils or 0),
        "by_kind": counts(ENTRY.c.kind),
        "by_decision": counts(ENTRY.c.decision),
        "by_event_type": counts(ENTRY.c.event_type),
        "alerts": alerts,
        "facts_for_unknown_pupils": int(unknown),
    }


def decisions_by_verdict(connection: Connection) -> dict[str, int]:
    """How many records the ledger has decided, by first decision (allowed, review,
    breach, rejected); re-evaluations are not counted again."""
    rows = connection.execute(
        select(ENTRY.c.decision, func.count())
        .where(ENTRY.c.kind == EntryKind.DECISION)
        .group_by(ENTRY.c.decision)
    )
    return {str(decision): int(n) for decision, n in rows}


def entry_count(connection: Connection, kind: EntryKind = EntryKind.DECISION) -> int:
    """How many entries of ``kind`` the ledger holds (by default: records decided)."""
    count = connection.execute(
        select(func.count()).select_from(ENTRY).where(ENTRY.c.kind == kind)
    ).scalar_one()
    return int(count)


def current_decisions(connection: Connection) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every recorded event id's current decision and violated rules."""
    ids = (
        connection.execute(
            select(ENTRY.c.event_id).where(
                ENTRY.c.kind == EntryKind.DECISION,
                ENTRY.c.refers_to.is_(None),
                ENTRY.c.event_id.is_not(None),
            )
        )
        .scalars()
        .all()
    )
    out = {}
    for start in range(0, len(ids), 5_000):
        for entry in Ledger.decisions_for(connection, ids[start : start + 5_000]):
            assert entry.event_id is not None and entry.decision is not None  # asked for
            out[entry.event_id] = (entry.decision, entry.rules)
    return out
