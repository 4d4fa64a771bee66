"""The ledger behind the agents: batches in, outcomes out, and no exception ever out.

Faust acks a message whose agent raised and never delivers it again, so every failure is
handled here. A database that cannot be reached (down, restarting, locked) is waited for,
with backoff, for as long as it takes: nothing is acked meanwhile, and the broker keeps
the records. Any other failure is retried a few times, then the batch is split to find
the record the engine fails on, and that record alone is recorded as rejected.

The writes run on one thread of their own: the database driver blocks, and the event
loop must go on heartbeating to the broker meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from pipeline.backoff import backoff_delays
from pipeline.engine import Outcome
from pipeline.ledger.ingest import LedgerWriter, Record
from pipeline.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

#: Attempts at a batch that fails for a reason other than the database being away.
ATTEMPTS = 3


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached now (so: wait and retry)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class LedgerSink:
    """Writes record batches to the ledger from async code."""

    def __init__(self, writer: LedgerWriter, first_delay: float = 0.5, cap: float = 30.0) -> None:
        self.writer = writer
        self.first_delay, self.cap = first_delay, cap
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    async def call(self, function: Any, *args: Any) -> Any:
        """Run a database call on the ledger thread, waiting out an unavailable database."""
        loop = asyncio.get_running_loop()
        delays = backoff_delays(self.first_delay, self.cap)
        while True:
            try:
                return await loop.run_in_executor(self.executor, function, *args)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                delay = next(delays)
                log.warning("database_unavailable", retry_in=round(delay, 2),
                            error=type(exc).__name__)  # fmt: skip
                await asyncio.sleep(delay)

    async def write(self, records: Sequence[Record]) -> list[Outcome]:
        """Record ``records``; every one of them ends in the ledger, whatever happens."""
        problem: Exception | None = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                outcomes: list[Outcome] = await self.call(self.writer.write, records)
                return outcomes
            except Exception as exc:
                problem = exc
                log.error("batch_failed", attempt=attempt, records=len(records),
                          error=type(exc).__name__)  # fmt: skip
        if len(records) > 1:
            middle = len(records) // 2
            return [*await self.write(records[:middle]), *await self.write(records[middle:])]
        reason = (
            f"could not be decided: internal error {type(problem).__name__}; the record is "
            "kept on sharing.deadletter, report it to the sharing-audit maintainers"
        )
        log.error("record_undecidable", error=type(problem).__name__,
                  topic=records[0][1].topic, partition=records[0][1].partition,
                  offset=records[0][1].offset)  # fmt: skip
        undecided: list[Outcome] = await self.call(self.writer.write, records, reason)
        return undecided

    def close(self) -> None:
        self.executor.shutdown(wait=True)
