"""The RFC 6962 Merkle tree over the ledger, its proofs, and their verification.

Pure: no database, clock or network. The log side (:func:`inclusion_ranges`,
:func:`consistency_ranges`, :func:`subtrees`) says which hashes a proof is made of, as
perfect subtrees ``(level, index)`` (leaves ``index * 2**level`` up to
``(index + 1) * 2**level``), which the ledger keeps as it appends; so a proof costs
O(log n) stored hashes, never a pass over the entries. The client side
(:func:`verify_inclusion`, :func:`verify_consistency`) follows RFC 9162 2.1.3.2 and
2.1.4.2 and trusts nothing it is given but the hashes it recomputes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

Hash = bytes
Node = tuple[int, int]  # (level, index): a perfect subtree, 2**level leaves

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(Exception):
    """A proof that does not prove what it is offered for."""


def leaf_hash(leaf: bytes) -> Hash:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: Hash, right: Hash) -> Hash:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size`` > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def subtrees(start: int, end: int) -> list[Node]:
    """The perfect subtrees that make up the tree hash of leaves ``start``..``end`` (a
    range the RFC's recursion reaches: ``start`` a multiple of a power of two at least
    ``end - start``), left to right."""
    out: list[Node] = []
    while start < end:
        size = end - start
        level = size.bit_length() - 1  # the largest perfect subtree that fits
        out.append((level, start >> level))
        start += 1 << level
    return out


def frontier(size: int) -> list[Node]:
    """The right edge of a tree of ``size`` leaves: its largest perfect subtrees, left to
    right, which are all a leaf appended next may combine with."""
    return [
        (level, (size >> level) - 1)
        for level in reversed(range(size.bit_length()))
        if size >> level & 1
    ]


def grown(size: int, edge: dict[Node, Hash], leaves: Sequence[Hash]) -> list[tuple[Node, Hash]]:
    """The perfect subtrees that ``leaves`` (leaf hashes) complete when appended to a tree
    of ``size`` leaves whose :func:`frontier` hashes are ``edge``: each leaf, then each
    node it completes, in the order they are completed."""
    # The right edge as a stack of (level, index, hash), largest subtree first: a new leaf
    # merges with the top while the top is a left sibling of what is being built.
    stack = [(level, index, edge[(level, index)]) for level, index in frontier(size)]
    out: list[tuple[Node, Hash]] = []
    for index, digest in enumerate(leaves, start=size):
        level = 0
        out.append(((0, index), digest))
        while index & 1:
            digest = node_hash(stack.pop()[2], digest)
            level, index = level + 1, index >> 1
            out.append(((level, index), digest))
        stack.append((level, index, digest))
    return out


def range_hash(nodes: Sequence[Hash]) -> Hash:
    """The tree hash of a range from its :func:`subtrees`' hashes: folded from the right,
    as the RFC's recursion combines the smaller right part last."""
    if not nodes:
        return EMPTY_ROOT
    out = nodes[-1]
    for left in reversed(nodes[:-1]):
        out = node_hash(left, out)
    return out


Range = tuple[int, int]


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose tree hashes are the inclusion proof of leaf ``index`` in a
    tree of ``size`` leaves, in the proof's order (RFC 6962 PATH)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()  # PATH lists the sibling nearest the leaf first
    return out


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The leaf ranges whose tree hashes are the consistency proof from a tree of ``old``
    leaves to one of ``new`` (RFC 6962 PROOF); empty when ``old`` is 0 or ``new``."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old in (0, new):
        return []
    out: list[Range] = []
    lo, hi, whole = 0, new, True
    m = old
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            m -= k
            lo += k
            whole = False
    if not whole:
        out.append((lo, hi))
    out.reverse()
    return out


def proof_hashes(ranges: Sequence[Range], node: Callable[[Node], Hash]) -> list[Hash]:
    """The hashes of ``ranges``, from ``node`` (a stored perfect subtree's hash)."""
    return [range_hash([node(n) for n in subtrees(lo, hi)]) for lo, hi in ranges]


def root_from(node: Callable[[Node], Hash], size: int) -> Hash:
    return range_hash([node(n) for n in subtrees(0, size)])


def _right_shift_until(fn: int, sn: int, stop_on_set: bool) -> tuple[int, int]:
    while fn and ((fn & 1) == 0 if stop_on_set else fn & 1):
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(index: int, size: int, leaf: Hash, proof: Sequence[Hash], root: Hash) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows the leaf hash ``leaf`` at
    ``index`` in the tree of ``size`` leaves whose root is ``root`` (RFC 9162 2.1.3.2).
    The caller hashes the leaf itself: a leaf hash taken from the log proves nothing."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _right_shift_until(fn, sn, stop_on_set=True)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("the proof leads to another root")


def verify_consistency(
    old: int, new: int, old_root: Hash, new_root: Hash, proof: Sequence[Hash]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows that the tree of ``new`` leaves
    with root ``new_root`` extends the tree of ``old`` leaves with root ``old_root``
    (RFC 9162 2.1.4.2).

    From size 0 the only proof is the empty one, and it proves nothing but that any tree
    extends the empty tree: a client that held nothing trusts the new tree on first use.
    """
    if not 0 <= old <= new:
        raise ProofError(f"a tree of {new} cannot extend one of {old}")
    if old == 0 or old == new:
        _verify_trivial(old, old_root, new_root, proof)
        return
    if not proof:
        raise ProofError("an empty proof between different sizes")
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fr, sr = _walk_consistency(old, new, path)
    if fr != old_root:
        raise ProofError("the proof does not lead to the old root: the history was rewritten")
    if sr != new_root:
        raise ProofError("the proof does not lead to the new root")


def _verify_trivial(old: int, old_root: Hash, new_root: Hash, proof: Sequence[Hash]) -> None:
    if proof:
        raise ProofError(f"a proof from size {old} to itself or from 0 must be empty")
    if old == 0 and old_root != EMPTY_ROOT:
        raise ProofError("the empty tree has another root")
    if old != 0 and old_root != new_root:
        raise ProofError("two different roots for the same size: the log forked")


def _walk_consistency(old: int, new: int, path: Sequence[Hash]) -> tuple[Hash, Hash]:
    """The old and new roots ``path`` leads to (RFC 9162 2.1.4.2, steps 3 to 7)."""
    fn, sn = _right_shift_until(old - 1, new - 1, stop_on_set=False)
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the trees are deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                fn, sn = _right_shift_until(fn, sn, stop_on_set=True)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the proof is shorter than the trees are deep")
    return fr, sr


def tree_root(leaves: Sequence[bytes]) -> Hash:
    """The root of a tree over ``leaves`` (their bytes), computed from nothing stored: for
    tests, and for checking a copy of the whole log."""
    return hashes_root([leaf_hash(leaf) for leaf in leaves])


def hashes_root(hashes: Sequence[Hash]) -> Hash:
    """The root of a tree whose leaf hashes are ``hashes``."""
    return _mth(hashes, 0, len(hashes)) if hashes else EMPTY_ROOT


def _mth(hashes: Sequence[Hash], lo: int, hi: int) -> Hash:
    if hi - lo == 1:
        return hashes[lo]
    k = _split(hi - lo)
    return node_hash(_mth(hashes, lo, lo + k), _mth(hashes, lo + k, hi))
