"""The ledger's Merkle tree as stored: perfect subtrees in ``tree_node``, written with the
entries that complete them (in :meth:`Ledger.append`'s transaction), read a handful at a
time to make a root or a proof (:mod:`pipeline.transparency.merkle` says which).

Leaf i is entry seq i + 1, its bytes the entry's :func:`~pipeline.ledger.records.chain.entry_leaf`.

Only subtrees of :data:`STORED_LEAVES` leaves or more are stored: one row per 8 entries
rather than two per entry, which kept appending near its cost without the tree. A smaller
subtree a proof needs is computed from its entries, at most 15 of them, as C2SP tiles
leave partial tiles to be computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from hashlib import sha256
from typing import Any

from sqlalchemy import Connection, Engine, select

from pipeline.ledger.records.chain import ENTRY_FIELDS, entry_leaf, hashable_form
from pipeline.ledger.storage.dialects import dialect_of
from pipeline.ledger.storage.models import LedgerEntry, TreeNode, read_columns, read_unpacker
from pipeline.transparency.merkle import (
    Hash,
    Node,
    consistency_ranges,
    frontier,
    grown,
    hashes_root,
    inclusion_ranges,
    leaf_hash,
    range_hash,
    subtrees,
)
from pipeline.transparency.tiles import Tile

#: The smallest subtree stored is of 2**STORED_FROM leaves.
STORED_FROM = 4
STORED_LEAVES = 1 << STORED_FROM
TREE = TreeNode.__table__  # type: ignore[attr-defined]
ENTRY = LedgerEntry.__table__  # type: ignore[attr-defined]
COLUMNS = ("level", "idx", "hash")


class TreeIncomplete(Exception):
    """A node the tree should hold is missing: the tree was never built (run ``sharing-audit
    db upgrade``) or rows were removed behind the ledger's back."""


def nodes(connection: Connection, wanted: Iterable[Node]) -> dict[Node, Hash]:
    """The hashes of the perfect subtrees ``wanted``: stored ones in one query, smaller ones
    from their entries; :class:`TreeIncomplete` if a stored one is missing."""
    wanted = list(dict.fromkeys(wanted))
    found = _stored(connection, [n for n in wanted if n[0] >= STORED_FROM])
    small = [n for n in wanted if n[0] < STORED_FROM]
    if small:
        leaves = _leaf_hashes_in(connection, [(i << level, (i + 1) << level) for level, i in small])
        for level, i in small:
            found[(level, i)] = hashes_root(
                [leaves[j] for j in range(i << level, (i + 1) << level)]
            )
    return found


def _stored(connection: Connection, wanted: list[Node]) -> dict[Node, Hash]:
    found = stored_nodes(connection, wanted)
    missing = [n for n in wanted if n not in found]
    if missing:
        level, idx = missing[0]
        raise TreeIncomplete(f"the tree has no node at level {level}, index {idx}")
    return found


def stored_nodes(connection: Connection, wanted: Sequence[Node]) -> dict[Node, Hash]:
    """The stored hashes of those of the subtrees ``wanted`` that the tree holds."""
    # Plain SQL through the driver: a proof's few rows cost less to fetch than to build
    # and compile an expression for them. Each level's indexes are one parameter: a
    # subject-access report's hundred proofs ask for a thousand nodes on a few dozen
    # levels, which as an OR of a thousand keys took the server longer to plan than to read.
    dialect = dialect_of(connection)
    levels: dict[int, list[int]] = {}
    for level, idx in wanted:
        levels.setdefault(level, []).append(idx)
    asked = list(levels.items())
    found: dict[Node, Hash] = {}
    for start in range(0, len(asked), _LEVELS):  # a bounded statement, whatever is asked
        chunk = asked[start : start + _LEVELS]
        where = " OR ".join([f"(level = {dialect.marker} AND {dialect.among('idx')})"] * len(chunk))
        rows = connection.exec_driver_sql(
            f"SELECT level, idx, hash FROM tree_node WHERE {where}",
            tuple(value for level, idxs in chunk for value in (level, dialect.listed(idxs))),
        )
        found.update({(int(level), int(idx)): bytes(digest) for level, idx, digest in rows})
    return found


#: Levels asked for a statement: a tree of 2**63 leaves has 64.
_LEVELS = 64


