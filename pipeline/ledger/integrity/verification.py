"""Checking the whole ledger: its chain, its Merkle tree, the rows beside it, its
checkpoints (``sharing-audit ledger verify``).

A ledger of millions of entries is checked in ranges of ``seq`` on as many processes as
asked (``jobs``): each reads its range once and recomputes its links and leaves, and the
ranges are joined where one ends and the next begins. A split check finds the same first
fault, in the same words, as one pass: the join checks exactly what one pass would have
checked at those entries.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import threading
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from queue import Empty, Queue
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from pipeline.ledger.integrity.checkpoint_check import outside_fault
from pipeline.ledger.integrity.projections import projection_faults
from pipeline.ledger.integrity.sides import identity_faults, side_faults
from pipeline.ledger.log.checkpoints import checkpoint_faults
from pipeline.ledger.privacy.erasure import restored_identity_faults
from pipeline.ledger.privacy.rotation import fingerprint_faults
from pipeline.ledger.reading.queries import PAGE
from pipeline.ledger.records.chain import (
    ENTRY_FIELDS,
    GENESIS,
    JSON_FIELDS,
    Verification,
    verify_links,
)
from pipeline.ledger.storage.dialects import dialect_of
from pipeline.ledger.storage.models import read_columns, read_unpacker
from pipeline.ledger.storage.store import ENTRY, HEAD, make_engine
from pipeline.ledger.storage.tree import (
    STORED_FROM,
    Segment,
    TreeCheck,
    TreeIncomplete,
    beyond_fault,
    inclusion_proof,
    leaf_bytes,
    node_fault,
    nodes,
    stored_nodes,
)
from pipeline.pseudonym import Pseudonymiser
from pipeline.transparency.merkle import (
    ProofError,
    frontier,
    grown,
    leaf_hash,
    verify_inclusion,
)
from pipeline.transparency.note import Checkpoint, Verifier

#: The fewest entries worth a process of their own: starting one costs about what
#: checking this many entries does.
MIN_RANGE = 100_000


def default_jobs() -> int:
    """The processes a verify uses unless told: one per core this process may run on,
    at most eight (past that, the database's reads are the limit)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return max(1, min(8, len(usable) if usable is not None else os.cpu_count() or 1))


def verify(
    connection: Connection,
    pseudonyms: Pseudonymiser | None = None,
    log: Verifier | None = None,
    jobs: int = 1,
    min_range: int = MIN_RANGE,
) -> Verification:
    """Recompute the whole chain; check the chain head agrees with the last entry, the
    rows beside the chain with what it says of them (:mod:`pipeline.ledger.integrity.sides`): facts
    and payloads always, that no identity row names a pupil an erasure erased
    (:mod:`pipeline.ledger.privacy.erasure`), that the key's fingerprint recorded is the one the
    last key rotation made (:mod:`pipeline.ledger.privacy.rotation`), identity rows when
    ``pseudonyms`` (the key) is given; the indexes and users rebuilt from the entries
    (:mod:`pipeline.ledger.integrity.projections`); and the Merkle tree and the checkpoints kept
    against the entries (their signatures too, when ``log``, the log's verifier key, is
    given).

    Everything is read in one snapshot, so that entries appended meanwhile (a live
    worker) are not taken for a head without its entries: SQLite's transaction is one
    already; PostgreSQL's is made repeatable read when it has not begun. Processes
    checking ranges (up to ``jobs``, each of at least ``min_range`` entries) read in
    transactions of their own, each bounded by the last entry this snapshot holds:
    entries up to it never change but by tampering, which a range then finds."""
    dialect = dialect_of(connection)
    connection = dialect.one_snapshot(connection)
    with dialect.streaming(connection):
        leaves = TreeCheck(connection)  # the tree, checked as the leaves come
        try:
            return _verified(connection, pseudonyms, log, jobs, min_range, leaves)
        finally:
            leaves.close()


def _verified(
    connection: Connection,
    pseudonyms: Pseudonymiser | None,
    log: Verifier | None,
    jobs: int,
    min_range: int,
    leaves: TreeCheck,
) -> Verification:
    with _ranges_started(connection, jobs, min_range) as ranges:
        # The rows beside the chain are checked while the processes check the ranges.
        faults = side_faults(connection) + projection_faults(connection)
        faults += restored_identity_faults(connection) + fingerprint_faults(connection)
        if pseudonyms is not None:
            faults += identity_faults(connection, pseudonyms)
        if ranges is None:
            result = verify_links(_stored_chain(connection), leaves)
        else:
            result = ranges.joined(leaves)
    if not result.ok:
        return result
    head = connection.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
    headless = _head_fault(head.seq, head.hash, result)
    if headless is not None:
        return headless
    tree = leaves.faults()
    faults += tree or checkpoint_faults(connection, log)  # a faulty tree proves no root
    if faults:
        seq, fault = min(faults, key=lambda found: found[0])  # at one seq, the first check's
        return Verification(
            min(seq - 1, result.count), result.head_seq, result.head_hash, seq, fault
        )
    return result


def _head_fault(seq: int, digest: str, result: Verification) -> Verification | None:
    """The chain head (``seq``, ``digest``) not at the last entry the chain checked: the
    entries after it were removed, or the head was moved."""
    if (seq, digest) == (result.head_seq, result.head_hash):
        return None
    return Verification(
        result.count,
        result.head_seq,
        result.head_hash,
        result.head_seq + 1,
        f"missing: the chain head records seq {seq}, the last entry is seq {result.head_seq}",
    )


# -- one pass ----------------------------------------------------------------------------

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


def _stored_chain(
    connection: Connection, first: int = 1, last: int | None = None
) -> Iterator[tuple[dict[str, Any], str, str]]:
    """Every entry as stored (from ``first`` to ``last``), as (hashed fields, prev_hash,
    hash), JSON fields as fragments of their stored text: nothing is decoded or copied to
    be checked. The fields come in sorted order, which canonical JSON then has little
    left to sort."""
    names = sorted(ENTRY_FIELDS)
    read, dialect = (*names, "prev_hash", "hash"), dialect_of(connection)
    columns = read_columns(ENTRY, read, dialect)
    unpacked = read_unpacker(ENTRY, read, dialect)
    bounds = f"WHERE seq >= {int(first)}" + ("" if last is None else f" AND seq <= {int(last)}")
    with dialect.binary_results(connection):
        result = connection.exec_driver_sql(
            f"SELECT {columns} FROM ledger_entry {bounds} ORDER BY seq",
            execution_options={"stream_results": True, "yield_per": PAGE},
        )
    width = len(names)
    fragment = orjson.Fragment
    pages = result.partitions(PAGE)  # fetched a page at a time, not row by row
    if dialect.server:  # it answers while this process hashes
        pages = prefetched(pages)
    for page in pages:
        for row in page if unpacked is None else map(unpacked, page):
            fields = dict(zip(names, row, strict=False))  # stops at the hashed fields
            for name in JSON_FIELDS:
                value = fields[name]
                if value is not None:
                    fields[name] = fragment(value)
            yield fields, row[width], row[width + 1]


# -- ranges on processes of their own ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    """What a process found in its range: the first entry it read (seq and the prev_hash
    it stores, None when the range holds none), its check, and its check of the tree's
    blocks within the range (see :meth:`TreeCheck.part`)."""

    first_seq: int | None
    first_prev: str | None
    verification: Verification
    segments: list[Segment]
    tree_faults: dict[int, tuple[int, str]]


def _part(url: str, first: int, last: int) -> _Part:
    """Check the entries from ``first`` to ``last``, in a process of its own."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            links = _stored_chain(connection, first, last)
            head = next(links, None)
            if head is None:
                return _Part(None, None, Verification(0, first - 1, ""), [], {})
            tree = TreeCheck.of_part(connection, first - 1)
            try:
                fields, prev_hash, _ = head
                checked = verify_links(itertools.chain((head,), links), tree, first, prev=None)
                segments, faults = tree.part()
            finally:
                tree.close()
            return _Part(fields["seq"], prev_hash, checked, segments, faults)
    finally:
        engine.dispose()


