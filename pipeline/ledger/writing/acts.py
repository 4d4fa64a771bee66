"""Acts (reads, changes of users) appended to the chain, many threads' at once in one
transaction.

Every audited read is an entry in the chain, appended under the chain-head lock before
the answer goes out. One transaction per read made the lock the API's bottleneck: each
holder made several round trips, and between them waited for the interpreter's lock
behind the threads building other answers, so readers queued on the chain. Here the
first thread to find no one writing takes every act waiting at that moment and appends
them in one transaction (a group commit); the others wait for it and get their own seq.
Each act is still in the chain before its thread goes on.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.ledger.records.entry import Entry, EntryKind
from pipeline.ledger.storage.errors import is_unavailable
from pipeline.ledger.storage.store import Ledger, NewEntry, now_text

#: The most acts one transaction appends: a bound on how long the lock is held.
MOST_AT_ONCE = 256


@dataclass(slots=True)
class _Act:
    kind: EntryKind
    details: dict[str, Any]
    refers_to: int | None
    pupil_keys: Sequence[str]
    seq: int | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass(slots=True)
class _Queue:
    """The acts waiting on one ledger, and whether a thread is appending some now."""

    waiting: list[_Act] = field(default_factory=list)
    writing: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)


_queues: weakref.WeakKeyDictionary[Ledger, _Queue] = weakref.WeakKeyDictionary()
_queues_lock = threading.Lock()


def append_act(
    ledger: Ledger,
    kind: EntryKind,
    details: dict[str, Any],
    refers_to: int | None = None,
    pupil_keys: Sequence[str] = (),
) -> int:
    """Append one act (see :meth:`Entry.act`) to the chain; its seq, once it is committed.

    Raises what appending it raised: a database that refuses fails every act of its
    transaction; any other failure, only the act that caused it.
    """
    queue = _queue_of(ledger)
    act = _Act(kind, details, refers_to, pupil_keys)
    with queue.changed:
        queue.waiting.append(act)
    while True:  # until this act is written: by this thread, or by another in its batch
        with queue.changed:
            while queue.writing and not act.done:
                queue.changed.wait()
            if act.done:
                break
            queue.writing = True
            taken, queue.waiting = queue.waiting[:MOST_AT_ONCE], queue.waiting[MOST_AT_ONCE:]
        try:
            _append_all(ledger, taken)
        finally:
            with queue.changed:
                for each in taken:
                    if each.seq is None and each.error is None:  # the writer was interrupted
                        each.error = RuntimeError("the act was not appended")
                    each.done = True
                queue.writing = False
                queue.changed.notify_all()
    if act.error is not None:
        raise act.error
    assert act.seq is not None
    return act.seq


def _queue_of(ledger: Ledger) -> _Queue:
    with _queues_lock:
        queue = _queues.get(ledger)
        if queue is None:
            queue = _queues[ledger] = _Queue()
        return queue


def _append_all(ledger: Ledger, acts: list[_Act]) -> None:
    """Append ``acts`` in one transaction, each given its seq or the error that stopped
    it. If the transaction fails for any reason but an unavailable database, each act is
    tried alone, so that one act that cannot be written fails no other."""
    try:
        _append(ledger, acts)
    except Exception as exc:
        if len(acts) == 1 or is_unavailable(exc):
            for act in acts:
                act.error = exc
            return
        for act in acts:
            try:
                _append(ledger, [act])
            except Exception as alone:
                act.error = alone


def _append(ledger: Ledger, acts: list[_Act]) -> None:
    with ledger.locked() as connection:
        head = Ledger.head(connection)[0]
        now = now_text()
        entries = [
            NewEntry(
                Entry.act(
                    head + n,
                    act.kind,
                    act.details,
                    recorded_at=now,
                    refers_to=act.refers_to,
                    pupil_keys=act.pupil_keys,
                )
            )
            for n, act in enumerate(acts, 1)
        ]
        ledger.append(connection, entries)
    for n, act in enumerate(acts, 1):
        act.seq = head + n
