"""Reading the ledger: filtered entry streams, the whole chain for verification, stats.

Results stream in ``seq`` order in pages, so a year of a trust's entries never has to fit
in memory.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass
from queue import Empty, Queue
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from pipeline.ledger.chain import (
    ENTRY_FIELDS,
    JSON_FIELDS,
    Verification,
    verify_links,
)
from pipeline.ledger.checkpoints import checkpoint_faults
from pipeline.ledger.outbox import alert_counts
from pipeline.ledger.sides import identity_faults, side_faults
from pipeline.ledger.store import ENTRY, HEAD, PUPIL, RECIPIENT, Ledger, any_of
from pipeline.ledger.tree import tree_faults
from pipeline.pseudonym import Pseudonymiser
from pipeline.transparency.note import Verifier

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


def decoded(row: Any) -> dict[str, Any]:
    """A stored entry with its JSON fields decoded, in the ledger's field order."""
    entry = {name: row[name] for name in ENTRY_COLUMNS}
    for name in JSON_FIELDS:
        if entry[name] is not None:
            entry[name] = orjson.loads(entry[name])
    return entry


def _statement(filters: Filters, after: int) -> Any:
    statement, seq = _filtered(select(*(ENTRY.c[name] for name in ENTRY_COLUMNS)), filters)
    return statement.where(seq > after).order_by(seq)


def _filtered(statement: Any, filters: Filters) -> tuple[Any, Any]:
    """``statement`` narrowed to ``filters``, and the ``seq`` column to page and order by.

    A pupil or recipient filter joins its index table and pages on the index's own
    ``seq`` (its primary key is (key, seq)), so a page of one pupil's entries is read in
    order from that index whatever the planner thinks of the rest.
    """
    seq = ENTRY.c.seq
    if filters.pupil_key is not None:
        statement = statement.join(PUPIL, PUPIL.c.seq == ENTRY.c.seq).where(
            PUPIL.c.pupil_key == filters.pupil_key
        )
        seq = PUPIL.c.seq
    if filters.recipient is not None:
        statement = statement.join(RECIPIENT, RECIPIENT.c.seq == ENTRY.c.seq).where(
            RECIPIENT.c.recipient == filters.recipient
        )
        seq = RECIPIENT.c.seq if seq is ENTRY.c.seq else seq
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


def in_scope(entry: dict[str, Any] | None, schools: tuple[str, ...] | None) -> bool:
    """Whether a reader confined to ``schools`` (None: every school) may see ``entry``."""
    return entry is not None and (schools is None or entry["school"] in schools)


def _listing(column: Any, value: str) -> Any:
    """``column`` (a stored JSON list of strings) holds ``value``: matched with its quotes,
    so that a search for ``sen`` never matches ``sensitive``."""
    return column.contains(orjson.dumps(value).decode(), autoescape=True)


def count(connection: Connection, filters: Filters) -> int:
    """How many entries match ``filters`` (ignoring ``after_seq`` and ``limit``)."""
    statement, _ = _filtered(select(func.count()).select_from(ENTRY), filters)
    return int(connection.execute(statement).scalar_one())


def nth_seq(connection: Connection, filters: Filters, n: int) -> int | None:
    """The ``seq`` of the ``n``-th entry (from 1) matching ``filters`` after ``after_seq``."""
    statement, seq = _filtered(select(ENTRY.c.seq), filters)
    statement = statement.where(seq > filters.after_seq).order_by(seq).offset(n - 1).limit(1)
    found = connection.execute(statement).scalar()
    return int(found) if found is not None else None


def entry_at(connection: Connection, seq: int) -> dict[str, Any] | None:
    row = (
        connection.execute(
            select(*(ENTRY.c[name] for name in ENTRY_COLUMNS)).where(ENTRY.c.seq == seq)
        )
        .mappings()
        .first()
    )
    return decoded(row) if row is not None else None


def entries_at(connection: Connection, seqs: Sequence[int]) -> list[dict[str, Any]]:
    """The entries with these seqs, in seq order."""
    rows = connection.execute(
        select(*(ENTRY.c[name] for name in ENTRY_COLUMNS))
        .where(any_of(connection, ENTRY.c.seq, seqs))
        .order_by(ENTRY.c.seq)
    ).mappings()
    return [decoded(row) for row in rows]


def referring_to(connection: Connection, seq: int) -> list[dict[str, Any]]:
    """The later entries that refer to entry ``seq``: re-evaluations, actions, reads."""
    rows = connection.execute(
        select(*(ENTRY.c[name] for name in ENTRY_COLUMNS))
        .where(ENTRY.c.refers_to.is_not(None), ENTRY.c.refers_to == seq)
        .order_by(ENTRY.c.seq)
    ).mappings()
    return [decoded(row) for row in rows]


def entries(connection: Connection, filters: Filters = Filters()) -> Iterator[dict[str, Any]]:
    """Entries matching ``filters`` in ``seq`` order.

    One query whose rows are fetched a page at a time (a server-side cursor on
    PostgreSQL), not one query per page: a page query's plan can sort everything that
    matches to find each page's first rows, which over a year's export is quadratic.
    """
    statement = _statement(filters, filters.after_seq)
    if filters.limit is not None:
        statement = statement.limit(filters.limit)
    streamed = connection.execution_options(stream_results=True, yield_per=PAGE)
    for row in streamed.execute(statement).mappings():
        yield decoded(row)


