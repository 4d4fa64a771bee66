"""The hash chain: how an entry's hash is made, and how a whole chain is checked.

``hash = SHA-256(prev_hash || canonical JSON of every other field)``. Pure: an auditor can
recompute it from an export with nothing but this module and the standard library's
hashlib (plus orjson for the canonical form).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

import orjson

from pipeline.canonical import canonical_json

GENESIS = "0" * 64


class Leaves(Protocol):
    """Where a check of the chain hands each entry's Merkle leaf hash, in order: a
    ``bytearray``, or a check of the tree that takes them as they come
    (:class:`pipeline.ledger.storage.tree.TreeCheck`)."""

    def __iadd__(self, hashes: bytes, /) -> Self: ...


#: The fields of an entry, in the order the ledger's documents list them.
ENTRY_FIELDS = (
    "seq",
    "kind",
    "refers_to",
    "event_id",
    "event_type",
    "occurred_at",
    "recorded_at",
    "school",
    "recipient",
    "pupil_keys",
    "categories",
    "lawful_basis",
    "decision",
    "rules",
    "reasons",
    "policy_version",
    "topic",
    "partition",
    "offset",
    "payload_digest",
    "details",
)


#: Fields held as JSON text in the database.
JSON_FIELDS = ("pupil_keys", "categories", "rules", "reasons", "details")


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The hash of an entry whose hashed fields are ``fields``, after ``prev_hash``.

    A JSON field may be given as its canonical JSON wrapped in ``orjson.Fragment``: the
    bytes hashed are the same, and the ledger need not decode what it stored to check it.
    """
    return link_hash(prev_hash, entry_leaf(fields))


def link_hash(prev_hash: str, leaf: bytes) -> str:
    """The chain hash of an entry whose :func:`entry_leaf` is ``leaf``, after ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode("ascii") + leaf).hexdigest()


def only_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed fields of ``entry`` and nothing else, in ``ENTRY_FIELDS`` order."""
    return {name: entry[name] for name in ENTRY_FIELDS}


def entry_leaf(fields: Mapping[str, Any]) -> bytes:
    """The entry's leaf in the ledger's Merkle tree: the canonical JSON of its hashed
    fields (``ENTRY_FIELDS``), the same bytes its chain hash covers after the previous
    hash. Pupils appear in it only as the pseudonyms the entry holds, so erasing a
    pupil's identity never changes a leaf. ``fields`` as :func:`entry_hash` takes them."""
    return canonical_json(only_fields(fields))


def leaf_fault(index: int, leaf: bytes) -> str | None:
    """Why ``leaf`` is not an entry the ledger could hold at leaf ``index`` (None when
    it could): the chain a mirror of the tiles can check without the ledger's hashes, for
    a leaf holds no ``prev_hash``. Each leaf is an entry's hashed fields in canonical form,
    numbered one after the leaf before it (seq ``index + 1``), referring to an earlier
    entry if to any."""
    try:
        fields = orjson.loads(leaf)
    except orjson.JSONDecodeError:
        return "its leaf is not JSON"
    if not isinstance(fields, dict) or sorted(fields) != sorted(ENTRY_FIELDS):
        return "its leaf is not an entry: its fields are not the ledger's"
    seq, refers_to = fields["seq"], fields["refers_to"]
    if seq != index + 1:
        return f"holds seq {seq!r} where seq {index + 1} follows seq {index}: the chain is broken"
    if refers_to is not None and not (type(refers_to) is int and 0 < refers_to < seq):
        return f"refers to seq {refers_to!r}, not to an earlier entry"
    if entry_leaf(fields) != leaf:
        return "its leaf is not in canonical form (keys sorted, no spaces)"
    return None


def stored_form(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with each JSON field as its canonical text (None stays None)."""
    out = dict(fields)
    for name in JSON_FIELDS:
        if out[name] is not None:
            out[name] = canonical_json(out[name]).decode()
    return out


def hashable_form(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entry with its JSON texts as fragments, ready for :func:`entry_hash`."""
    out = only_fields(stored)
    for name in JSON_FIELDS:
        if out[name] is not None:
            out[name] = orjson.Fragment(out[name])
    return out


@dataclass(frozen=True, slots=True)
class Verification:
    """The result of checking a chain: how many entries, the head, or the first fault."""

    count: int
    head_seq: int
    head_hash: str
    fault_seq: int | None = None
    fault: str | None = None

    @property
    def ok(self) -> bool:
        return self.fault is None


def verify_chain(
    entries: Iterable[Mapping[str, Any]], leaves: Leaves | None = None
) -> Verification:
    """Check entries in ``seq`` order: numbering from 1 without gaps, links, and hashes.

    Each entry is a mapping with ``prev_hash``, ``hash`` and every field in
    ``ENTRY_FIELDS`` (lists and objects decoded, or as fragments of their canonical text).
    Stops at the first fault and names the sequence number at which the stored chain stops
    being the chain that was written. ``leaves``, when given, receives each entry's Merkle
    leaf hash (32 bytes each, in order), for checking the tree in the same pass.
    """
    return verify_links(
        ((only_fields(entry), entry["prev_hash"], entry["hash"]) for entry in entries), leaves
    )


def verify_links(
    links: Iterable[tuple[Mapping[str, Any], str, str]],
    leaves: Leaves | None = None,
    first_seq: int = 1,
    prev: str | None = GENESIS,
) -> Verification:
    """:func:`verify_chain` of (hashed fields and nothing else, prev_hash, hash) triples,
    as the ledger reads its rows: nothing is copied to be checked.

    A part of a chain is checked from ``first_seq``; ``prev`` None takes its first
    entry's ``prev_hash`` as given, for whoever split the chain to check where the parts
    join (:mod:`pipeline.ledger.integrity.verification`)."""
    expected_seq = first_seq
    count = 0
    # canonical_json and link_hash, inlined: this loop runs once per entry of the ledger.
    dumps, sorted_keys, sha256 = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.sha256
    for fields, prev_hash, stored_hash in links:
        seq = fields["seq"]
        if seq != expected_seq:
            if seq > expected_seq:
                reason = f"missing: expected seq {expected_seq}, next stored is {seq}"
            else:
                reason = f"out of order: seq {seq} stored after {expected_seq - 1}"
            return Verification(count, expected_seq - 1, prev or "", expected_seq, reason)
        if prev is None:
            prev = prev_hash
        if prev_hash != prev:
            return Verification(
                count,
                seq - 1,
                prev,
                seq,
                f"does not link to seq {seq - 1}: an entry before it was removed, "
                "inserted or replaced",
            )
        leaf = dumps(fields, option=sorted_keys)
        if leaves is not None:
            leaves += sha256(b"\x00" + leaf).digest()
        if sha256(prev.encode("ascii") + leaf).hexdigest() != stored_hash:
            return Verification(
                count, seq - 1, prev, seq, "content changed: its hash does not match its fields"
            )
        prev = stored_hash
        count += 1
        expected_seq += 1
    return Verification(count, expected_seq - 1, prev or "")