class _Ranges:
    """The ranges being checked, each by a process of its own, and how they join."""

    def __init__(self, pool: ProcessPoolExecutor, bounds: list[tuple[int, int]], url: str):
        self.pool = pool
        self.bounds = bounds
        self.futures: list[Future[_Part]] = []
        self.url = url

    def start(self) -> None:
        for first, last in self.bounds:
            self.futures.append(self.pool.submit(_part, self.url, first, last))

    def joined(self, leaves: TreeCheck) -> Verification:
        """The whole chain's check from its parts, ``leaves`` given every leaf's hash;
        where two parts do not join, what one pass would have found there."""
        count, head_seq, head_hash = 0, 0, GENESIS
        for index, ((first, _), future) in enumerate(zip(self.bounds, self.futures, strict=True)):
            part = future.result()
            if first > 1 and head_seq != first - 1:  # the last part stopped short
                following = (f.result().first_seq for f in self.futures[index:])
                found = next((seq for seq in following if seq is not None), None)
                if found is None:  # nothing after: the chain head tells what is missing
                    return Verification(count, head_seq, head_hash)
                return Verification(
                    count,
                    head_seq,
                    head_hash,
                    head_seq + 1,
                    f"missing: expected seq {head_seq + 1}, next stored is {found}",
                )
            if part.first_seq == first and part.first_prev != head_hash:
                return Verification(
                    count,
                    head_seq,
                    head_hash,
                    first,
                    f"does not link to seq {first - 1}: an entry before it was removed, "
                    "inserted or replaced",
                )
            checked = part.verification
            if checked.count:
                head_seq, head_hash = checked.head_seq, checked.head_hash
            count += checked.count
            leaves.add_part(part.segments, part.tree_faults)
            if not checked.ok:
                return Verification(count, head_seq, head_hash, checked.fault_seq, checked.fault)
        return Verification(count, head_seq, head_hash)


