"""What every input agent does with the batches it takes, as a plain class that tests drive
without Faust or a broker.

A batch is recorded in one ledger transaction (``agents.sink``), the records that are not
contract events are sent to ``sharing.deadletter``, and only then is the batch acked, so
an offset is committed only after the ledger has the records below it. Several batches
may be in flight, so that the next one is gathered while the ledger writes this one; they
may finish in any order, but they are acked in the order they were taken
(:class:`AcksInOrder` says why).
The sharing agents may hold a batch for the facts agent first (``agents.pacing``).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from structlog.contextvars import bound_contextvars

from agents.pacing import Pacer
from agents.sink import GROUP_LIMIT
from agents.writer import Handled
from pipeline.backoff import backoff_delays
from pipeline.engine import Position
from pipeline.ledger.writing.ingest import Record
from pipeline.logging import get_logger
from pipeline.monitoring import WorkerFlow
from schemas.decisions import RuleId, Verdict

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Batching:
    """How many records an agent takes at once and how long it waits to fill a batch; how
    long at most a sharing agent waits for the facts agent to catch up, and how many of its
    batches (and bytes of records) it holds meanwhile (``agents.pacing`` says why); how
    often the relay looks for alerts, and how long an alert is held
    (``pipeline.ledger.writing.outbox`` says why).

    ``within`` is short: Faust's take hands on a batch when it is full or when ``within``
    runs out, so at low load every record waited for it (at 0.2 s, most of the time from
    send to receipt). Under load batches still fill: the writer's back-pressure (records
    in flight, ``in_flight``) leaves records to gather meanwhile."""

    size: int = 500
    within: float = 0.02
    patience: float = 10.0
    held: int = 64
    held_bytes: int = 64 * 2**20
    relay_interval: float = 0.5
    alert_hold: float = 60.0

    @property
    def in_flight(self) -> int:
        """Records an agent may have taken and not yet seen recorded: enough for one agent
        alone to fill three of the writer's groups (those in flight, the one gathering, and
        more), and two whole batches at least, so that a batch gathers while one is
        written. Counted in records, not batches: an agent hands on what it has taken
        without waiting for a full batch, so live its batches are small, and counted in
        batches they fed the writer a few records at a time once a backlog built. While a
        backlog drains the facts agent often runs alone; with fewer in flight it fed the
        writer groups smaller than a full group, each costlier per record."""
        return max(2 * self.size, 3 * GROUP_LIMIT)


class Allowance:
    """How many records an agent has in flight, against its :attr:`Batching.in_flight`.
    A batch waits until it fits, or until nothing else is in flight (so that a batch
    larger than the whole allowance still goes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def take(self, count: int) -> None:
        while self.used and self.used + count > self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.used += count

    def give_back(self, count: int) -> None:
        self.used -= count
        self._freed.set()


class AcksInOrder:
    """The acks of one agent's batches, passed on in the order the batches were taken,
    however they finish.

    Faust commits the first run of consecutive acked offsets of a partition, and does not
    look below it when nothing is committed yet (or when just one offset is missing): a
    batch acked while an earlier one was still being recorded let it commit past that
    one. A worker killed then lost the earlier batch's redelivery, and with it the
    receipts not yet sent (the three-worker kill test found 495 events without one).

    A batch counts as finished once each of its records has been acked to it, counted
    rather than matched, so that nothing depends on how Faust's records compare."""

    def __init__(self, ack: Ack) -> None:
        self._ack = ack
        self._turns: collections.deque[_Turn] = collections.deque()
        self._passing = asyncio.Lock()

    def taken(self, batch: Sequence[Taken]) -> Ack:
        """Note ``batch`` as taken, after every batch noted before it; what it returns is
        to be called once for each of its records."""
        turn = _Turn(list(batch))
        self._turns.append(turn)

        async def ack(_: Taken) -> None:
            turn.finished += 1
            if turn.finished == len(turn.batch):
                await self._pass_on()

        return ack

    async def _pass_on(self) -> None:
        async with self._passing:
            while self._turns and self._turns[0].finished >= len(self._turns[0].batch):
                for taken in self._turns.popleft().batch:
                    await self._ack(taken)


@dataclass(slots=True)
class _Turn:
    batch: list[Taken]
    finished: int = 0


class Message(Protocol):
    """What the recorder reads of a consumed record (Faust's ``Message`` has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None


class Taken(Protocol):
    """A consumed record as an agent takes it (Faust's ``Event``)."""

    @property
    def message(self) -> Message: ...


class Sink(Protocol):
    async def write(self, records: Sequence[Record]) -> list[Handled]: ...


Ack = Callable[[Any], Awaitable[Any]]
#: Send one record to the dead letters: its key, its bytes, and headers saying why.
SendDeadletter = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[Any]]
#: Send one receipt to ``sharing.receipts``: its key and the signed note.
SendReceipt = Callable[[bytes, bytes], Awaitable[Any]]


def deadletters(outcomes: Sequence[Handled], records: Sequence[Record]) -> list[tuple[Record, str]]:
    """The records that are not contract events, each with why: they go to the dead
    letters as well as to the ledger (redeliveries included, so none is missed)."""
    raw_at = {position: raw for raw, position in records}
    out = []
    for outcome in outcomes:
        if outcome.kind == "reevaluation" or outcome.decision.rules != (RuleId.EVENT_INVALID,):
            continue
        raw = raw_at.get(outcome.position)
        if raw is not None:
            out.append(((raw, outcome.position), outcome.decision.reasons[0]))
    return out


def receipts(handled: Sequence[Handled]) -> list[tuple[bytes, bytes]]:
    """Each receipt the batch owes, keyed so its sender finds it: by the event id, or for
    a record with no usable id by where it was read (``TOPIC/PARTITION/OFFSET``)."""
    out = []
    for h in handled:
        if h.receipt is None:
            continue
        position = h.position
        key = h.event_id if isinstance(h.event_id, str) else None
        key = key or f"{position.topic}/{position.partition}/{position.offset}"
        out.append((key.encode(), h.receipt))
    return out


def log_decisions(handled: Sequence[Handled]) -> None:
    """One log event per decision a person may need to find (not ``allowed``), with the
    event id and Kafka position bound; never the event's content."""
    for h in handled:
        if h.decision.decision is Verdict.ALLOWED or h.kind == "duplicate":
            continue
        with bound_contextvars(
            event_id=h.event_id if isinstance(h.event_id, str) else None,
            topic=h.position.topic,
            partition=h.position.partition,
            offset=h.position.offset,
        ):
            log.info(
                "decision_recorded",
                kind=h.kind,
                decision=h.decision.decision.value,
                rules=[r.value for r in h.decision.rules],
            )


class Recorder:
    """The batches of one worker's agents, from taken to acked.

    ``send_deadletter`` sends one record to the dead letters (it may return a future the
    broker settles); ``facts_ends`` gives the end offset of each facts partition this
    worker has, for the pacer.
    """

    def __init__(
        self,
        sink: Sink,
        batching: Batching,
        send_deadletter: SendDeadletter,
        facts_ends: Callable[[], dict[int, int | None]],
        send_receipt: SendReceipt | None = None,
        flow: WorkerFlow | None = None,
        on_failure: Callable[[BaseException], Awaitable[Any]] | None = None,
    ) -> None:
        self.sink = sink
        self.flow = flow or WorkerFlow()
        self.batching = batching
        self.send_deadletter = send_deadletter
        self.send_receipt = send_receipt
        self.facts_ends = facts_ends
        self.pacer = Pacer(batching.patience)
        self.on_failure = on_failure
        self.stopping: asyncio.Future[Any] | None = None

    async def handle(self, batch: Sequence[Taken], ack: Ack) -> None:
        """Record one batch, dead-letter what is not an event, send each record's receipt
        (the ledger has committed them: a receipt is never sent before), then (only then)
        ack. A worker that dies between the two leaves the batch unacked: redelivered, its
        records are receipted as duplicates naming the entries that recorded them."""
        records: list[Record] = []
        keys: dict[Position, bytes | None] = {}
        for taken in batch:
            message = taken.message
            position = Position(message.topic, message.partition, message.offset)
            records.append((message.value or b"", position))
            keys[position] = message.key
        topics = collections.Counter(str(position.topic) for _, position in records)
        for topic, n in topics.items():
            self.flow.consumed.labels(topic).inc(n)
        self.flow.in_flight.inc(len(batch))
        try:
            await self._record(batch, records, keys, ack)
        finally:
            self.flow.in_flight.dec(len(batch))
        for topic, n in topics.items():
            self.flow.recorded.labels(topic).inc(n)

    async def _record(
        self,
        batch: Sequence[Taken],
        records: list[Record],
        keys: dict[Position, bytes | None],
        ack: Ack,
    ) -> None:
        handled = await self.sink.write(records)
        kinds = collections.Counter((h.kind, h.decision.decision.value) for h in handled)
        for (kind, decision), n in kinds.items():
            self.flow.decisions.labels(kind, decision).inc(n)
        log_decisions(handled)
        dead = deadletters(handled, records)
        if dead:
            await _until_sent(self._send_deadletters, dead, keys)
        owed = receipts(handled)
        if owed and self.send_receipt is not None:
            await _until_sent(self._send_receipts, owed)
            self.flow.receipts.inc(len(owed))
        for taken in batch:
            await ack(taken)

    async def _send_deadletters(
        self, items: list[tuple[Record, str]], keys: dict[Position, bytes | None]
    ) -> None:
        sent = []
        for (raw, position), reason in items:
            with bound_contextvars(
                topic=position.topic, partition=position.partition, offset=position.offset
            ):
                log.warning("record_deadlettered", reason=reason)
            headers = [
                ("reason", reason.encode()),
                ("source.topic", str(position.topic).encode()),
                ("source.partition", str(position.partition).encode()),
                ("source.offset", str(position.offset).encode()),
            ]
            sent.append(await self.send_deadletter(keys.get(position), raw, headers))
        await asyncio.gather(*(s for s in sent if asyncio.isfuture(s)))

    async def _send_receipts(self, owed: list[tuple[bytes, bytes]]) -> None:
        assert self.send_receipt is not None
        sent = [await self.send_receipt(key, receipt) for key, receipt in owed]
        await asyncio.gather(*(s for s in sent if asyncio.isfuture(s)))

    def _start(self, batch: Sequence[Taken], acks: AcksInOrder, in_flight: Allowance) -> None:
        task = asyncio.ensure_future(self.handle(batch, acks.taken(batch)))
        task.add_done_callback(lambda _: in_flight.give_back(len(batch)))
        task.add_done_callback(self._noted_if_failed)

    def _noted_if_failed(self, task: asyncio.Task[None]) -> None:
        """A batch that failed (a bug: the sink answers every batch) is logged, and the
        worker is stopped (``on_failure``): the batch stays unacked, and so does every
        batch taken after it (:class:`AcksInOrder`), so the worker could commit nothing
        further and would only hold more in memory. Started again (compose and a service
        manager restart it; ``up`` says that it stopped), it is delivered all of it again."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("batch_failed", error=type(exc).__name__)
        if self.on_failure is not None and self.stopping is None:
            self.stopping = asyncio.ensure_future(self.on_failure(exc))

    async def record_facts(self, batches: AsyncIterable[Sequence[Taken]], ack: Ack) -> None:
        """Record the facts agent's batches as they come, each acked when its own
        transaction has committed."""
        in_flight, acks = Allowance(self.batching.in_flight), AcksInOrder(ack)
        async for batch in batches:
            await in_flight.take(len(batch))
            self.pacer.facts_taken(
                (t.message.partition, t.message.offset, t.message.timestamp or 0.0) for t in batch
            )
            self._start(batch, acks, in_flight)

    async def record_sharing(self, batches: AsyncIterable[Sequence[Taken]], ack: Ack) -> None:
        """As :meth:`record_facts`, but each batch may be held for the facts agent, and
        the agent goes on taking meanwhile, up to ``batching.held`` batches or
        ``batching.held_bytes`` of records, whichever comes first."""
        holding = _Holding(self, ack)
        handing = asyncio.ensure_future(holding.hand_on())
        try:
            async for batch in batches:
                await holding.hold(batch)
        finally:
            handing.cancel()


class _Holding:
    """A sharing agent's batches taken and not yet handed on to be recorded."""

    def __init__(self, recorder: Recorder, ack: Ack) -> None:
        self.recorder = recorder
        self.acks = AcksInOrder(ack)
        batching = recorder.batching
        # Each batch held, its size in bytes, and when it was taken (by the pacer's clock).
        self.held: asyncio.Queue[tuple[Sequence[Taken], int, float]] = asyncio.Queue(batching.held)
        self.held_bytes = 0
        self.in_flight = Allowance(batching.in_flight)

    def enough(self) -> bool:
        return self.held.full() or self.held_bytes >= self.recorder.batching.held_bytes

    async def hold(self, batch: Sequence[Taken]) -> None:
        size = sum(len(t.message.value or b"") for t in batch)
        self.held_bytes += size
        await self.held.put((batch, size, self.recorder.pacer.clock()))
        if self.enough():
            self.recorder.pacer.wake()

    async def hand_on(self) -> None:
        recorder = self.recorder
        while True:
            batch, size, taken = await self.held.get()
            latest = max(t.message.timestamp or 0.0 for t in batch)
            try:
                await recorder.pacer.wait_turn(latest, recorder.facts_ends, self.enough, taken)
            except Exception as exc:  # holding only saves work: never stall on it
                log.warning("pacing_failed", error=type(exc).__name__)
            self.held_bytes -= size
            await self.in_flight.take(len(batch))
            recorder._start(batch, self.acks, self.in_flight)


async def _until_sent(send: Any, *args: Any) -> None:
    """Retry a send to the broker until it is acknowledged: the records stay unacked."""
    delays = backoff_delays(first=0.5, cap=30.0)
    while True:
        try:
            await send(*args)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = next(delays)
            log.warning("send_failed", error=type(exc).__name__, retry_in=round(delay, 2))
            await asyncio.sleep(delay)
