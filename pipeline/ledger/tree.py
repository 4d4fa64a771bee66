"""The ledger's Merkle tree as stored: perfect subtrees in ``tree_node``, written with the
entries that complete them (in :meth:`Ledger.append`'s transaction), read a handful at a
time to make a root or a proof (:mod:`pipeline.transparency.merkle` says which).

Leaf i is entry seq i + 1, its bytes the entry's :func:`~pipeline.ledger.chain.entry_leaf`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import Connection, Engine, and_, or_, select

from pipeline.ledger.chain import entry_leaf, hashable_form
from pipeline.ledger.models import LedgerEntry, TreeNode
from pipeline.transparency.merkle import (
    Hash,
    Node,
    consistency_ranges,
    frontier,
    grown,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    range_hash,
    subtrees,
)

TREE = TreeNode.__table__  # type: ignore[attr-defined]
ENTRY = LedgerEntry.__table__  # type: ignore[attr-defined]
COLUMNS = ("level", "idx", "hash")


class TreeIncomplete(Exception):
    """A node the tree should hold is missing: the tree was never built (run ``sharing-audit
    db upgrade``) or rows were removed behind the ledger's back."""


def nodes(connection: Connection, wanted: Iterable[Node]) -> dict[Node, Hash]:
    """The stored hashes of ``wanted``, in one query; :class:`TreeIncomplete` if any is
    missing."""
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        return {}
    found: dict[Node, Hash] = {}
    for start in range(0, len(wanted), 200):  # a bounded statement, whatever the proof
        chunk = wanted[start : start + 200]
        rows = connection.execute(
            select(TREE.c.level, TREE.c.idx, TREE.c.hash).where(
                or_(*(and_(TREE.c.level == level, TREE.c.idx == idx) for level, idx in chunk))
            )
        )
        found.update({(int(r.level), int(r.idx)): bytes(r.hash) for r in rows})
    missing = [n for n in wanted if n not in found]
    if missing:
        level, idx = missing[0]
        raise TreeIncomplete(f"the tree has no node at level {level}, index {idx}")
    return found


def new_nodes(
    connection: Connection, size: int, leaves: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """The rows that appending entries with leaf bytes ``leaves`` to a tree of ``size``
    adds: each leaf and each perfect subtree it completes."""
    edge = nodes(connection, frontier(size))
    return [
        (level, idx, digest)
        for (level, idx), digest in grown(size, edge, [leaf_hash(leaf) for leaf in leaves])
    ]


def _hashes_of(connection: Connection, ranges: Sequence[tuple[int, int]]) -> list[Hash]:
    parts = [subtrees(lo, hi) for lo, hi in ranges]
    stored = nodes(connection, (n for part in parts for n in part))
    return [range_hash([stored[n] for n in part]) for part in parts]


def root_at(connection: Connection, size: int) -> Hash:
    """The tree's root at ``size`` leaves (any size up to the ledger's)."""
    return _hashes_of(connection, [(0, size)])[0]


def inclusion_proof(connection: Connection, index: int, size: int) -> list[Hash]:
    return _hashes_of(connection, inclusion_ranges(index, size))


def consistency_proof(connection: Connection, old: int, new: int) -> list[Hash]:
    return _hashes_of(connection, consistency_ranges(old, new))


def tree_size(connection: Connection) -> int:
    """How many leaves the stored tree holds: the leaves are its level-0 nodes."""
    top = connection.execute(
        select(TREE.c.idx).where(TREE.c.level == 0).order_by(TREE.c.idx.desc()).limit(1)
    ).scalar()
    return 0 if top is None else int(top) + 1


def leaf_bytes(connection: Connection, seq: int) -> bytes | None:
    """Entry ``seq``'s leaf bytes, exactly, or None if there is no such entry."""
    row = connection.execute(select(ENTRY).where(ENTRY.c.seq == seq)).mappings().first()
    return None if row is None else entry_leaf(hashable_form(dict(row)))


def build_missing(engine: Engine, progress: Callable[[int, int], None] | None = None) -> int:
    """Build the tree over entries it does not hold yet (a ledger written before the tree
    existed), a batch per transaction; the entries added. ``progress(done, total)``."""
    with engine.connect() as connection:
        size = tree_size(connection)
        total = int(
            connection.execute(select(ENTRY.c.seq).order_by(ENTRY.c.seq.desc()).limit(1)).scalar()
            or 0
        )
    done = 0
    while size < total:
        with engine.begin() as connection:
            rows = connection.execute(
                select(ENTRY).where(ENTRY.c.seq > size).order_by(ENTRY.c.seq).limit(10_000)
            ).mappings()
            leaves = [entry_leaf(hashable_form(dict(row))) for row in rows]
            connection.execute(
                TREE.insert(),
                [dict(zip(COLUMNS, r, strict=True)) for r in new_nodes(connection, size, leaves)],
            )
        size += len(leaves)
        done += len(leaves)
        if progress is not None:
            progress(size, total)
    return done


def tree_faults(connection: Connection, leaves: bytearray) -> list[tuple[int, str]]:
    """Where the stored tree is not the tree of the entries whose leaf hashes are
    ``leaves`` (32 bytes each, from :func:`~pipeline.ledger.chain.verify_chain`): each
    fault as (the first seq under the node, what is wrong). Level by level, each level's
    nodes recomputed from the one below and compared with the stored ones, streamed."""
    expected = leaves
    level = 0
    while expected:
        fault = _level_fault(connection, level, expected)
        if fault is not None:
            return [fault]
        expected = bytearray(
            b"".join(
                node_hash(bytes(expected[i : i + 32]), bytes(expected[i + 32 : i + 64]))
                for i in range(0, len(expected) - 32, 64)
            )
        )
        level += 1
    return []


def _level_fault(connection: Connection, level: int, expected: bytearray) -> tuple[int, str] | None:
    rows = connection.execution_options(stream_results=True, yield_per=10_000).execute(
        select(TREE.c.idx, TREE.c.hash).where(TREE.c.level == level).order_by(TREE.c.idx)
    )
    count = len(expected) // 32
    seen = 0
    for idx, digest in rows:
        if int(idx) != seen or seen >= count:
            what = "has a node it should not" if seen >= count or int(idx) < seen else "lacks"
            return (seen << level) + 1, f"the Merkle tree {what} at level {level}, index {seen}"
        if bytes(digest) != bytes(expected[seen * 32 : seen * 32 + 32]):
            return (seen << level) + 1, (
                f"the Merkle tree's node at level {level}, index {seen} does not match the entries"
            )
        seen += 1
    if seen != count:
        return (seen << level) + 1, f"the Merkle tree lacks a node at level {level}, index {seen}"
    return None