@contextlib.contextmanager
def _ranges_started(connection: Connection, jobs: int, min_range: int) -> Iterator[_Ranges | None]:
    """Processes checking the chain in ranges, started; None when one pass is better:
    one job asked, too few entries to share out, or a database only this process sees."""
    if jobs < 2:
        yield None
        return
    url = connection.engine.url
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or database.startswith("file:")
    ):
        yield None
        return
    top = int(connection.execute(select(func.max(ENTRY.c.seq))).scalar() or 0)
    count = min(jobs, top // max(1, min_range))
    if count < 2:
        yield None
        return
    bounds = [(1 + top * i // count, top * (i + 1) // count) for i in range(count)]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(max_workers=count, mp_context=context)
    ranges = _Ranges(pool, bounds, url.render_as_string(hide_password=False))
    try:
        ranges.start()
        yield ranges
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- from a checkpoint already verified ----------------------------------------------------

#: New leaves grown into the tree a batch at a time.
_GROWN_AT_ONCE = 4096


def verify_from(
    connection: Connection, checkpoint: Checkpoint, where: str, log: Verifier | None = None
) -> Verification:
    """What an auditor returning after verifying the ledger up to ``checkpoint`` (kept in
    ``where``; its signature already checked) must check, and no more: that the tree at
    its size still has its root, that its last entry is that tree's, then only the
    entries after it (their chain, from that entry's stored hash) and the tree they grow
    from the old one (every stored node they complete, and none beyond), so that the new
    tree is consistent with the old by construction. The rows beside the chain and the
    projections are checked by a whole ``verify`` only. The checkpoints the log signed
    since are checked against the grown tree (their signatures too, given ``log``)."""
    dialect = dialect_of(connection)
    connection = dialect.one_snapshot(connection)
    with dialect.streaming(connection):
        return _verified_from(connection, checkpoint, where, log)


def _verified_from(
    connection: Connection, checkpoint: Checkpoint, where: str, log: Verifier | None
) -> Verification:
    size = checkpoint.size
    head = connection.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
    anchored = _anchor_fault(connection, checkpoint, where, int(head.seq))
    if anchored is not None:
        return Verification(0, size, "", min(size, int(head.seq)) + 1, anchored)
    prev = (
        GENESIS
        if size == 0
        else connection.execute(select(ENTRY.c.hash).where(ENTRY.c.seq == size)).scalar_one()
    )
    growth = _Growth(connection, size)
    try:
        result = verify_links(_stored_chain(connection, size + 1), growth, size + 1, prev)
        if not result.ok:
            return result
        headless = _head_fault(head.seq, head.hash, result)
        if headless is not None:
            return headless
        faults = growth.faults()
    finally:
        growth.close()
    faults = faults or checkpoint_faults(connection, log, after=size)
    if faults:
        seq, fault = min(faults, key=lambda found: found[0])  # at one seq, the first check's
        return Verification(
            max(min(seq - 1 - size, result.count), 0), result.head_seq, result.head_hash, seq, fault
        )
    return result


def _anchor_fault(
    connection: Connection, checkpoint: Checkpoint, where: str, entries: int
) -> str | None:
    """Whether the ledger still is what ``checkpoint`` signed: as many entries at least,
    the same root at its size, and its last entry's fields that tree's last leaf."""
    try:
        fault = outside_fault(connection, checkpoint, where, entries)
    except TreeIncomplete as exc:
        return f"the ledger's tree at size {checkpoint.size} cannot be made: {exc}"
    if fault is not None or checkpoint.size == 0:
        return fault
    size = checkpoint.size
    data = leaf_bytes(connection, size)
    try:
        proof = inclusion_proof(connection, size - 1, size)
        verify_inclusion(size - 1, size, leaf_hash(data or b""), proof, checkpoint.root)
    except (TreeIncomplete, ProofError):
        return (
            f"entry {size}, the last the checkpoint of size {size} kept in {where} covers, "
            "is not the one it signed"
        )
    return None


class _Growth:
    """The tree grown from the frontier of the tree already verified, as the new leaves'
    hashes come (``growth += hashes``): each node they complete at a stored level compared
    with the stored one (read on a connection of its own but on SQLite, as
    :class:`~pipeline.ledger.storage.tree.TreeCheck` does), and at the end no node stored beyond
    the new tree."""

    def __init__(self, connection: Connection, size: int) -> None:
        self.connection = connection
        self._reader = dialect_of(connection).reader(connection)
        self.size = size
        self._edge = nodes(connection, frontier(size))
        self._buffer = bytearray()
        self._fault: tuple[int, str] | None = None

    def __iadd__(self, hashes: bytes) -> _Growth:
        self._buffer += hashes
        if len(self._buffer) >= 32 * _GROWN_AT_ONCE:
            self._grow()
        return self

    def _grow(self) -> None:
        hashes = [bytes(self._buffer[i : i + 32]) for i in range(0, len(self._buffer), 32)]
        self._buffer.clear()
        made = grown(self.size, self._edge, hashes)
        known = {**self._edge, **dict(made)}
        self.size += len(hashes)
        self._edge = {n: known[n] for n in frontier(self.size)}
        if self._fault is not None:
            return
        wanted = [(node, digest) for node, digest in made if node[0] >= STORED_FROM]
        stored = stored_nodes(self._reader, [node for node, _ in wanted])
        for (level, index), digest in wanted:
            self._fault = node_fault(level, index, stored.get((level, index)), digest)
            if self._fault is not None:
                return

    def faults(self) -> list[tuple[int, str]]:
        if self._buffer:
            self._grow()
        if self._fault is not None:
            return [self._fault]
        for level in range(STORED_FROM, self.size.bit_length()):
            beyond = beyond_fault(self.connection, level, self.size >> level)
            if beyond is not None:
                return [beyond]
        return []

    def close(self) -> None:
        dialect_of(self.connection).close_reader(self.connection, self._reader)