_DONE = object()


def prefetched(pages: Iterator[Any], depth: int = 2) -> Generator[Any, None, None]:
    """``pages``, fetched by a thread of their own up to ``depth`` ahead: the database
    produces the next page (on another core, for a server) while this one is hashed.
    The thread alone touches the connection until the pages are done or given up."""
    queue: Queue[Any] = Queue(maxsize=depth)
    stop = threading.Event()

    def fetch() -> None:
        try:
            for page in pages:
                if stop.is_set():
                    return
                queue.put(page)
            queue.put(_DONE)
        except BaseException as exc:  # handed to the reader, raised there
            queue.put(exc)

    thread = threading.Thread(target=fetch, name="ledger-prefetch", daemon=True)
    thread.start()
    try:
        while (page := queue.get()) is not _DONE:
            if isinstance(page, BaseException):
                raise page
            yield page
    finally:
        stop.set()
        while thread.is_alive():  # let a fetch blocked on a full queue finish
            with contextlib.suppress(Empty):
                queue.get(timeout=0.05)
        thread.join()


def _stored_chain(connection: Connection) -> Iterator[tuple[dict[str, Any], str, str]]:
    """Every entry as stored, as (hashed fields, prev_hash, hash), JSON fields as
    fragments of their stored text: nothing is decoded or copied to be checked. The
    fields come in sorted order, which canonical JSON then has little left to sort."""
    names = sorted(ENTRY_FIELDS)
    columns = ", ".join(f'"{c}"' for c in (*names, "prev_hash", "hash"))
    result = connection.execution_options(stream_results=True, yield_per=PAGE).exec_driver_sql(
        f"SELECT {columns} FROM ledger_entry ORDER BY seq"
    )
    width = len(names)
    fragment = orjson.Fragment
    pages = result.partitions(PAGE)  # fetched a page at a time, not row by row
    if connection.dialect.name != "sqlite":  # in this process, SQLite would only contend
        pages = prefetched(pages)
    for page in pages:
        for row in page:
            fields = dict(zip(names, row, strict=False))  # stops at the hashed fields
            for name in JSON_FIELDS:
                value = fields[name]
                if value is not None:
                    fields[name] = fragment(value)
            yield fields, row[width], row[width + 1]


def verify(
    connection: Connection, pseudonyms: Pseudonymiser | None = None, log: Verifier | None = None
) -> Verification:
    """Recompute the whole chain; check the chain head agrees with the last entry, the
    rows beside the chain with what it says of them (:mod:`pipeline.ledger.sides`): facts
    and payloads always, identity rows when ``pseudonyms`` (the key) is given; and the
    Merkle tree and the checkpoints kept against the entries (their signatures too, when
    ``log``, the log's verifier key, is given).

    Everything is read in one snapshot, so that entries appended meanwhile (a live
    worker) are not taken for a head without its entries: SQLite's transaction is one
    already; PostgreSQL's is made repeatable read when it has not begun."""
    if connection.dialect.name == "postgresql" and not connection.in_transaction():
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    leaves = bytearray()
    result = verify_links(_stored_chain(connection), leaves)
    if not result.ok:
        return result
    head = connection.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
    if (head.seq, head.hash) != (result.head_seq, result.head_hash):
        return Verification(
            result.count,
            result.head_seq,
            result.head_hash,
            result.head_seq + 1,
            f"missing: the chain head records seq {head.seq}, the last entry is "
            f"seq {result.head_seq}",
        )
    faults = side_faults(connection)
    if pseudonyms is not None:
        faults += identity_faults(connection, pseudonyms)
    tree = tree_faults(connection, leaves)
    faults += tree or checkpoint_faults(connection, log)  # a faulty tree proves no root
    if faults:
        seq, fault = min(faults)
        return Verification(
            min(seq - 1, result.count), result.head_seq, result.head_hash, seq, fault
        )
    return result


def stats(connection: Connection) -> dict[str, Any]:
    """Counts by kind, decision and event type, and the chain head."""

    def counts(column: Any) -> dict[str, int]:
        rows = connection.execute(select(column, func.count()).group_by(column)).all()
        return {str(value): int(n) for value, n in rows}

    head = connection.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
    first, last = connection.execute(
        select(func.min(ENTRY.c.recorded_at), func.max(ENTRY.c.recorded_at))
    ).one()
    pupils = connection.execute(select(func.count(func.distinct(PUPIL.c.pupil_key)))).scalar()
    alerts = alert_counts(connection)
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
    }


def decisions_by_verdict(connection: Connection) -> dict[str, int]:
    """How many records the ledger has decided, by first decision (allowed, review,
    breach, rejected); re-evaluations are not counted again."""
    rows = connection.execute(
        select(ENTRY.c.decision, func.count())
        .where(ENTRY.c.kind == "decision")
        .group_by(ENTRY.c.decision)
    )
    return {str(decision): int(n) for decision, n in rows}


def entry_count(connection: Connection, kind: str = "decision") -> int:
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
                ENTRY.c.kind == "decision",
                ENTRY.c.refers_to.is_(None),
                ENTRY.c.event_id.is_not(None),
            )
        )
        .scalars()
        .all()
    )
    out = {}
    for start in range(0, len(ids), 5_000):
        for row in Ledger.decisions_for(connection, ids[start : start + 5_000]):
            out[row["event_id"]] = (row["decision"], tuple(orjson.loads(row["rules"])))
    return out
