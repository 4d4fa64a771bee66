"""The ledger's tables.

Every table here but ``pupil_identity``, ``alert_outbox`` and ``chain_head`` is
append-only: the database refuses UPDATE and DELETE on it (triggers created by the
migrations). ``pupil_identity`` is the one place plain identifiers live, so that erasing
a pupil never touches a hashed row; ``alert_outbox`` holds alerts until the relay has
sent them; ``chain_head`` is the lock writers take so that several of them never fork the
chain.

Lists and objects are stored as canonical JSON text, the same bytes the hash covers.
Digests and pseudonyms are hex text to every reader; PostgreSQL keeps their raw bytes
(:class:`Digest`, migration 0015), and those quoted in an entry's pupils and details
(:class:`DigestJson`, migration 0020).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, bindparam, literal_column
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

from pipeline.ledger.records.payloads import packed_payload, unpacked_payload
from pipeline.ledger.storage.dialects import Dialect as Database
from pipeline.ledger.storage.dialects import dialect_named

#: The entries the recipient index holds: those naming a recipient of at most 200
#: characters (the contract's are 64 at most; PostgreSQL refuses an index entry of more
#: than about 2.7 KB, which a recipient recorded before the contract's pattern could be).
#: A search by recipient states it, as written, so that either database uses the index.
RECIPIENT_INDEXED = "length(recipient) <= 200"

#: A sequence number: on SQLite spelt INTEGER, so that as a primary key it is the rowid
#: (migration 0006 says why).
SEQ = BigInteger().with_variant(Integer(), "sqlite")

#: The prefix of a stored text that is not a digest's hex (see :func:`packed_digest`):
#: a byte no UTF-8 text holds, so the text after it is read back unchanged.
_NOT_HEX = b"\xff"


def packed_digest(text: str) -> bytes:
    """The bytes PostgreSQL keeps for a digest column's ``text``: a SHA-256's 32 raw bytes
    for its 64 lowercase hex digits, half the hex's room in the rows and the indexes.

    Any other text (a test's "v1", a pseudonym from before pseudonyms were digests) is
    kept as its UTF-8 after one or two ``0xff`` bytes, never 32 bytes long, so that
    :func:`unpacked_digest` gives back every text exactly as it was written: a hashed
    field must read back as the bytes its hash covers."""
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) == 32 and raw.hex() == text:
            return raw
    utf8 = text.encode()
    return (_NOT_HEX * 2 if len(utf8) == 31 else _NOT_HEX) + utf8


def unpacked_digest(stored: bytes) -> str:
    """The text :func:`packed_digest` packed into ``stored``."""
    if len(stored) == 32:
        return stored.hex()
    return bytes(stored).lstrip(_NOT_HEX).decode()


class _PackedOnServer(TypeDecorator[str]):
    """A text every reader gets back as written, which PostgreSQL keeps packed
    (``bytea``, what :meth:`packed` makes of it) and SQLite as the text."""

    cache_ok = True

    def packed(self, value: str) -> bytes:
        raise NotImplementedError

    def unpacked(self, stored: bytes) -> str:
        raise NotImplementedError

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect_named(dialect.name).packs_digests:
            return dialect.type_descriptor(LargeBinary())
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is None or not dialect_named(dialect.name).packs_digests:
            return value
        return self.packed(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or not dialect_named(dialect.name).packs_digests:
            return value  # type: ignore[no-any-return]
        return self.unpacked(value)


class Digest(_PackedOnServer):
    """A SHA-256 digest or a pseudonym: hex text in Python, on both databases. PostgreSQL
    stores :func:`packed_digest` (``bytea``); SQLite keeps the text, which its queries of
    many keys at once pass through ``json_each`` (see
    :func:`pipeline.ledger.storage.store.any_of`), where bytes cannot go. Statements that bypass
    SQLAlchemy's types pack the writer's rows with :func:`rows_packer`, and read
    (``ledger verify``, the tree) through :func:`read_columns`."""

    impl = String(64)
    cache_ok = True

    def packed(self, value: str) -> bytes:
        return packed_digest(value)

    def unpacked(self, stored: bytes) -> str:
        return unpacked_digest(stored)


class Deflated(TypeDecorator[str]):
    """An event's payload: its text in Python, on both databases deflated
    (:mod:`pipeline.ledger.records.payloads`, migration 0015)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else packed_payload(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else unpacked_payload(value)


#: A SHA-256 (or pseudonym) as JSON quotes it: what :func:`packed_json` keeps as bytes.
_QUOTED_DIGEST = re.compile(rb'"([0-9a-f]{64})"')
#: What stands for a quoted digest in :func:`packed_json`: a byte no UTF-8 text holds.
_DIGEST_MARK = 0xFF
#: The first byte of what :func:`packed_json` makes. A JSON text begins with ``[`` or
#: ``{``: the columns' check (migration 0020) refuses any value not beginning with this,
#: so a writer of an earlier version, which stored the text itself, records nothing.
JSON_FORMAT = b"\x01"


def packed_json(text: str) -> bytes:
    """The bytes PostgreSQL keeps for a JSON text (an entry's pupils or details): a
    format byte (:data:`JSON_FORMAT`), then the text's UTF-8, but each digest it quotes
    (64 lowercase hex digits between quotes, 66 bytes) as ``0xff`` and the digest's 32
    bytes. A census return names hundreds of pupils by pseudonym, and nearly every
    entry's details quote the digest of a row beside it: half of what those columns held
    was hex.

    Read back by :func:`unpacked_json`, exactly as written: UTF-8 never holds ``0xff``,
    so read from the start each mark is a digest's, whatever bytes its digest holds.
    Migration 0020 packs the rows written before it the same way, in SQL."""
    return JSON_FORMAT + packed_fragment(text)


def packed_fragment(text: str) -> bytes:
    """``text`` packed as :func:`packed_json` packs it, but for the format byte: what a
    search looks for inside a packed value."""
    return _QUOTED_DIGEST.sub(_digest_bytes, text.encode())


def _digest_bytes(found: re.Match[bytes]) -> bytes:
    return bytes((_DIGEST_MARK,)) + bytes.fromhex(found.group(1).decode())


def unpacked_json(stored: bytes) -> str:
    """The text :func:`packed_json` packed into ``stored``. Bytes it could not have made
    (a row edited behind the writer's back) still read as some text, never an error, so
    that ``ledger verify`` names the entry whose hash that text no longer matches."""
    stored = bytes(stored)
    listed = _unpacked_digest_list(stored)
    return listed if listed is not None else _unpacked_mark_by_mark(stored)


def _unpacked_mark_by_mark(stored: bytes) -> str:
    """:func:`unpacked_json` of any value: each mark found from the start, in turn."""
    parts: list[bytes] = []
    at = len(JSON_FORMAT) if stored.startswith(JSON_FORMAT) else 0
    while (mark := stored.find(_DIGEST_MARK, at)) >= 0:
        parts += [stored[at:mark], b'"', stored[mark + 1 : mark + 33].hex().encode(), b'"']
        at = mark + 33
    parts.append(stored[at:])
    return b"".join(parts).decode(errors="replace")


#: A digest as :func:`packed_json` keeps it in a list: its mark, its 32 bytes, a comma.
_LISTED_DIGEST = 1 + 32 + 1


def _unpacked_digest_list(stored: bytes) -> str | None:
    """What :func:`unpacked_json` reads from a packed list of digests alone (a census
    return's pupils: hundreds of them), read at once rather than mark by mark, which took
    a pupil's page at ten million entries most of its time; None for any other value.

    The same text as the general reading: the marks are where that reading finds them (at
    every :data:`_LISTED_DIGEST`-th byte, whatever the digests' own bytes), and all else
    is the brackets and commas."""
    body = stored[len(JSON_FORMAT) + 1 : -1]
    count = (len(body) + 1) // _LISTED_DIGEST
    if (
        not count
        or len(body) + 1 != count * _LISTED_DIGEST
        or stored[: len(JSON_FORMAT) + 1] != JSON_FORMAT + b"["
        or stored[-1:] != b"]"
        or body[::_LISTED_DIGEST] != bytes((_DIGEST_MARK,)) * count
        or body[_LISTED_DIGEST - 1 :: _LISTED_DIGEST] != b"," * (count - 1)
    ):
        return None
    # After the first mark, each digest is followed by a comma and the next mark: in hex,
    # cut after every such group by a character no hex holds, that is "2cff|" alone.
    hexed = body[1:].hex("|", -_LISTED_DIGEST)
    return '["' + hexed.replace("2cff|", '","') + '"]'


class DigestJson(_PackedOnServer):
    """An entry's JSON text that quotes digests (its pupils, its details): text in Python,
    on both databases. PostgreSQL stores :func:`packed_json` (``bytea``); SQLite keeps the
    text. Search it with :func:`holds`, which packs what it looks for the same way."""

    impl = Text
    cache_ok = True

    def packed(self, value: str) -> bytes:
        return packed_json(value)

    def unpacked(self, stored: bytes) -> str:
        return unpacked_json(stored)


class _Fragment(DigestJson):
    """What a search looks for in a :class:`DigestJson` column: packed alike, without
    the format byte that begins a whole value."""

    cache_ok = True

    def packed(self, value: str) -> bytes:
        return packed_fragment(value)


class _Found(ColumnElement[int]):
    """Where a fragment starts in a column's text, from 1; 0 where it does not (see
    :func:`holds`)."""

    inherit_cache = True
    type = Integer()
    # What a statement's cache key is made of: without it, every search would share one.
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own attribute)
        ("column", InternalTraversal.dp_clauseelement),
        ("fragment", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: Any, fragment: str) -> None:
        self.column = column
        # Bound as the column's own type: a DigestJson column's fragment is packed alike.
        kind = _Fragment() if isinstance(column.type, DigestJson) else column.type
        self.fragment = bindparam(None, fragment, type_=kind)


@compiles(_Found)
def _found_sqlite(element: _Found, compiler: SQLCompiler, **kw: Any) -> str:
    column, fragment = (compiler.process(e, **kw) for e in (element.column, element.fragment))
    return f"instr({column}, {fragment})"


@compiles(_Found, "postgresql")
def _found_postgresql(element: _Found, compiler: SQLCompiler, **kw: Any) -> str:
    column, fragment = (compiler.process(e, **kw) for e in (element.column, element.fragment))
    return f"position({fragment} IN {column})"


def holds(column: Any, fragment: str) -> ColumnElement[bool]:
    """Whether ``column``'s text holds ``fragment``, as it is (no wildcards, case
    counting): the one way to search inside a stored JSON text. A fragment quoting a
    digest is found in a :class:`DigestJson` column on PostgreSQL too, packed alike.

    There, a fragment of n bytes quoting no digest could also turn up among a digest's 32
    bytes: by chance (one in 2^8n at each byte) or by design, where someone chose the
    digest (a pupil's pseudonym searched for is any 64 hex digits, and its search is
    recorded). Every search names something whole, of 7 bytes and more (a quoted key, a
    quoted name), and where an entry found is acted on, its text is read again and
    checked."""
    return _Found(column, fragment) > literal_column("0")


def _packer(column_type: Any, dialect: Database) -> Callable[[Any], Any] | None:
    if isinstance(column_type, Digest) and dialect.packs_digests:
        return packed_digest
    if isinstance(column_type, DigestJson) and dialect.packs_digests:
        return packed_json
    if isinstance(column_type, Deflated):
        return packed_payload
    return None


def _row_mapper(
    found: list[tuple[int, Callable[[Any], Any]]],
) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    if not found:
        return None

    def mapped(row: Sequence[Any]) -> tuple[Any, ...]:
        out = list(row)
        for i, change in found:
            if out[i] is not None:
                out[i] = change(out[i])
        return tuple(out)

    return mapped


def rows_packer(
    table: Any, names: Sequence[str], dialect: Database
) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    """For a statement that bypasses the columns' types (the writer's inserts, through
    the driver's executemany, for speed): what gives a row of the columns ``names`` of
    ``table`` the form the database keeps, or None where it keeps the values as they are."""
    found = [(i, f) for i, n in enumerate(names) if (f := _packer(table.c[n].type, dialect))]
    return _row_mapper(found)


def read_columns(table: Any, names: Sequence[str], dialect: Database) -> str:
    """The select list of the columns ``names`` of ``table`` for a read that bypasses the
    columns' types (``ledger verify``'s and the tree's, through the driver, for speed),
    each read as every other reader gets it: on PostgreSQL a digest is turned back into
    its text by the server (:func:`unpacked_digest` in SQL), which costs the reading
    process nothing. A :class:`DigestJson` column comes as stored: its row goes through
    :func:`read_unpacker`."""
    return ", ".join(_read_column(table, name, dialect) for name in names)


def read_unpacker(
    table: Any, names: Sequence[str], dialect: Database
) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    """For a row read through :func:`read_columns` (``ledger verify``'s, the tree's): what
    turns its :class:`DigestJson` columns back into their text (which SQL cannot), each
    checked to be stored as the writer stores it; None where the database keeps the
    text."""
    if not dialect.packs_digests:
        return None
    packed = [i for i, name in enumerate(names) if isinstance(table.c[name].type, DigestJson)]
    return _row_mapper([(i, _as_written) for i in packed])


#: What a stored JSON text not packed as the writer packs reads as, to a check of the
#: chain: not the text its hash covers.
NOT_AS_WRITTEN = "\x00not as the writer packs it: "


def _as_written(stored: bytes) -> str:
    """The text in ``stored``, where the writer would have stored it so; otherwise that
    text marked :data:`NOT_AS_WRITTEN`, which no entry's hash covers. The same text read
    back from two stored forms would pass the chain's check, yet a search (which looks
    for the packed form) would miss the one the writer never makes: so ``ledger verify``
    names it as changed."""
    stored = bytes(stored)
    listed = _unpacked_digest_list(stored)
    if listed is not None:  # only the writer's packing of its text has that shape
        return listed
    text = _unpacked_mark_by_mark(stored)
    return text if packed_json(text) == stored else NOT_AS_WRITTEN + text


def _read_column(table: Any, name: str, dialect: Database) -> str:
    quoted = f'"{name}"'
    if not dialect.packs_digests or not isinstance(table.c[name].type, Digest):
        return quoted
    return (
        f"CASE WHEN octet_length({quoted}) = 32 THEN encode({quoted}, 'hex') "
        f"ELSE convert_from(ltrim({quoted}, decode('ff', 'hex')), 'UTF8') END AS {quoted}"
    )


APPEND_ONLY_TABLES = (
    "ledger_entry",
    "entry_pupil",
    "pupil",
    "register_fact",
    "event_payload",
    "tree_node",
    "log_checkpoint",
    "log_cosignature",
)


class LedgerEntry(SQLModel, table=True):
    """One decision or action, hash-chained to the one before it."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        # An event id is recorded once; a reused id with other content is recorded once
        # per content, referring to the first; an unusable id is recorded once per record.
        Index(
            "ux_entry_event_id",
            "event_id",
            unique=True,
            sqlite_where=text("kind = 'decision' AND refers_to IS NULL AND event_id IS NOT NULL"),
            postgresql_where=text(
                "kind = 'decision' AND refers_to IS NULL AND event_id IS NOT NULL"
            ),
        ),
        Index(
            "ux_entry_reused_id",
            "event_id",
            "payload_digest",
            unique=True,
            sqlite_where=text("kind = 'decision' AND refers_to IS NOT NULL"),
            postgresql_where=text("kind = 'decision' AND refers_to IS NOT NULL"),
        ),
        Index(
            "ux_entry_unkeyed",
            "topic",
            "partition",
            "offset",
            "payload_digest",
            unique=True,
            sqlite_where=text("kind = 'decision' AND event_id IS NULL"),
            postgresql_where=text("kind = 'decision' AND event_id IS NULL"),
        ),
        # Partial: "refers_to IS NULL" (nearly every entry) must never look attractive
        # to the planner next to the event-id indexes.
        Index(
            "ix_entry_refers_to",
            "refers_to",
            sqlite_where=text("refers_to IS NOT NULL"),
            postgresql_where=text("refers_to IS NOT NULL"),
        ),
        Index("ix_entry_occurred_at", "occurred_at"),
        # An auditor's search by recipient, a page at a time in seq order (migration 0018:
        # it replaced a table of (recipient, seq) rows that repeated the column). Of the
        # recipients an index entry can hold: one written before they were held to the
        # contract's pattern might not fit (see RECIPIENT_INDEXED).
        Index(
            "ix_entry_recipient",
            "recipient",
            "seq",
            sqlite_where=text(RECIPIENT_INDEXED),
            postgresql_where=text(RECIPIENT_INDEXED),
        ),
        # Audited reads, found among millions of decisions (see pipeline/ledger/reading/reads.py).
        Index(
            "ix_entry_read",
            "seq",
            sqlite_where=text("kind = 'read'"),
            postgresql_where=text("kind = 'read'"),
        ),
        # Changes to users, found among millions (see pipeline/ledger/integrity/projections.py).
        Index(
            "ix_entry_user_action",
            "seq",
            sqlite_where=text("kind = 'user_action'"),
            postgresql_where=text("kind = 'user_action'"),
        ),
        # Erasures, found among millions (see pipeline/ledger/privacy/erasure.py).
        Index(
            "ix_entry_erasure",
            "seq",
            sqlite_where=text("kind = 'erasure'"),
            postgresql_where=text("kind = 'erasure'"),
        ),
        # Adoptions and notices published, found among millions
        # (pipeline/ledger/writing/adoption.py, notices.py).
        Index(
            "ix_entry_pack_adopted",
            "seq",
            sqlite_where=text("kind = 'pack_adopted'"),
            postgresql_where=text("kind = 'pack_adopted'"),
        ),
        Index(
            "ix_entry_notice_published",
            "seq",
            sqlite_where=text("kind = 'notice_published'"),
            postgresql_where=text("kind = 'notice_published'"),
        ),
    )

    seq: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    refers_to: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    event_id: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    event_type: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    occurred_at: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    recorded_at: str = Field(sa_column=Column(String(40), nullable=False))
    school: str | None = Field(default=None, sa_column=Column(String(6), nullable=True))
    recipient: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    pupil_keys: str = Field(sa_column=Column(DigestJson, nullable=False))
    categories: str = Field(sa_column=Column(Text, nullable=False))
    lawful_basis: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    decision: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    rules: str = Field(sa_column=Column(Text, nullable=False))
    reasons: str = Field(sa_column=Column(Text, nullable=False))
    policy_version: str | None = Field(default=None, sa_column=Column(Digest, nullable=True))
    topic: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    partition: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    offset: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    payload_digest: str | None = Field(default=None, sa_column=Column(Digest, nullable=True))
    details: str | None = Field(default=None, sa_column=Column(DigestJson, nullable=True))
    prev_hash: str = Field(sa_column=Column(Digest, nullable=False))
    hash: str = Field(sa_column=Column(Digest, nullable=False))


class PupilNumber(SQLModel, table=True):
    """Each pupil the ledger has named, by pseudonym, numbered in the order first named:
    the pupil index files entries under the number, 4 bytes, not the 32 of the pseudonym
    (migration 0019). A pseudonym is already in every entry naming the pupil, so the row
    is kept after an erasure, and never changes."""

    __tablename__ = "pupil"
    __table_args__ = (Index("ux_pupil_key", "pupil_key", unique=True),)
    id: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    pupil_key: str = Field(sa_column=Column(Digest, nullable=False))


class EntryPupil(SQLModel, table=True):
    """Which entries name which pupil (by the pupil's number): the pupil query's index."""

    __tablename__ = "entry_pupil"
    __table_args__ = {"sqlite_with_rowid": False}
    pupil: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))


class RegisterFact(SQLModel, table=True):
    """A lifecycle fact in force from ``at``, for the persisted pupil register."""

    __tablename__ = "register_fact"
    seq: int = Field(sa_column=Column(SEQ, primary_key=True))
    pupil_key: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    fact: str = Field(sa_column=Column(Text, nullable=False))


class EventPayload(SQLModel, table=True):
    """The decided event with pupils pseudonymised, so a late fact can re-decide it."""

    __tablename__ = "event_payload"
    seq: int = Field(sa_column=Column(SEQ, primary_key=True))
    body: str = Field(sa_column=Column(Deflated, nullable=False))
    #: The payload's ``data.oldest_record`` as JSON, for the retention check's SQL: the
    #: database cannot read the deflated body (see :mod:`pipeline.ledger.records.payloads`).
    oldest_record: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class PupilIdentity(SQLModel, table=True):
    """The one erasable table: a pseudonym's UPN and date of birth, for subject access."""

    __tablename__ = "pupil_identity"
    __table_args__ = (
        # How a pupil's pseudonym is found from their UPN (see pipeline/ledger/writing/pupils.py).
        Index(
            "ux_identity_upn",
            "upn",
            unique=True,
            sqlite_where=text("upn <> ''"),
            postgresql_where=text("upn <> ''"),
        ),
        {"sqlite_with_rowid": False},
    )
    pupil_key: str = Field(sa_column=Column(String(64), primary_key=True))
    upn: str = Field(sa_column=Column(String(13), nullable=False))
    dob: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    mac: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class AlertOutbox(SQLModel, table=True):
    """A breach or review alert, written with its entry, until the relay has sent it."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        Index(
            "ix_alert_outbox_unsent",
            "seq",
            sqlite_where=text("relayed_at IS NULL"),
            postgresql_where=text("relayed_at IS NULL"),
        ),
    )
    seq: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    severity: str = Field(sa_column=Column(String(10), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str = Field(sa_column=Column(String(40), nullable=False))
    relayed_at: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    status: str | None = Field(default=None, sa_column=Column(String(12), nullable=True))


class IncidentNotice(SQLModel, table=True):
    """A notification of an incident to one target, and whether it arrived."""

    __tablename__ = "incident_notice"
    incident_id: int = Field(sa_column=Column(BigInteger, primary_key=True))
    channel: str = Field(sa_column=Column(String(20), primary_key=True))
    target: str = Field(sa_column=Column(String(500), primary_key=True))
    status: str = Field(sa_column=Column(String(10), nullable=False))
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: str = Field(sa_column=Column(String(40), nullable=False))


class AppUser(SQLModel, table=True):
    """Someone who may use the desk or the API: a role and the SHA-256 of their token."""

    __tablename__ = "app_user"
    name: str = Field(sa_column=Column(String(100), primary_key=True))
    role: str = Field(sa_column=Column(String(20), nullable=False))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: str = Field(sa_column=Column(String(40), nullable=False))
    expires_at: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    revoked_at: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    # The URNs of the schools the user may see (a JSON list); NULL: every school.
    schools: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class DeskSession(SQLModel, table=True):
    """A browser signed in to the desk, by the SHA-256 of its cookie: it expires, and
    signing out ends it, so a copied cookie stops working."""

    __tablename__ = "desk_session"
    id_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    user_name: str = Field(sa_column=Column(String(100), nullable=False))
    created_at: str = Field(sa_column=Column(String(40), nullable=False))
    expires_at: str = Field(sa_column=Column(String(40), nullable=False))
    ended_at: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))


class LedgerMeta(SQLModel, table=True):
    """Named facts about the ledger itself, such as its pseudonym key's fingerprint."""

    __tablename__ = "ledger_meta"
    name: str = Field(sa_column=Column(String(64), primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))


class ChainHead(SQLModel, table=True):
    """One row: the last sequence number and hash. Writers lock it to append."""

    __tablename__ = "chain_head"
    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class TreeNode(SQLModel, table=True):
    """A perfect subtree of the ledger's Merkle tree: leaves ``idx * 2**level`` up to
    ``(idx + 1) * 2**level`` (leaf i is entry seq i + 1), stored as its last leaf is
    appended, so that a root or a proof costs O(log n) rows."""

    __tablename__ = "tree_node"
    __table_args__ = {"sqlite_with_rowid": False}
    level: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class LogCheckpoint(SQLModel, table=True):
    """A checkpoint the log signed (a C2SP signed note), kept for ever: the history an
    auditor or a witness may ask the log to prove its later trees extend."""

    __tablename__ = "log_checkpoint"
    size: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: str = Field(sa_column=Column(String(40), nullable=False))


class LogCosignature(SQLModel, table=True):
    """A witness's cosignature of one checkpoint (its signature line, as the witness
    returned it), or a witness's refusal, kept for ever."""

    __tablename__ = "log_cosignature"
    __table_args__ = {"sqlite_with_rowid": False}
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(sa_column=Column(String(200), primary_key=True))
    line: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    refusal: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    at: str = Field(sa_column=Column(String(40), nullable=False))


class CurrentDecision(SQLModel, table=True):
    """An event re-decided by a late fact, and the entry whose decision is now its own: a
    projection of the chain (:mod:`pipeline.ledger.storage.decision_projection`). An event with
    no row stands as first decided, as nearly every event does."""

    __tablename__ = "current_decision"
    event_seq: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    decision: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))