def _leaves_in(connection: Connection, indexes: Sequence[int]) -> dict[int, bytes]:
    """Leaf index to leaf bytes, for each of ``indexes`` (a ``range``: a tile's run of
    entries, read as one range of keys)."""
    dialect = dialect_of(connection)
    columns = read_columns(ENTRY, ENTRY_FIELDS, dialect)
    values: tuple[Any, ...]
    if isinstance(indexes, range) and indexes.step == 1:
        where = f"seq BETWEEN {dialect.marker} AND {dialect.marker}"
        values = (indexes.start + 1, indexes.stop)
    else:
        where, values = dialect.among("seq"), (dialect.listed([j + 1 for j in indexes]),)
    with dialect.binary_results(connection):
        rows = connection.exec_driver_sql(
            f"SELECT {columns} FROM ledger_entry WHERE {where}", values
        )
    unpacked = read_unpacker(ENTRY, ENTRY_FIELDS, dialect)
    found = {}
    for row in rows if unpacked is None else map(unpacked, rows):
        fields = hashable_form(dict(zip(ENTRY_FIELDS, row, strict=True)))
        found[int(fields["seq"]) - 1] = entry_leaf(fields)
    missing = [j for j in indexes if j not in found]
    if missing:
        raise TreeIncomplete(f"the ledger has no entry {missing[0] + 1}")
    return found


def entry_leaf_hashes(connection: Connection, seqs: Iterable[int]) -> dict[int, Hash]:
    """Entry seq to its leaf hash, for each of ``seqs``: what the receipt of a record
    recorded earlier (a redelivery) names."""
    found = _leaf_hashes_in(connection, [(seq - 1, seq) for seq in set(seqs)])
    return {j + 1: h for j, h in found.items()}


#: Leaves read a statement: a bounded parameter, however many proofs ask.
LEAVES_A_STATEMENT = 4096


def _leaf_hashes_in(connection: Connection, ranges: Iterable[tuple[int, int]]) -> dict[int, Hash]:
    """Leaf index to leaf hash, for every leaf in ``ranges`` (``[start, end)`` each), each
    read once (the proofs of neighbouring leaves share their block)."""
    indexes = sorted({j for lo, hi in ranges for j in range(lo, hi)})
    found: dict[int, Hash] = {}
    for start in range(0, len(indexes), LEAVES_A_STATEMENT):
        chunk = indexes[start : start + LEAVES_A_STATEMENT]
        found.update({j: leaf_hash(leaf) for j, leaf in _leaves_in(connection, chunk).items()})
    return found


def leaves(connection: Connection, start: int, end: int) -> list[bytes]:
    """The leaf bytes of leaves ``start`` to ``end - 1`` (entries ``start + 1`` to
    ``end``), in order."""
    found = _leaves_in(connection, range(start, end))
    return [found[j] for j in range(start, end)]


def tile_hashes(connection: Connection, tile: Tile) -> bytes:
    """A C2SP hash tile's bytes: its subtrees' hashes, concatenated. Level-0 tiles hash
    their entries; higher ones are stored subtrees, read as one run of keys."""
    if tile.hashed_level < STORED_FROM:
        start, end = tile.leaves()
        return b"".join(leaf_hash(leaf) for leaf in leaves(connection, start, end))
    marker = dialect_of(connection).marker
    rows = connection.exec_driver_sql(
        f"SELECT idx, hash FROM tree_node WHERE level = {marker} "
        f"AND idx BETWEEN {marker} AND {marker} ORDER BY idx",
        (tile.hashed_level, tile.first, tile.first + tile.width - 1),
    )
    found = {int(idx): bytes(digest) for idx, digest in rows}
    for level, idx in tile.nodes():
        if idx not in found:
            raise TreeIncomplete(f"the tree has no node at level {level}, index {idx}")
    return b"".join(found[idx] for _, idx in tile.nodes())


