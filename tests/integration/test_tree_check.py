"""``ledger verify``'s check of the stored Merkle tree, streamed (issue 33): as the leaves
come, in memory bounded by the tree's height. It must find exactly what checking the
whole tree at once finds (the reference below: every level recomputed from all the
leaves, then compared whole), for any size, any way the leaves are handed in, and any
node edited, removed or added behind the ledger's back."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, create_engine, delete, insert, update

from pipeline.ledger.storage import tree as tree_module
from pipeline.ledger.storage.tree import STORED_FROM, TREE, TreeCheck

pytestmark = pytest.mark.integration


def leaf_hashes(size: int) -> bytes:
    return b"".join(hashlib.sha256(b"\x00leaf %d" % i).digest() for i in range(size))


def levels(leaves: bytes) -> Iterator[tuple[int, bytes]]:
    """Every level of the tree over ``leaves``: its perfect subtrees' hashes, in order."""
    expected, level = leaves, 0
    while expected:
        yield level, expected
        expected = b"".join(
            hashlib.sha256(b"\x01" + expected[i : i + 64]).digest()
            for i in range(0, len(expected) - 32, 64)
        )
        level += 1


def reference_fault(connection: Connection, leaves: bytes) -> list[tuple[int, str]]:
    """The whole tree checked at once, level by level (how verify checked it before)."""
    for level, expected in levels(leaves):
        if level < STORED_FROM:
            continue
        rows = connection.execute(
            TREE.select().where(TREE.c.level == level).order_by(TREE.c.idx)
        ).all()
        count, seen = len(expected) // 32, 0
        for row in rows:
            if row.idx != seen or seen >= count:
                what = "has a node it should not" if seen >= count else "lacks a node"
                return [
                    ((seen << level) + 1, f"the Merkle tree {what} at level {level}, index {seen}")
                ]
            if bytes(row.hash) != expected[seen * 32 : seen * 32 + 32]:
                where = f"level {level}, index {seen}"
                return [
                    (
                        (seen << level) + 1,
                        f"the Merkle tree's node at {where} does not match the entries",
                    )
                ]
            seen += 1
        if seen != count:
            return [
                (
                    (seen << level) + 1,
                    f"the Merkle tree lacks a node at level {level}, index {seen}",
                )
            ]
    return []


def stored_tree(leaves: bytes) -> Connection:
    """A database holding the tree over ``leaves`` as the ledger stores it."""
    engine = create_engine("sqlite://")
    TREE.create(engine)
    connection = engine.connect()
    rows = [
        {"level": level, "idx": i, "hash": expected[i * 32 : i * 32 + 32]}
        for level, expected in levels(leaves)
        if level >= STORED_FROM
        for i in range(len(expected) // 32)
    ]
    if rows:
        connection.execute(insert(TREE), rows)
    return connection


def streamed(connection: Connection, leaves: bytes, pieces: list[int]) -> list[tuple[int, str]]:
    check = TreeCheck(connection)
    at = 0
    for piece in pieces:
        check += leaves[at : at + piece * 32]
        at += piece * 32
    check += leaves[at:]
    try:
        return check.faults()
    finally:
        check.close()


def in_parts(connection: Connection, leaves: bytes, cuts: list[int]) -> list[tuple[int, str]]:
    """As ``ledger verify --jobs`` checks: each range by a part of its own (here in turn),
    the parts joined in order by the whole check."""
    size = len(leaves) // 32
    bounds = sorted({0, size, *(c % (size + 1) for c in cuts)})
    whole = TreeCheck(connection)
    try:
        for start, end in itertools.pairwise(bounds):
            part = TreeCheck.of_part(connection, start)
            part += leaves[start * 32 : (start + end) // 2 * 32]
            part += leaves[(start + end) // 2 * 32 : end * 32]
            whole.add_part(*part.part())
            part.close()
        return whole.faults()
    finally:
        whole.close()


SIZES = st.integers(min_value=0, max_value=9000)  # across two blocks of 4,096 leaves
PIECES = st.lists(st.integers(min_value=1, max_value=5000), max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=SIZES, pieces=PIECES)
def test_an_untouched_tree_has_no_fault_however_the_leaves_are_handed_in(
    size: int, pieces: list[int]
) -> None:
    leaves = leaf_hashes(size)
    connection = stored_tree(leaves)
    assert streamed(connection, leaves, pieces) == []
    assert in_parts(connection, leaves, pieces) == []


TAMPERING = st.sampled_from(["edit", "remove", "add beyond", "add a level above"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(min_value=16, max_value=13000),
    how=TAMPERING,
    which=st.randoms(),
    cuts=st.lists(st.integers(min_value=0, max_value=13000), max_size=4),
)
def test_a_node_edited_removed_or_added_is_found_as_checking_the_whole_tree_finds_it(
    size: int, how: str, which: random.Random, cuts: list[int]
) -> None:
    leaves = leaf_hashes(size)
    connection = stored_tree(leaves)
    stored = [
        (lv, i)
        for lv, expected in levels(leaves)
        if lv >= STORED_FROM
        for i in range(len(expected) // 32)
    ]
    level, idx = which.choice(stored)
    where = (TREE.c.level == level) & (TREE.c.idx == idx)
    if how == "edit":
        connection.execute(update(TREE).where(where).values(hash=bytes(32)))
    elif how == "remove":
        connection.execute(delete(TREE).where(where))
    elif how == "add beyond":
        count = size >> level
        connection.execute(insert(TREE).values(level=level, idx=count, hash=bytes(32)))
    else:
        connection.execute(insert(TREE).values(level=size.bit_length(), idx=0, hash=bytes(32)))
    expected = reference_fault(connection, leaves)
    assert streamed(connection, leaves, [7, 4096]) == expected
    assert in_parts(connection, leaves, cuts) == expected
    if how != "add a level above":  # above the top, neither check looks: nothing proves it
        assert expected


def test_stored_nodes_are_read_a_page_at_a_time_per_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree_module, "NODES_READ", 3)
    leaves = leaf_hashes(5000)
    connection = stored_tree(leaves)
    assert streamed(connection, leaves, []) == []
    connection.execute(
        update(TREE).where((TREE.c.level == 4) & (TREE.c.idx == 200)).values(hash=bytes(32))
    )
    assert streamed(connection, leaves, []) == [
        ((200 << 4) + 1, "the Merkle tree's node at level 4, index 200 does not match the entries")
    ]
