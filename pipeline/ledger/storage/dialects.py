"""What differs between the ledger's two databases, kept in one place: SQLite (the default,
one file beside the worker) and PostgreSQL (production, a server several workers share).

Everything else speaks SQLAlchemy and is the same on both. Code that needs a difference
asks the :class:`Dialect` of its connection (:func:`dialect_of`) rather than testing the
dialect's name, so that a third database would be one more subclass here, and each
difference is said once, with why.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    URL,
    Connection,
    Engine,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.sql.elements import TextClause

from pipeline.ledger.storage.errors import LedgerError

#: SQLite's page cache while a check streams the chain (KiB): it reads each page once, in
#: order, so the large cache the ledger's connections keep for the writer buys it nothing,
#: and on a ledger of millions of entries would be most of the check's memory.
VERIFY_CACHE_KIB = 8192

#: The execution option of a connection that appends: on SQLite its transaction begins
#: with the write lock.
WRITER = "sharing_audit_writer"

#: How often, and how far apart, a scrub that readers hold back is tried again.
_TRIES, _PAUSE = 5, 0.2


class Dialect(ABC):
    """One database's ways: what every database must say, and what most do alike."""

    name: str
    #: A parameter's marker in SQL passed straight to the driver (``exec_driver_sql``).
    marker: str
    #: Digests and pupil keys kept as 32 bytes (a server's storage and indexes halve),
    #: rather than as their 64 hex characters.
    packs_digests: bool
    #: A server, answering over a connection and shared by several processes: they append
    #: under a lock on the chain's head row (SQLite's one writer locks the whole file), and
    #: a reader gains by fetching ahead while it works (in one process SQLite would only
    #: contend).
    server: bool

    @abstractmethod
    def engine(self, url: URL, pool: dict[str, Any]) -> Engine:
        """An engine of ``url`` set up for the ledger's locking and queries, its pool
        made with ``pool`` (SQLAlchemy's ``create_engine`` arguments)."""

    @abstractmethod
    def any_of(self, column: Any, values: Sequence[Any]) -> Any:
        """``column IN values`` as one parameter: a statement that stays the same
        whatever the number of values is compiled once and cached, where an IN list of a
        thousand is expanded afresh every time."""

    @abstractmethod
    def among(self, column: str) -> str:
        """``column`` is one of the integers in one parameter (:meth:`listed`), in SQL
        passed straight to the driver: :meth:`any_of` for a read that bypasses SQLAlchemy's
        expressions (the tree's), the same text however many values it is given. Integers
        alone: PostgreSQL reads the parameter as an array of bigint."""

    @abstractmethod
    def listed(self, values: Sequence[Any]) -> Any:
        """The parameter that :meth:`among` and :meth:`any_of` take for ``values``."""

    @abstractmethod
    def json_text(self, column: Any, key: str) -> Any:
        """The text at ``key`` of the JSON object in ``column`` (NULL where absent)."""

    @abstractmethod
    def triggers(self) -> TextClause:
        """(table, trigger) for every trigger the database's own tables carry."""

    def one_snapshot(self, connection: Connection) -> Connection:
        """``connection`` reading one snapshot throughout, for a check of the whole
        chain while the worker appends."""
        return connection

    @contextlib.contextmanager
    def streaming(self, connection: Connection) -> Iterator[None]:
        """``connection`` set up to stream the whole chain once; as it was after."""
        yield

    @contextlib.contextmanager
    def binary_results(self, connection: Connection) -> Iterator[None]:
        """Statements run on ``connection`` meanwhile answer in the database's binary form,
        where it has one: for the reads of many entries' packed texts (a pupil's page, a
        report's entries and leaves, a check of the chain). The cursor a statement makes
        keeps the form while its rows are read; the connection is as it was after."""
        yield

    def reader(self, connection: Connection) -> Connection:
        """Where a check reads stored tree nodes while the chain streams in on
        ``connection``. Hand it back to :meth:`close_reader`."""
        return connection

    def close_reader(self, connection: Connection, reader: Connection) -> None:
        if reader is not connection:
            reader.close()

    @abstractmethod
    def scrub(self, engine: Engine, table: str) -> str:
        """Overwrite what rows deleted from ``table`` left in the database's files; says
        what was done (``zeroed``, ``rewritten``, or ``not yet: why``)."""


