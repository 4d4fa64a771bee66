"""The ledger database: appends under the chain-head lock, and the reads the engine needs.

Appends go in batches, each batch in one transaction that first locks the chain head
(``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so several
writers never fork the chain and a batch is recorded whole or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    func,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from pipeline.canonical import canonical_json
from pipeline.ledger.records.chain import ENTRY_FIELDS, link_hash, stored_form
from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.records.payloads import oldest_record_in
from pipeline.ledger.storage import decision_projection, incident_projection
from pipeline.ledger.storage.dialects import WRITER, dialect_named, dialect_of
from pipeline.ledger.storage.errors import (
    LedgerBusy,
    LedgerError,
    NotADatabase,
    translate_driver_errors,
)
from pipeline.ledger.storage.models import (
    AlertOutbox,
    ChainHead,
    EntryPupil,
    EventPayload,
    LedgerEntry,
    PupilIdentity,
    PupilNumber,
    RegisterFact,
    rows_packer,
)
from pipeline.ledger.storage.tree import COLUMNS, TREE, RightEdge
from pipeline.transparency.merkle import leaf_hash

ENTRY: Table = LedgerEntry.__table__  # type: ignore[attr-defined]
ENTRY_PUPIL: Table = EntryPupil.__table__  # type: ignore[attr-defined]
PUPILS: Table = PupilNumber.__table__  # type: ignore[attr-defined]
#: Which entries name which pupil, by pseudonym, as every reader asks: the pupil index
#: (filed under pupils' numbers) joined to the numbers' pseudonyms. A plain join in a
#: subquery, which both databases fold into the query that reads it.
PUPIL = (
    select(PUPILS.c.pupil_key, ENTRY_PUPIL.c.seq)
    .join_from(ENTRY_PUPIL, PUPILS, PUPILS.c.id == ENTRY_PUPIL.c.pupil)
    .subquery("entry_pupil_keyed")
)
FACT: Table = RegisterFact.__table__  # type: ignore[attr-defined]
PAYLOAD: Table = EventPayload.__table__  # type: ignore[attr-defined]
IDENTITY: Table = PupilIdentity.__table__  # type: ignore[attr-defined]
HEAD: Table = ChainHead.__table__  # type: ignore[attr-defined]
OUTBOX: Table = AlertOutbox.__table__  # type: ignore[attr-defined]

_STORED = itemgetter(*ENTRY_FIELDS)


def utc_text(moment: datetime) -> str:
    """An instant as fixed-width UTC text, so that text order is time order."""
    # isoformat, not strftime: the same text, in a fraction of the time (and its "+00:00"
    # cut off rather than the zone replaced first, which costs as much again).
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def from_utc_text(text: str) -> datetime:
    """The instant :func:`utc_text` wrote."""
    return datetime.fromisoformat(text)


def now_text() -> str:
    return utc_text(datetime.now(UTC))


#: The MAC of an identity row (pseudonym, UPN, date of birth) under the pseudonym key.
Seal = Callable[[str, str, str | None], str]


def side_digest(text: str) -> str:
    """The digest binding a side row's stored text into its entry's hashed fields."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class NewEntry:
    """An entry to append (its ``seq`` already allocated) and the rows beside it."""

    entry: Entry
    payload: dict[str, Any] | None = None
    fact: dict[str, Any] | None = None
    identities: list[tuple[str, str, str | None]] = field(default_factory=list)
    alert: tuple[str, dict[str, Any]] | None = None  # severity, and the alert without seq
    leaf: bytes | None = None  # the entry's RFC 6962 leaf hash, set once appended


#: Seconds a request waits for a free connection before it is told to come back (503).
POOL_WAIT = 5.0


def shown_url(url: str) -> str:
    """A database URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


class _BoundedPool(QueuePool):
    """A pool whose wait for a free connection ends in the ledger's own error."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeout:
            raise LedgerBusy(f"no connection came free within {POOL_WAIT:g} s") from None


def make_engine(url: str, pool_size: int | None = None) -> Engine:
    """A SQLAlchemy engine set up for the ledger's locking on SQLite or PostgreSQL, its
    errors in the ledger's words (:mod:`pipeline.ledger.storage.errors`).

    ``pool_size``, for a server: that many connections kept, as many again opened for a
    moment of need, and a wait of at most :data:`POOL_WAIT` for one beyond that.
    """
    try:
        engine = _engine(url, pool_size)
    except ArgumentError:
        raise NotADatabase("not a database URL") from None
    translate_driver_errors(engine)
    return engine


