"""Holding the sharing agents back to the facts agent while a backlog drains.

Each agent takes its own topic at its own pace. Live, that is harmless: records are taken
about as they are emitted. Draining a backlog (after downtime, or a first start against
full topics) it is not: a low-volume topic such as ``sharing.census`` races months of
emissions ahead of ``pupil.lifecycle``, its events are decided before the consents and
leaving facts the school emitted before them, and each of those facts then re-decides
them (the contract's late facts). The final decisions are the same, but the ledger gains
a re-evaluation entry per fact, and the writer spends most of its time making them.

So a sharing agent holds a batch while the facts agent is behind it: while some facts
partition of this worker still has records to take (its end offset is past what the facts
agent has taken) and what the facts agent has taken from it was emitted before the batch's
latest record. "Emitted" is the Kafka record timestamp, which the producer sets when the
MIS sends: the order across topics that the school emitted in. Facts partitions are
compared one by one because a consumer fetches a topic's partitions unevenly: one can be
minutes of emissions ahead of another.

Holding only saves work; progress never depends on it. No batch is held longer than
``patience`` seconds, whatever the facts agent does (a partition stalled, moved to another
worker, or an end offset the broker reports wrong), and a facts partition the agent has
not yet taken from counts as behind only during a worker's first ``patience`` seconds.
The default of ten seconds is meant to cover the wait of a facts partition for its next
fetch while a backlog drains (a consumer fetches about a megabyte of one partition at a
time; ``bench/pipeline.py`` shows what a backlog costs).

Nor does a held agent stop taking records: Faust hands every topic's records through one
conductor, so a stream that stopped taking would soon stop the facts stream it waits for.
It holds a bounded number of batches, and when they are all held the oldest goes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping

_EARLIEST = float("-inf")
#: How often a held batch looks again at the end offsets, which move without notice.
_RECHECK = 0.05


class Pacer:
    """Where the facts agent has got to in each partition, and whether a sharing batch
    must wait for it."""

    def __init__(self, patience: float, clock: Callable[[], float] = time.monotonic):
        self.patience = patience
        self.clock = clock
        self._next: dict[int, int] = {}  # per facts partition, the next offset to take
        self._emitted: dict[int, float] = {}  # ... and the latest emission time taken
        self._started: float | None = None  # the first sharing batch's arrival
        self._moved: asyncio.Event | None = None  # set when the facts agent moves on

    def facts_taken(self, records: Iterable[tuple[int, int, float]]) -> None:
        """The facts agent is handing on these records: (partition, offset, timestamp in
        seconds; 0 or less when the producer left it unset)."""
        for partition, offset, stamp in records:
            if offset >= self._next.get(partition, 0):
                self._next[partition] = offset + 1
            if stamp > self._emitted.get(partition, _EARLIEST):
                self._emitted[partition] = stamp
        self.wake()

    def holds(self, latest: float, ends: Mapping[int, int | None]) -> bool:
        """Whether a sharing batch whose latest record was emitted at ``latest`` waits,
        given the end offset of each facts partition this worker has (None: not known)."""
        if latest <= 0:
            return False
        for partition, end in ends.items():
            taken = self._next.get(partition)
            if taken is None:
                starting = self._started is None or self.clock() - self._started < self.patience
                behind = starting and (end is None or end > 0)
            else:
                behind = end is not None and end > taken
            if behind and self._emitted.get(partition, _EARLIEST) < latest:
                return True
        return False

    def wake(self) -> None:
        """Have every held batch look again at once (see ``enough`` of :meth:`wait_turn`)."""
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    async def wait_turn(
        self,
        latest: float,
        ends: Callable[[], Mapping[int, int | None]],
        enough: Callable[[], bool] = lambda: False,
        taken: float | None = None,
    ) -> float:
        """Wait while :meth:`holds`, until ``patience`` seconds after the batch was
        ``taken`` (by :attr:`clock`; default now), and only until ``enough`` says the agent
        can hold no more (call :meth:`wake` when that changes); the seconds waited.

        The patience runs from when the batch was taken, not from its turn: batches wait
        their turns one after another, and a facts agent that stopped moving (the worker
        stopping, or its partitions being taken away) held each of them a patience in turn,
        the last of 64 more than ten minutes."""
        began = self.clock()
        since = began if taken is None else min(taken, began)
        if self._started is None:
            self._started = since
        while not enough() and self.holds(latest, ends()):
            left = self.patience - (self.clock() - since)
            if left <= 0:
                break
            if self._moved is None:
                self._moved = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), timeout=min(left, _RECHECK))
        return self.clock() - began