class IncidentRow(SQLModel, table=True):
    """An incident on the breach desk as its alerts and actions leave it: a projection of
    the chain and the outbox (:mod:`pipeline.ledger.storage.incident_projection`), so that the
    queue reads rows rather than every alert ever raised. Indexed for the queue: its page
    of running clocks is read in ``detected_at`` order, and the schools it may be
    narrowed to are read from the school index alone."""

    __tablename__ = "incident"
    __table_args__ = (
        Index("ix_incident_detected_at", "detected_at"),
        Index("ix_incident_school", "school"),
    )
    id: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    cause: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    rule: str = Field(sa_column=Column(String(80), nullable=False))
    recipient: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    day: str = Field(sa_column=Column(String(10), nullable=False))
    school: str | None = Field(default=None, sa_column=Column(String(6), nullable=True))
    severity: str = Field(sa_column=Column(String(10), nullable=False))
    breach: bool = Field(sa_column=Column(Boolean, nullable=False))
    detected_at: str = Field(sa_column=Column(String(40), nullable=False))
    alerts: int = Field(sa_column=Column(Integer, nullable=False))
    events: int = Field(sa_column=Column(Integer, nullable=False))
    last_alert: int = Field(sa_column=Column(BigInteger, nullable=False))
    actions: int = Field(sa_column=Column(Integer, nullable=False))
    last_action: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    last_action_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    risk: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))


class IncidentAlert(SQLModel, table=True):
    """An alert on the desk and the incident it belongs to: the incident's entries and the
    events they are about, found by the incident without reading every alert's body."""

    __tablename__ = "incident_alert"
    __table_args__ = (Index("ix_incident_alert_incident", "incident", "event_id"),)
    seq: int = Field(sa_column=Column(SEQ, primary_key=True, autoincrement=False))
    incident: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_id: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