def _engine(url: str, pool_size: int | None) -> Engine:
    parsed = make_url(url)
    pool: dict[str, Any] = {}
    if pool_size is not None:
        pool = {
            "poolclass": _BoundedPool,
            "pool_size": pool_size,
            "max_overflow": pool_size,
            "pool_timeout": POOL_WAIT,
        }
    try:
        dialect = dialect_named(parsed.get_backend_name())
    except LedgerError:
        raise NotADatabase(
            f"not a database URL the ledger runs on (SQLite or PostgreSQL, not "
            f"{parsed.get_backend_name()})"
        ) from None
    return dialect.engine(parsed, pool)


@dataclass(slots=True)
class _SideRows:
    """The rows a batch of entries brings beside the chain: payloads, facts, alerts."""

    payloads: list[tuple[int, str, str | None]] = field(default_factory=list)
    facts: list[tuple[int, str, str]] = field(default_factory=list)
    alerts: list[tuple[int, str, str, str]] = field(default_factory=list)

    def add(self, new: NewEntry, seq: int) -> dict[str, str]:
        """Take ``new``'s side rows; the digest of each, by name, to bind into the entry."""
        bound: dict[str, str] = {}
        if new.payload is not None:
            body = canonical_json(new.payload).decode()
            self.payloads.append((seq, body, oldest_record_in(new.payload)))
            bound["payload"] = side_digest(body)
        if new.fact is not None:
            fact = canonical_json(new.fact).decode()
            self.facts.append((seq, new.fact["pupil_key"], fact))
            bound["fact"] = side_digest(fact)
        if new.alert is not None:
            severity, alert = new.alert
            body = canonical_json({**alert, "seq": seq}).decode()
            self.alerts.append((seq, severity, body, new.entry.recorded_at))
            bound["alert"] = side_digest(body)
        return bound


@dataclass(slots=True)
class _Projected:
    """What a batch of entries changes of the projections kept beside the chain (DESIGN
    invariant 10): each event's current decision, and the desk's incidents."""

    redecisions: list[tuple[int, int, str | None]] = field(default_factory=list)
    alerts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    actions: list[tuple[int, int | None, Mapping[str, Any]]] = field(default_factory=list)

    def add(self, new: NewEntry, entry: Entry) -> None:
        seq = entry.seq
        if entry.kind == EntryKind.REEVALUATION and entry.refers_to is not None:
            self.redecisions.append((entry.refers_to, seq, entry.decision))
        elif entry.kind == EntryKind.INCIDENT_ACTION:
            self.actions.append((seq, entry.refers_to, entry.details or {}))
        if new.alert is not None:
            self.alerts.append((seq, {**new.alert[1], "seq": seq}))

    def keep(self, connection: Connection) -> None:
        """Write the changes, in the append's transaction."""
        decision_projection.keep(connection, self.redecisions)
        incident_projection.keep(connection, self.alerts, self.actions)


#: Where a transaction holding the chain-head lock keeps the head (see :meth:`Ledger.locked`).
_LOCKED_HEAD = "sharing_audit_locked_head"