def new_nodes(
    connection: Connection, size: int, leaves: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """The rows that appending entries with leaf bytes ``leaves`` to a tree of ``size``
    adds: each stored-size subtree they complete."""
    return RightEdge().rows(connection, size, "", "", [leaf_hash(leaf) for leaf in leaves])


class RightEdge:
    """The tree's right edge as this process's last append left it, so that the next
    append, if nothing else was appended between, reads nothing to extend the tree.

    Known by the chain head it was left at (size and hash): after another writer's
    append, or a transaction of ours that did not commit, the head differs, and the edge
    is read from the database again.
    """

    def __init__(self) -> None:
        self._at: tuple[int, str] | None = None
        self._edge: dict[Node, Hash] = {}

    def rows(
        self,
        connection: Connection,
        size: int,
        head_hash: str,
        new_head_hash: str,
        hashes: Sequence[Hash],
    ) -> list[tuple[int, int, bytes]]:
        """:func:`new_nodes` for leaves of hashes ``hashes``, remembering the new edge under
        ``new_head_hash``."""
        if head_hash and self._at == (size, head_hash):
            edge = self._edge
        else:
            edge = nodes(connection, frontier(size))
        made = grown(size, edge, list(hashes))
        known = {**edge, **dict(made)}
        grown_to = size + len(hashes)
        self._at = (grown_to, new_head_hash) if new_head_hash else None
        self._edge = {n: known[n] for n in frontier(grown_to)}
        return [(level, idx, h) for (level, idx), h in made if level >= STORED_FROM]


def _hashes_of(
    connection: Connection,
    ranges: Sequence[tuple[int, int]],
    known: dict[Node, Hash] | None = None,
) -> list[Hash]:
    """The tree hashes of leaf ``ranges``; ``known`` keeps the nodes read, for the next
    call to reuse (neighbouring entries' proofs share most of them)."""
    known = {} if known is None else known
    parts = [subtrees(lo, hi) for lo, hi in ranges]
    missing = [n for part in parts for n in part if n not in known]
    if missing:
        known.update(nodes(connection, missing))
    return [range_hash([known[n] for n in part]) for part in parts]


def root_at(connection: Connection, size: int) -> Hash:
    """The tree's root at ``size`` leaves (any size up to the ledger's)."""
    return _hashes_of(connection, [(0, size)])[0]


def inclusion_proof(
    connection: Connection, index: int, size: int, known: dict[Node, Hash] | None = None
) -> list[Hash]:
    return _hashes_of(connection, inclusion_ranges(index, size), known)


def inclusion_proofs(
    connection: Connection, indices: Sequence[int], size: int, known: dict[Node, Hash] | None = None
) -> list[list[Hash]]:
    """The inclusion proofs of leaves ``indices`` in the tree of ``size``, every node
    they need read at once: a subject-access report proves each of a pupil's entries, and
    two queries an entry were most of its time on PostgreSQL."""
    each = [inclusion_ranges(index, size) for index in indices]
    hashes = iter(_hashes_of(connection, [r for ranges in each for r in ranges], known))
    return [[next(hashes) for _ in ranges] for ranges in each]


def consistency_proof(connection: Connection, old: int, new: int) -> list[Hash]:
    return _hashes_of(connection, consistency_ranges(old, new))


def tree_size(connection: Connection) -> int:
    """How many leaves the stored subtrees cover: a multiple of :data:`STORED_LEAVES` (the
    leaves after it are in no stored subtree yet)."""
    top = connection.execute(
        select(TREE.c.idx).where(TREE.c.level == STORED_FROM).order_by(TREE.c.idx.desc()).limit(1)
    ).scalar()
    return 0 if top is None else (int(top) + 1) << STORED_FROM


def leaf_bytes(connection: Connection, seq: int) -> bytes | None:
    """Entry ``seq``'s leaf bytes, exactly, or None if there is no such entry."""
    row = connection.execute(select(ENTRY).where(ENTRY.c.seq == seq)).mappings().first()
    return None if row is None else entry_leaf(hashable_form(dict(row)))


def build_missing(engine: Engine, progress: Callable[[int, int], None] | None = None) -> int:
    """Build the tree over entries it does not cover yet (a ledger written before the
    tree existed), a batch per transaction; the entries added. ``progress(done, total)``."""
    with engine.connect() as connection:
        size = tree_size(connection)
        total = int(
            connection.execute(select(ENTRY.c.seq).order_by(ENTRY.c.seq.desc()).limit(1)).scalar()
            or 0
        )
    done = 0
    while size < total - total % STORED_LEAVES:
        with engine.begin() as connection:
            rows = connection.execute(
                select(ENTRY).where(ENTRY.c.seq > size).order_by(ENTRY.c.seq).limit(16_384)
            ).mappings()
            leaves = [entry_leaf(hashable_form(dict(row))) for row in rows]
            added = new_nodes(connection, size, leaves)
            if added:
                connection.execute(
                    TREE.insert(), [dict(zip(COLUMNS, r, strict=True)) for r in added]
                )
        size += len(leaves)
        done += len(leaves)
        if progress is not None:
            progress(size, total)
    return done


#: Leaves are checked in aligned blocks of 2**CHECKED_FROM: each block's subtrees are made
#: level by level at C speed, and only the blocks' roots are combined one by one.
CHECKED_FROM = 12
#: A part of the check hands on a block's root (True) or leaves' hashes (False).
Segment = tuple[bool, bytes]
#: Stored nodes read a query at a time, per level, while the tree is checked.
NODES_READ = 4096


class TreeCheck:
    """Where the stored tree is not the tree of the entries, checked as the entries'
    leaf hashes stream in (``check += hashes``, 32 bytes each, in order, from
    :func:`~pipeline.ledger.records.chain.verify_links`), in memory bounded by the tree's height,
    not the ledger's size: a block of leaves, a few nodes per level, and a page of stored
    nodes per level.

    Each perfect subtree of :data:`STORED_LEAVES` leaves or more is compared with its
    stored node as soon as its leaves are in, level by level in index order. What
    :meth:`faults` reports is the first fault of the lowest level that has one (a faulty
    node makes every node above it faulty too), as (the first seq under the node, what
    is wrong).

    The stored nodes compared while the leaves stream in are read on a connection of
    their own (but on SQLite, where the chain is not read by a second thread): the
    chain's reader may hold ``connection`` meanwhile. They are read only under leaves
    already in, which no append changes; whether a level holds a node beyond its last is
    asked at the end, on ``connection``, in the snapshot the leaves came from (a live
    worker appends meanwhile). :meth:`close` the check when done with it."""

    def __init__(self, connection: Connection, first_leaf: int = 0) -> None:
        self.connection = connection
        self._reader = dialect_of(connection).reader(connection)
        self._buffer = bytearray()
        self._taken = first_leaf  # the first leaf not yet in a block, or handed on
        self._edge: list[tuple[int, bytes]] = []  # (level, hash): perfect subtrees pending
        self._rows: dict[int, _StoredLevel] = {}
        self._fault: dict[int, tuple[int, str]] = {}
        self._segments: list[Segment] | None = None  # a part's: roots and leaves handed on

    @classmethod
    def of_part(cls, connection: Connection, first_leaf: int) -> TreeCheck:
        """The check of one range of a ledger checked in ranges (from leaf
        ``first_leaf``): its whole blocks are compared here and only their roots handed
        on; the leaves of the blocks it shares with its neighbours are handed on as they
        are (:meth:`part`), for the whole check to join (:meth:`add_part`)."""
        check = cls(connection, first_leaf)
        check._segments = []
        return check

    def __iadd__(self, hashes: bytes) -> TreeCheck:
        self._buffer += hashes
        block = 1 << CHECKED_FROM
        if self._segments is not None and self._taken % block:
            lead = min(len(self._buffer) // 32, block - self._taken % block)
            self._hand_on(False, bytes(self._buffer[: lead * 32]))
            del self._buffer[: lead * 32]
            self._taken += lead
        while len(self._buffer) >= block * 32:
            top = self._levels(bytes(self._buffer[: block * 32]), self._taken)
            del self._buffer[: block * 32]
            self._taken += block
            if self._segments is None:
                self._carry(top)
            else:
                self._hand_on(True, top)
        return self

    def part(self) -> tuple[list[Segment], dict[int, tuple[int, str]]]:
        """A part's check, every leaf of its range given: what it hands on, in order, and
        its faults by level (each the first of its level in the range)."""
        assert self._segments is not None
        if self._buffer:
            self._hand_on(False, bytes(self._buffer))
            self._buffer.clear()
        return self._segments, self._fault

    def add_part(self, segments: Sequence[Segment], faults: dict[int, tuple[int, str]]) -> None:
        """Join a part's check (:meth:`part`) to this one, parts in order."""
        for is_roots, data in segments:
            if not is_roots:
                self += data
                continue
            assert not self._buffer, "a part's roots start a block"
            for at in range(0, len(data), 32):
                self._taken += 1 << CHECKED_FROM
                self._carry(data[at : at + 32])
        for level, fault in faults.items():
            self._fault[level] = min(fault, self._fault.get(level, fault))

    def faults(self) -> list[tuple[int, str]]:
        """Every leaf given, the tree's fault (at most one), or none."""
        size = self._taken + len(self._buffer) // 32
        if self._buffer:
            self._levels(bytes(self._buffer), self._taken)
        for level in range(STORED_FROM, size.bit_length()):
            if level not in self._fault:
                fault = beyond_fault(self.connection, level, size >> level)
                if fault is not None:
                    self._fault[level] = fault
        if not self._fault:
            return []
        return [self._fault[min(self._fault)]]

    def _hand_on(self, is_roots: bool, data: bytes) -> None:
        assert self._segments is not None
        if self._segments and self._segments[-1][0] == is_roots:
            self._segments[-1] = (is_roots, self._segments[-1][1] + data)
        else:
            self._segments.append((is_roots, data))

    def _levels(self, hashes: bytes, first_leaf: int) -> bytes:
        """Compare the subtrees of leaves ``hashes`` (from leaf ``first_leaf``, aligned to
        the block) level by level; the hash at the top (the block's root, when whole)."""
        expected = hashes
        level = 0
        while True:
            if level >= STORED_FROM:
                self._compare(level, first_leaf >> level, expected)
            if len(expected) < 64:
                return bytes(expected)
            # node_hash of each pair, inlined: the pair is already left + right, contiguous.
            expected = b"".join(
                sha256(b"\x01" + expected[i : i + 64]).digest()
                for i in range(0, len(expected) - 32, 64)
            )
            level += 1

    def _carry(self, root: bytes) -> None:
        """A whole block's root: joined with the pending subtrees it completes, each
        compared as it is made (a binary counter of perfect subtrees)."""
        level, digest = CHECKED_FROM, root
        index = (self._taken >> CHECKED_FROM) - 1  # this block's, at its level
        while self._edge and self._edge[-1][0] == level:
            _, left = self._edge.pop()
            digest = sha256(b"\x01" + left + digest).digest()
            level, index = level + 1, index >> 1
            self._compare(level, index, digest)
        self._edge.append((level, digest))

    def _compare(self, level: int, first: int, hashes: bytes) -> None:
        """Compare the nodes of ``level`` from index ``first`` with the stored ones."""
        if level in self._fault:
            return
        rows = self._rows.get(level)
        if rows is None:
            rows = self._rows[level] = _StoredLevel(self._reader, level, first)
        for n in range(len(hashes) // 32):
            index = first + n
            stored = rows.at(index)  # the node of this index, or one after it
            found = stored[1] if stored is not None and stored[0] == index else None
            fault = node_fault(level, index, found, bytes(hashes[n * 32 : n * 32 + 32]))
            if fault is not None:
                self._fault[level] = fault
                return

    def close(self) -> None:
        dialect_of(self.connection).close_reader(self.connection, self._reader)


def node_fault(level: int, index: int, stored: Hash | None, made: Hash) -> tuple[int, str] | None:
    """A stored node (None: the tree holds none) against the one the entries make: the
    first seq under it and what is wrong, or None."""
    where = f"level {level}, index {index}"
    if stored is None:
        return (index << level) + 1, f"the Merkle tree lacks a node at {where}"
    if stored != made:
        return (index << level) + 1, f"the Merkle tree's node at {where} does not match the entries"
    return None


def beyond_fault(connection: Connection, level: int, count: int) -> tuple[int, str] | None:
    """After the last of the ``count`` nodes a level should hold, none more may be
    stored: asked on ``connection``, in the snapshot the leaves came from."""
    beyond = connection.execute(
        select(TREE.c.idx).where(TREE.c.level == level, TREE.c.idx >= count).limit(1)
    ).first()
    if beyond is None:
        return None
    where = f"level {level}, index {count}"
    return (count << level) + 1, f"the Merkle tree has a node it should not at {where}"


class _StoredLevel:
    """One level's stored nodes in index order, read :data:`NODES_READ` at a time, from
    wherever the check asks next (a whole check joining parts skips what they checked)."""

    def __init__(self, connection: Connection, level: int, first: int) -> None:
        self.connection = connection
        self.level = level
        self._page: list[tuple[int, bytes]] = []
        self._at = 0
        self._start = first  # where the last read started
        self._from = first  # where the next read starts: after the page's last row
        self._done = False  # whether the last read found every row from its start

    def at(self, index: int) -> tuple[int, bytes] | None:
        """The stored node of the least index ``index`` or more (None: the level holds
        none there)."""
        while True:
            while self._at < len(self._page) and self._page[self._at][0] < index:
                self._at += 1
            if self._at < len(self._page):
                row = self._page[self._at]
                self._at += 1
                return row
            if self._done and index >= self._start:
                return None
            self._read(index if self._done else max(index, self._from))

    def _read(self, start: int) -> None:
        self._page = [
            (int(idx), bytes(digest))
            for idx, digest in self.connection.execute(
                select(TREE.c.idx, TREE.c.hash)
                .where(TREE.c.level == self.level, TREE.c.idx >= start)
                .order_by(TREE.c.idx)
                .limit(NODES_READ)
            )
        ]
        self._at = 0
        self._start = start
        self._done = len(self._page) < NODES_READ
        self._from = self._page[-1][0] + 1 if self._page else start
