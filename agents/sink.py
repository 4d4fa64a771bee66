"""The ledger behind the agents: batches in, decisions out, and no exception ever out.

Faust acks a message whose agent raised and never delivers it again, so every failure is
handled here. A database that cannot be reached (down, restarting, locked) is waited for,
with backoff, for as long as it takes: nothing is acked meanwhile, and the broker keeps
the records. Any other failure is retried a few times, then the batch is split to find
the record the engine fails on, and that record alone is recorded as rejected.

The four agents' batches are written together: whatever has queued while the writer was
busy goes into the next transaction (a group commit), so a busy worker writes big
transactions and an idle one writes at once. The writing itself happens in a process of
its own (``agents.writer``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from agents import writer
from agents.writer import Failed, Handled, WriterSpec
from pipeline.backoff import backoff_delays
from pipeline.ledger.writing.ingest import Record
from pipeline.ledger.writing.outbox import Due
from pipeline.logging import get_logger
from pipeline.monitoring import WorkerFlow
from pipeline.policy.intake import undecidable_reason

log = get_logger(__name__)

#: Attempts at a batch that fails for a reason other than the database being away.
ATTEMPTS = 3
#: The most records one transaction takes from the queue.
GROUP_LIMIT = 4_000
#: Groups handed to the writer process before the first of them has been written: one.
#: With two, the next group was formed (and pickled) at once from the few records queued
#: when the last was handed over, and records arriving meanwhile waited behind both: at
#: half the worker's throughput, receipts came at p50 345 ms against 229 ms with one, for
#: the same throughput (bench/receipts.py --before, one run, ratio 0.97).
IN_FLIGHT_GROUPS = 1


class BatchFailed(Exception):
    """A write failed for a reason other than the database being away: ``failed`` says
    which exception, and its message."""

    def __init__(self, failed: Failed) -> None:
        super().__init__(str(failed))
        self.failed = failed


class LedgerSink:
    """Writes record batches to the ledger from async code."""

    def __init__(
        self,
        spec: WriterSpec,
        first_delay: float = 0.5,
        cap: float = 30.0,
        flow: WorkerFlow | None = None,
    ) -> None:
        self.spec = spec
        self.flow = flow or WorkerFlow()
        self.first_delay, self.cap = first_delay, cap
        self.pool = self._pool()
        self.queue: asyncio.Queue[tuple[list[Record], asyncio.Future[list[Handled]]]] | None = None
        self.task: asyncio.Task[None] | None = None

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, initializer=writer.start, initargs=(self.spec,))

    async def call(self, function: Any, *args: Any) -> Any:
        """Run ``function`` in the writer process, waiting out an unavailable database.
        Raises :class:`BatchFailed` for any other failure."""
        loop = asyncio.get_running_loop()
        delays = backoff_delays(self.first_delay, self.cap)
        while True:
            try:
                result = await loop.run_in_executor(self.pool, function, *args)
            except BrokenProcessPool:
                log.error("writer_process_died")
                self.pool = self._pool()
                result = Failed(True, "BrokenProcessPool")
            if not isinstance(result, Failed):
                return result
            if not result.unavailable:
                raise BatchFailed(result)
            delay = next(delays)
            log.warning("database_unavailable", retry_in=round(delay, 2), error=str(result))
            await asyncio.sleep(delay)

    async def write(self, records: Sequence[Record]) -> list[Handled]:
        """Record ``records``; every one of them ends in the ledger, whatever happens."""
        if self.task is None or self.task.done():
            self.queue = asyncio.Queue()
            self.task = asyncio.ensure_future(self._group_commits())
        assert self.queue is not None
        done: asyncio.Future[list[Handled]] = asyncio.get_running_loop().create_future()
        await self.queue.put((list(records), done))
        return await done

    async def _group_commits(self) -> None:
        assert self.queue is not None
        queue = self.queue
        # IN_FLIGHT_GROUPS at once: what queues while they are written is the next group,
        # whole. Were there more than one, the writer would run them in order; should the
        # first fail and be retried, a later one may land before it, which the engine
        # allows (decisions do not depend on arrival order) and which acks each batch only
        # after its own commit.
        slots = asyncio.Semaphore(IN_FLIGHT_GROUPS)
        writing: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                group = [await queue.get()]
                size = len(group[0][0])
                while not queue.empty() and size < GROUP_LIMIT:
                    item = queue.get_nowait()
                    group.append(item)
                    size += len(item[0])
                task = asyncio.ensure_future(self._write_group(group))
                writing.add(task)
                task.add_done_callback(writing.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            for task in writing:
                task.cancel()

    async def _write_group(
        self, group: list[tuple[list[Record], asyncio.Future[list[Handled]]]]
    ) -> None:
        """Write ``group`` and answer each of its batches; every batch's future is settled
        whatever happens, so no agent waits for ever on a batch (and never acks it)."""
        try:
            await self._answer_group(group)
        except asyncio.CancelledError:
            for _, done in group:
                done.cancel()
            raise
        except Exception as exc:  # a bug here; the agents see it rather than hang
            log.error("group_failed", error=type(exc).__name__, batches=len(group))
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)

    async def _answer_group(
        self, group: list[tuple[list[Record], asyncio.Future[list[Handled]]]]
    ) -> None:
        records = [r for item, _ in group for r in item]
        started = time.monotonic()
        try:
            handled: list[Handled] = await self.call(writer.write, records)
        except BatchFailed:
            for item, done in group:
                done.set_result(await self._write_resilient(item))
            return
        self.flow.group_records.observe(len(records))
        self.flow.group_seconds.observe(time.monotonic() - started)
        owner = {position: index for index, (item, _) in enumerate(group) for _, position in item}
        shares: list[list[Handled]] = [[] for _ in group]
        for h in handled:
            shares[owner.get(h.position, 0)].append(h)
        for (_, done), share in zip(group, shares, strict=True):
            done.set_result(share)

    async def _write_resilient(self, records: list[Record]) -> list[Handled]:
        error = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                handled: list[Handled] = await self.call(writer.write, records)
                return handled
            except BatchFailed as exc:
                error = exc.failed.error
                log.error("batch_failed", attempt=attempt, records=len(records), error=error)
        if len(records) > 1:
            middle = len(records) // 2
            return [
                *await self._write_resilient(records[:middle]),
                *await self._write_resilient(records[middle:]),
            ]
        reason = undecidable_reason(error)
        position = records[0][1]
        log.error(
            "record_undecidable",
            error=error,
            topic=position.topic,
            partition=position.partition,
            offset=position.offset,
        )
        return await self._write_undecidable(records, reason)

    async def _write_undecidable(self, records: list[Record], reason: str) -> list[Handled]:
        """Record ``records`` as rejected for ``reason``, retrying with backoff until the
        ledger takes them: such a write decides nothing (reading a record never raises), so
        what fails it is the database, and a record is held rather than lost."""
        delays = backoff_delays(self.first_delay, self.cap)
        while True:
            try:
                undecided: list[Handled] = await self.call(writer.write, records, reason)
                return undecided
            except BatchFailed as exc:
                delay = next(delays)
                position = records[0][1]
                log.error(
                    "record_unrecordable",
                    error=exc.failed.error,
                    topic=position.topic,
                    partition=position.partition,
                    offset=position.offset,
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)

    async def due_alerts(self, hold_seconds: float, limit: int) -> Due:
        due: Due = await self.call(writer.due, hold_seconds, limit)
        return due

    async def mark_relayed(self, seqs: list[int], status: str) -> None:
        if seqs:
            await self.call(writer.mark, seqs, status)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