class Ledger:
    """One ledger database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = dialect_of(engine)
        self.edge = RightEdge()  # the Merkle tree's right edge, between appends

    @classmethod
    def open(cls, url: str) -> Ledger:
        return cls(make_engine(url))

    @contextmanager
    def locked(self) -> Iterator[Connection]:
        """A transaction holding the chain-head lock; commits on leaving, else rolls back.

        On PostgreSQL the head is read as it is locked and kept with the transaction,
        moved by each :meth:`append`: the steps inside ask :meth:`head` without another
        round trip each (three of an audited read's fifteen)."""
        with self.engine.connect() as connection:
            connection = connection.execution_options(**{WRITER: True})
            with connection.begin():
                try:
                    if self.dialect.server:  # SQLite's one writer locks the whole file
                        row = connection.execute(
                            select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1).with_for_update()
                        ).one()
                        connection.info[_LOCKED_HEAD] = (int(row.seq), str(row.hash))
                    yield connection
                finally:
                    connection.info.pop(_LOCKED_HEAD, None)

    @staticmethod
    def head(connection: Connection) -> tuple[int, str]:
        held: tuple[int, str] | None = connection.info.get(_LOCKED_HEAD)
        if held is not None:
            return held
        row = connection.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
        return int(row.seq), str(row.hash)

    def append(
        self, connection: Connection, entries: Sequence[NewEntry], seal: Seal | None = None
    ) -> str:
        """Chain and insert ``entries`` (their seqs follow the head); returns the new head hash.

        Must run inside :meth:`locked`. The entries' ``seq`` must continue the chain.

        Every side row an entry brings is bound into its hashed fields, as the SHA-256 of
        the row's text under ``details["sides"]``, so that a fact, payload or alert
        changed, removed or inserted afterwards names the entry in ``ledger verify``. Identity rows
        are not hashed (they must stay erasable): ``seal`` gives each its MAC under the
        pseudonym key instead, and entries bringing identities need it.
        """
        if not entries:
            return self.head(connection)[1]
        head_seq, prev = self.head(connection)
        head_hash = prev
        rows: list[tuple[Any, ...]] = []
        pupils: list[tuple[str, int]] = []
        sides = _SideRows()
        identities: dict[str, tuple[str, str | None]] = {}
        leaves: list[bytes] = []
        projected = _Projected()
        for offset, new in enumerate(entries, 1):
            entry = new.entry
            seq = entry.seq
            if seq != head_seq + offset:
                raise ValueError(f"entry seq {seq} does not follow {head_seq + offset - 1}")
            bound = sides.add(new, seq)
            if bound:
                entry = entry.binding(bound)
            hashed = entry.hashed()
            leaf = canonical_json(hashed)  # the entry's leaf: what its chain hash covers
            digest = link_hash(prev, leaf)
            leaves.append(leaf)
            rows.append((*_STORED(stored_form(hashed)), prev, digest))
            prev = digest
            projected.add(new, entry)
            pupils.extend((k, seq) for k in dict.fromkeys(entry.pupil_keys))
            for key, upn, dob in new.identities:
                known = identities.get(key)
                identities[key] = (upn, dob or (known[1] if known else None))
        hashes = [leaf_hash(leaf) for leaf in leaves]
        for new, hashed_leaf in zip(entries, hashes, strict=True):
            new.leaf = hashed_leaf
        # Through the driver's executemany: at thousands of rows a batch, the ORM's
        # per-parameter processing would cost more than the database's work.
        for table, names, values in (
            (ENTRY, (*ENTRY_FIELDS, "prev_hash", "hash"), rows),
            (ENTRY_PUPIL, ("pupil", "seq"), self._numbered(connection, pupils)),
            (PAYLOAD, ("seq", "body", "oldest_record"), sides.payloads),
            (FACT, ("seq", "pupil_key", "fact"), sides.facts),
            (OUTBOX, ("seq", "severity", "body", "created_at"), sides.alerts),
            (TREE, COLUMNS, self.edge.rows(connection, head_seq, head_hash, prev, hashes)),
        ):
            if values:
                values = self._stored_rows(table, names, values)
                connection.exec_driver_sql(self._insert_statement(table, names), values)
        projected.keep(connection)
        if identities:
            if seal is None:
                raise ValueError("identity rows are written sealed: pass the pseudonymiser's MAC")
            self._upsert_identities(connection, identities, seal)
        connection.execute(
            update(HEAD).where(HEAD.c.id == 1).values(seq=head_seq + len(entries), hash=prev)
        )
        if _LOCKED_HEAD in connection.info:
            connection.info[_LOCKED_HEAD] = (head_seq + len(entries), prev)
        return prev

    def _numbered(
        self, connection: Connection, pupils: list[tuple[str, int]]
    ) -> list[tuple[int, int]]:
        """The rows (pupil's number, seq) of ``pupils`` (pseudonym, seq), numbering each
        pupil the ledger names for the first time after the last number given (under
        the chain's lock: no other append numbers at once)."""
        keys = list(dict.fromkeys(key for key, _ in pupils))
        if not keys:
            return []
        known = dict(
            connection.execute(
                select(PUPILS.c.pupil_key, PUPILS.c.id).where(
                    any_of(connection, PUPILS.c.pupil_key, keys)
                )
            ).all()
        )
        new = [key for key in keys if key not in known]
        if new:
            top = int(connection.execute(select(func.max(PUPILS.c.id))).scalar() or 0)
            numbered = {key: top + n for n, key in enumerate(new, 1)}
            connection.execute(
                PUPILS.insert(), [{"id": n, "pupil_key": k} for k, n in numbered.items()]
            )
            known.update(numbered)
        return [(known[key], seq) for key, seq in pupils]

    def _stored_rows(
        self, table: Table, names: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """``rows`` as the database keeps them (digests, payloads): the driver's
        executemany passes no value through the columns' types."""
        packed = rows_packer(table, names, self.dialect)
        return rows if packed is None else [packed(row) for row in rows]

    def _insert_statement(self, table: Table, names: Sequence[str], suffix: str = "") -> str:
        marker = self.dialect.marker
        columns = ", ".join(f'"{n}"' for n in names)
        return (
            f"INSERT INTO {table.name} ({columns}) "
            f"VALUES ({', '.join([marker] * len(names))}){suffix}"
        )

    def _upsert_identities(
        self, connection: Connection, identities: dict[str, tuple[str, str | None]], seal: Seal
    ) -> None:
        """Insert each pupil's identity, or give one already known the date of birth an
        event brings. The same statement on both dialects, through the driver's executemany
        (the dialect-specific insert construct cost more per row than the database's work).
        Most pupils are known already and most events bring no new date of birth: those
        rows are left as they are, not rewritten unchanged."""
        table = IDENTITY.name
        statement = self._insert_statement(
            IDENTITY,
            ("pupil_key", "upn", "dob", "mac"),
            f" ON CONFLICT (pupil_key) DO UPDATE SET dob = excluded.dob, mac = excluded.mac"
            f" WHERE excluded.dob IS NOT NULL"
            f" AND ({table}.dob IS NULL OR {table}.dob <> excluded.dob)",
        )
        connection.exec_driver_sql(
            statement, [(k, u, d, seal(k, u, d)) for k, (u, d) in identities.items()]
        )

    # -- reads the engine needs -----------------------------------------------------------

    @staticmethod
    def decisions_for(connection: Connection, event_ids: Iterable[str]) -> list[Entry]:
        """Each id's decision entry, with its current decision (the latest re-evaluation)."""
        firsts = _decision_entries(connection, event_ids, ENTRY.c.refers_to.is_(None))
        return _with_current(connection, firsts)

    @staticmethod
    def conflicts_for(connection: Connection, event_ids: Iterable[str]) -> list[Entry]:
        """Entries of arrivals that reused one of these ids with other content."""
        return _decision_entries(connection, event_ids, ENTRY.c.refers_to.is_not(None))

    @staticmethod
    def unkeyed_seen(
        connection: Connection, keys: Iterable[tuple[str | None, int | None, int | None, str]]
    ) -> dict[tuple[str | None, int | None, int | None, str], int]:
        """Entries already made for records without a usable id, by position and digest."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = connection.execute(
            select(
                ENTRY.c.seq,
                ENTRY.c.topic,
                ENTRY.c.partition,
                ENTRY.c.offset,
                ENTRY.c.payload_digest,
            ).where(
                ENTRY.c.kind == EntryKind.DECISION,
                ENTRY.c.event_id.is_(None),
                any_of(connection, ENTRY.c.payload_digest, [w[3] for w in wanted]),
            )
        ).all()
        return {(r.topic, r.partition, r.offset, r.payload_digest): r.seq for r in rows}

    @staticmethod
    def facts_for(
        connection: Connection, pupil_keys: Iterable[str]
    ) -> list[tuple[str, dict[str, Any]]]:
        """The register facts of these pupils, each with the URN of the school that
        recorded it: its entry's school, which the chain hashes, so facts stored before
        facts were kept by school are read the same way."""
        keys = list(dict.fromkeys(pupil_keys))
        if not keys:
            return []
        rows = connection.execute(
            select(ENTRY.c.school, FACT.c.fact)
            .join(ENTRY, ENTRY.c.seq == FACT.c.seq)
            .where(any_of(connection, FACT.c.pupil_key, keys))
        ).all()
        return [(r.school, orjson.loads(r.fact)) for r in rows]

    @staticmethod
    def affected_by(
        connection: Connection, since: Mapping[tuple[str, str], str]
    ) -> list[tuple[Entry, str]]:
        """Decided, non-rejected sharing events of the schools' pupils of ``since`` ((school
        URN, pupil key) to UTC text), each of that school and timed at or after the time
        given for one of its pupils there, with their current decisions, each with its
        pseudonymised payload's text; in seq order. Another school's events of the same
        pupil are never among them: a school's facts re-decide its own events alone.

        Two reads: first which entries, from four columns of the pupils' entries since the
        earliest time of all, then only those entries whole, with their payloads and current
        decisions. The entries of a pupil timed before their own time, most of what the
        first read finds in a trust's year, are never decoded.
        """
        if not since:
            return []
        candidates = connection.execute(
            select(PUPIL.c.pupil_key, PUPIL.c.seq, ENTRY.c.occurred_at, ENTRY.c.school)
            .join(ENTRY, ENTRY.c.seq == PUPIL.c.seq)
            .where(
                any_of(connection, PUPIL.c.pupil_key, list({key for _, key in since})),
                any_of(connection, ENTRY.c.school, list({school for school, _ in since})),
                ENTRY.c.occurred_at >= min(since.values()),
            )
        )
        seqs = sorted(
            {
                seq
                for key, seq, at, school in candidates
                if (first := since.get((school, key))) is not None and at >= first
            }
        )
        if not seqs:
            return []
        rows = (
            connection.execute(
                select(ENTRY, PAYLOAD.c.body)
                .join(PAYLOAD, PAYLOAD.c.seq == ENTRY.c.seq)
                .where(any_of(connection, ENTRY.c.seq, seqs))
                .order_by(ENTRY.c.seq)
            )
            .mappings()
            .all()
        )
        current = _with_current(connection, [Entry.from_row(r) for r in rows])
        return [(entry, row["body"]) for entry, row in zip(current, rows, strict=True)]

    @staticmethod
    def identities(
        connection: Connection, pupil_keys: Iterable[str]
    ) -> dict[str, tuple[str, str | None]]:
        keys = list(dict.fromkeys(pupil_keys))
        if not keys:
            return {}
        rows = connection.execute(
            select(IDENTITY.c.pupil_key, IDENTITY.c.upn, IDENTITY.c.dob).where(
                any_of(connection, IDENTITY.c.pupil_key, keys)
            )
        ).all()
        return {r.pupil_key: (r.upn, r.dob) for r in rows}


def binary_results(connection: Connection) -> AbstractContextManager[None]:
    """Statements run on ``connection`` meanwhile answer in the database's binary form
    (see :meth:`~pipeline.ledger.storage.dialects.Dialect.binary_results`): for a read of
    many entries' packed texts."""
    return dialect_of(connection).binary_results(connection)