class _SQLite(Dialect):
    name, marker, packs_digests, server = "sqlite", "?", False, False

    def engine(self, url: URL, pool: dict[str, Any]) -> Engine:
        private_file(url.database)
        engine = create_engine(url, connect_args={"timeout": 60}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
            # Let SQLAlchemy, not the driver, say when a transaction begins ...
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA cache_size=-131072")
            # A deleted row's bytes (an erased pupil's UPN) and the pages it frees are
            # overwritten with zeros, not left in the file for anyone holding it to read.
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            # ... and let a writer begin with the write lock, so writers serialise on the
            # chain instead of failing when a read lock cannot be upgraded.
            immediate = connection.get_execution_options().get(WRITER, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def any_of(self, column: Any, values: Sequence[Any]) -> Any:
        # A JSON array through json_each: SQLite has no array parameter.
        table = func.json_each(bindparam(None, self.listed(values)))
        return column.in_(select(table.table_valued("value").c.value).scalar_subquery())

    def among(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def listed(self, values: Sequence[Any]) -> Any:
        return orjson.dumps(list(values)).decode()

    def json_text(self, column: Any, key: str) -> Any:
        return func.json_extract(column, f'$."{key}"')

    def triggers(self) -> TextClause:
        return text("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")

    @contextlib.contextmanager
    def streaming(self, connection: Connection) -> Iterator[None]:
        before = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
        connection.exec_driver_sql(f"PRAGMA cache_size=-{VERIFY_CACHE_KIB}")
        try:
            yield
        finally:
            connection.exec_driver_sql(f"PRAGMA cache_size={before}")

    def scrub(self, engine: Engine, table: str) -> str:
        # A deleted row is zeroed where it lay (secure_delete, set on every connection),
        # but an older copy of its page may still be in the WAL: checkpointed into the
        # database and truncated. A reader mid-transaction holds that back.
        with engine.connect() as connection:
            for _ in range(_TRIES):
                busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
                if not busy:
                    return "zeroed"
                time.sleep(_PAUSE)
        return "not yet: a reader held the WAL; it is cleared at the next checkpoint"


#: The next transaction id: a snapshot taken from it on cannot see a row deleted before.
_NEXT_XID = "SELECT xid(pg_snapshot_xmax(pg_current_snapshot()))::text"
#: How many of what holds back what VACUUM may remove are older than the id given: other
#: sessions' snapshots, and their transaction ids too (a transaction that has written and
#: sits between statements holds no snapshot, yet VACUUM FULL keeps every row deleted
#: after its id began, as a test found), prepared transactions and replication slots.
_OLDER_SNAPSHOTS = (
    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
    "AND (age(backend_xmin) > age(CAST(%(next)s AS xid)) "
    "OR age(backend_xid) > age(CAST(%(next)s AS xid)))) "
    "+ (SELECT count(*) FROM pg_prepared_xacts "
    "WHERE age(transaction) > age(CAST(%(next)s AS xid))) "
    "+ (SELECT count(*) FROM pg_replication_slots "
    "WHERE age(xmin) > age(CAST(%(next)s AS xid)))"
)


@functools.cache
def _binary_cursors() -> tuple[type[Any], type[Any]]:
    """Cursors whose results come in PostgreSQL's binary form, client-side and server-side
    (made on first use: psycopg is imported where PostgreSQL is used, not by every
    command)."""
    import psycopg

    class Binary(psycopg.Cursor[Any]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.format = psycopg.pq.Format.BINARY

    class BinaryStreamed(psycopg.ServerCursor[Any]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.format = psycopg.pq.Format.BINARY

    return Binary, BinaryStreamed


class _PostgreSQL(Dialect):
    name, marker, packs_digests, server = "postgresql", "%s", True, True

    def engine(self, url: URL, pool: dict[str, Any]) -> Engine:
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        # No server-side prepared statements: a statement prepared once is soon run on the
        # server's generic plan, which cannot use a partial index through a parameter
        # (kind = $1 against the event-id index's kind = 'decision', upn <> $2 against the
        # UPN index's): chosen while the tables were small, it scanned them whole as they
        # grew (bench/scale.py: the writer 14 to 20 times slower at 30,000 to 50,000).
        connect = {"prepare_threshold": None}
        return create_engine(url, pool_pre_ping=True, connect_args=connect, **pool)

    @contextlib.contextmanager
    def binary_results(self, connection: Connection) -> Iterator[None]:
        # A bytea comes as its bytes, not as hex text twice their size that the server
        # writes out and the driver reads back. Not for every statement: a type psycopg
        # has no binary reader for (int2vector, in SQLAlchemy's reflection) comes as bytes.
        driver: Any = connection.connection.driver_connection
        plain, streamed = driver.cursor_factory, driver.server_cursor_factory
        driver.cursor_factory, driver.server_cursor_factory = _binary_cursors()
        try:
            yield
        finally:
            driver.cursor_factory, driver.server_cursor_factory = plain, streamed

    def any_of(self, column: Any, values: Sequence[Any]) -> Any:
        return column == any_(bindparam(None, self.listed(values), type_=ARRAY(column.type)))

    def among(self, column: str) -> str:
        # Integers alone are asked for so (keys, numbers): an array of bigint holds any.
        return f"{column} = ANY(CAST(%s AS bigint[]))"

    def listed(self, values: Sequence[Any]) -> Any:
        return list(values)

    def json_text(self, column: Any, key: str) -> Any:
        return func.json_extract_path_text(cast(column, JSON), key)

    def triggers(self) -> TextClause:
        return text(
            "SELECT c.relname, t.tgname FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
        )

    def one_snapshot(self, connection: Connection) -> Connection:
        # SQLite's transaction is one snapshot already; PostgreSQL's read committed is not.
        if connection.in_transaction():
            return connection
        return connection.execution_options(isolation_level="REPEATABLE READ")

    def reader(self, connection: Connection) -> Connection:
        # A connection of its own, read beside the chain's stream (on SQLite, whose chain
        # no second thread reads, it would only contend). The nodes it reads lie under
        # leaves already in, which no append changes.
        return connection.engine.connect()

    def scrub(self, engine: Engine, table: str) -> str:
        # A deleted row's bytes stay in the table's file until the space is reused, and
        # plain VACUUM only marks them reusable: VACUUM FULL rewrites the table (small)
        # into a new file and truncates the old one; ANALYZE then replaces the statistics
        # kept of its columns, which sample its values (pg_stats). It copies into the new
        # file a deleted row that something older than the delete still holds back, so it
        # waits for that first. It needs the table's owner: another role is told so.
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                upto = {"next": connection.exec_driver_sql(_NEXT_XID).scalar_one()}
                for _ in range(_TRIES):
                    if not connection.exec_driver_sql(_OLDER_SNAPSHOTS, upto).scalar():
                        connection.exec_driver_sql(f"VACUUM (FULL, ANALYZE) {table}")
                        return "rewritten"
                    time.sleep(_PAUSE)
        except LedgerError as exc:
            return f"not yet: VACUUM FULL {table} was refused ({exc}); run it as its owner"
        return (
            "not yet: a transaction begun before the erasure could still see the row; "
            f"run VACUUM FULL {table} once it has ended"
        )


def private_file(path: str | None) -> None:
    """Make the SQLite file at ``path`` readable by its owner alone (0600), creating it
    empty if need be: it holds pupils' UPNs and dates of birth, and SQLite gives its WAL
    and shared-memory files the mode of the database file."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    # An existing file is never opened here: closing any descriptor of a SQLite file
    # drops every POSIX lock this process holds on it, under any connection to it.
    try:
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        elif os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:  # a folder that is not there, or not ours: SQLite will say so
        return


SQLITE, POSTGRESQL = _SQLite(), _PostgreSQL()
_BY_NAME: dict[str, Dialect] = {d.name: d for d in (SQLITE, POSTGRESQL)}


def dialect_named(name: str) -> Dialect:
    """The dialect SQLAlchemy calls ``name``; a database the ledger does not run on is a
    clear error rather than the other's ways."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise LedgerError(f"the ledger runs on SQLite or PostgreSQL, not {name}") from None


def dialect_of(bind: Connection | Engine) -> Dialect:
    """The dialect of a connection or an engine."""
    return dialect_named(bind.dialect.name)