def any_of(connection: Connection, column: Any, values: Sequence[Any]) -> Any:
    """``column IN values`` as one parameter (a JSON array on SQLite, an array on
    PostgreSQL): a statement that stays the same whatever the number of values is compiled
    once and cached, where an IN list of a thousand is expanded afresh every time."""
    return dialect_of(connection).any_of(column, values)


def _decision_entries(
    connection: Connection, event_ids: Iterable[str], condition: Any
) -> list[Entry]:
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return []
    statement = select(ENTRY).where(
        ENTRY.c.kind == EntryKind.DECISION,
        condition,
        ENTRY.c.event_id.is_not(None),  # lets SQLite use the partial unique indexes
        any_of(connection, ENTRY.c.event_id, ids),
    )
    return [Entry.from_row(r) for r in connection.execute(statement).mappings()]


def _with_current(connection: Connection, entries: list[Entry]) -> list[Entry]:
    """Each entry with the decision, rules and reasons of its current decision (its latest
    re-evaluation, as :mod:`pipeline.ledger.storage.decision_projection` keeps it)."""
    if not entries:
        return entries
    newest = {
        event: seq
        for event, (seq, _) in decision_projection.redecided(
            connection, (e.seq for e in entries)
        ).items()
    }
    if newest:
        current = {
            r.seq: r
            for r in connection.execute(
                select(ENTRY.c.seq, ENTRY.c.decision, ENTRY.c.rules, ENTRY.c.reasons).where(
                    any_of(connection, ENTRY.c.seq, list(newest.values()))
                )
            )
        }
        entries = [
            entry
            if (later := newest.get(entry.seq)) is None
            else entry.redecided(
                current[later].decision,
                orjson.loads(current[later].rules),
                orjson.loads(current[later].reasons),
            )
            for entry in entries
        ]
    return entries
