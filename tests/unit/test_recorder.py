"""What an agent does with the batches it takes, driven without Faust or a broker: a
batch is acked only once the ledger has it, and its records that are not events have
gone to the dead letters first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.recorder import AcksInOrder, Batching, Recorder
from agents.sink import GROUP_LIMIT, IN_FLIGHT_GROUPS
from agents.writer import Handled
from pipeline.engine import Position
from pipeline.ledger.writing.ingest import Record
from schemas.decisions import ALLOWED, Decision, RuleId
from tests.logged import logged

TOPIC = "sharing.referral"


@dataclass
class Message:
    offset: int
    value: bytes | None
    topic: str = TOPIC
    partition: int = 0
    key: bytes | None = None
    timestamp: float | None = 0.0


@dataclass
class Taken:
    message: Message


class Ledger:
    """A sink that records each write, and writes only when let go."""

    def __init__(self) -> None:
        self.written: list[list[int]] = []
        self.handed = 0  # records handed to write, written or not yet
        self.let_go = asyncio.Event()
        self.let_go.set()

    async def write(self, records: Sequence[Record]) -> list[Handled]:
        self.handed += len(records)
        await self.let_go.wait()
        self.written.append([position.offset or 0 for _, position in records])
        return [_handled(raw, position) for raw, position in records]


def _handled(raw: bytes, position: Position) -> Handled:
    if raw == b"junk":
        return Handled(
            "decision",
            position,
            None,
            Decision.rejected(RuleId.EVENT_INVALID, "not JSON"),
            f"receipt of {position.offset}".encode(),
        )
    receipt = f"receipt of {position.offset}".encode()
    return Handled("decision", position, f"e-{position.offset}", ALLOWED, receipt)


class Journal:
    """Everything the recorder did outside the ledger, in order."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, int]] = []

    async def ack(self, taken: Taken) -> None:
        self.steps.append(("ack", taken.message.offset))

    async def receipt(self, key: bytes, value: bytes) -> None:
        self.steps.append((f"receipt {key.decode()}: {value.decode()}", 0))

    async def deadletter(self, key: bytes | None, value: bytes, headers: Any) -> None:
        reason = dict(headers)["reason"].decode()
        offset = int(dict(headers)["source.offset"])
        self.steps.append((f"deadletter: {reason}", offset))


def batch(*values: bytes, first: int = 0) -> list[Taken]:
    return [Taken(Message(first + n, value)) for n, value in enumerate(values)]


async def batches_of(*taken: list[Taken], then: float = 0.0) -> AsyncIterator[Sequence[Taken]]:
    """The batches, then a stream that stays open ``then`` seconds more, as a topic's does."""
    for each in taken:
        yield each
    await asyncio.sleep(then)


def recorder_on(ledger: Ledger, journal: Journal, receipts: bool = False) -> Recorder:
    send_receipt = journal.receipt if receipts else None
    return Recorder(ledger, Batching(patience=0.0), journal.deadletter, dict, send_receipt)


def test_each_records_receipt_is_sent_after_the_ledger_has_it_and_before_the_ack() -> None:
    async def scenario() -> None:
        ledger, journal = Ledger(), Journal()
        recorder = recorder_on(ledger, journal, receipts=True)
        await recorder.handle(batch(b"{}", b"junk"), journal.ack)
        assert journal.steps == [
            ("deadletter: not JSON", 1),
            ("receipt e-0: receipt of 0", 0),
            (f"receipt {TOPIC}/0/1: receipt of 1", 0),
            ("ack", 0),
            ("ack", 1),
        ]

    asyncio.run(scenario())


def test_a_batch_whose_receipts_the_broker_refuses_is_not_acked_until_they_go() -> None:
    async def scenario() -> None:
        ledger, journal = Ledger(), Journal()
        refusals = [RuntimeError("broker away")]

        async def flaky(key: bytes, value: bytes) -> None:
            if refusals:
                raise refusals.pop()
            await journal.receipt(key, value)

        recorder = Recorder(ledger, Batching(patience=0.0), journal.deadletter, dict, flaky)
        await recorder.handle(batch(b"{}"), journal.ack)
        assert journal.steps == [("receipt e-0: receipt of 0", 0), ("ack", 0)]

    asyncio.run(scenario())


def test_a_batch_is_acked_only_once_the_ledger_has_it() -> None:
    async def scenario() -> None:
        ledger, journal = Ledger(), Journal()
        ledger.let_go.clear()
        recording = asyncio.ensure_future(
            recorder_on(ledger, journal).handle(batch(b"{}", b"{}"), journal.ack)
        )
        await asyncio.sleep(0.01)
        assert journal.steps == []
        ledger.let_go.set()
        await recording
        assert ledger.written == [[0, 1]]
        assert journal.steps == [("ack", 0), ("ack", 1)]

    asyncio.run(scenario())


class Overtaken(Ledger):
    """A sink that writes the first batch only once the second has been written, as a
    group retried after a failure lands after the group behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.second_written = asyncio.Event()

    async def write(self, records: Sequence[Record]) -> list[Handled]:
        first = self.handed == 0
        self.handed += len(records)
        if first:
            await self.second_written.wait()
        self.written.append([position.offset or 0 for _, position in records])
        if not first:
            self.second_written.set()
        return [_handled(raw, position) for raw, position in records]


@pytest.mark.parametrize("agent", ["record_facts", "record_sharing"])
def test_a_batch_recorded_before_the_one_taken_ahead_of_it_waits_for_it_to_be_acked(
    agent: str,
) -> None:
    """Faust commits the first run of acked offsets, even above one still unacked: acked
    out of order, a batch still being recorded would be skipped after a kill."""

    async def scenario() -> None:
        ledger, journal = Overtaken(), Journal()
        record = getattr(recorder_on(ledger, journal, receipts=True), agent)
        await record(batches_of(batch(b"{}", b"{}"), batch(b"{}", first=2), then=0.2), journal.ack)
        assert ledger.written == [[2], [0, 1]]
        assert [offset for step, offset in journal.steps if step == "ack"] == [0, 1, 2]
        receipted = [step for step, _ in journal.steps].index("receipt e-0: receipt of 0")
        assert journal.steps.index(("ack", 2)) > receipted

    asyncio.run(scenario())


@given(st.permutations(range(12)))
def test_batches_are_acked_in_the_order_taken_whatever_order_their_records_finish(
    finishing: list[int],
) -> None:
    async def scenario() -> list[int]:
        journal = Journal()
        acks = AcksInOrder(journal.ack)
        taken = batch(*[b"{}"] * 12)
        each = {}
        for first in range(0, 12, 4):
            ack = acks.taken(taken[first : first + 4])
            each.update({n: ack for n in range(first, first + 4)})
        await asyncio.gather(*(each[n](taken[n]) for n in finishing))
        return [offset for _, offset in journal.steps]

    assert asyncio.run(scenario()) == list(range(12))


def test_no_batch_is_acked_while_one_taken_before_it_is_unfinished() -> None:
    async def scenario() -> list[int]:
        journal = Journal()
        acks = AcksInOrder(journal.ack)
        taken = batch(b"{}", b"{}", b"{}")
        first, second = acks.taken(taken[:2]), acks.taken(taken[2:])
        await second(taken[2])
        await first(taken[0])
        return [offset for _, offset in journal.steps]

    assert asyncio.run(scenario()) == []


def test_what_is_not_an_event_is_dead_lettered_before_its_batch_is_acked() -> None:
    async def scenario() -> None:
        ledger, journal = Ledger(), Journal()
        await recorder_on(ledger, journal).handle(batch(b"{}", b"junk"), journal.ack)
        assert journal.steps == [("deadletter: not JSON", 1), ("ack", 0), ("ack", 1)]

    asyncio.run(scenario())


def test_every_batch_a_sharing_agent_takes_is_recorded_and_acked() -> None:
    async def scenario() -> None:
        ledger, journal = Ledger(), Journal()
        taken = [batch(b"{}", b"{}", first=n * 2) for n in range(5)]
        stream = batches_of(*taken, then=0.2)
        await recorder_on(ledger, journal).record_sharing(stream, journal.ack)
        assert sorted(offset for written in ledger.written for offset in written) == list(range(10))
        assert sorted(offset for _, offset in journal.steps) == list(range(10))

    asyncio.run(scenario())


def test_the_facts_agent_records_each_batch_it_takes() -> None:
    async def scenario() -> None:
        ledger, journal = Ledger(), Journal()
        taken = [batch(b"{}", first=n) for n in range(3)]
        await recorder_on(ledger, journal).record_facts(batches_of(*taken, then=0.1), journal.ack)
        assert sorted(ledger.written) == [[0], [1], [2]]
        assert sorted(journal.steps) == [("ack", 0), ("ack", 1), ("ack", 2)]

    asyncio.run(scenario())


@pytest.mark.parametrize("agent", ["record_facts", "record_sharing"])
def test_small_batches_still_fill_every_group_the_writer_has_in_hand(agent: str) -> None:
    """An agent hands on what it has taken without waiting for a full batch, so live its
    batches are small. Counted in batches, what it had in flight then fed the writer a few
    records at a time once a backlog built; counted in records, it fills the writer's
    groups (the one written, the one waiting, the one gathering) whatever the batches."""

    async def scenario() -> int:
        ledger, journal = Ledger(), Journal()
        ledger.let_go.clear()
        wanted = (IN_FLIGHT_GROUPS + 1) * GROUP_LIMIT
        taken = [batch(*[b"{}"] * 10, first=n * 10) for n in range(wanted // 10 + 5)]
        record = getattr(recorder_on(ledger, journal), agent)
        recording = asyncio.ensure_future(record(batches_of(*taken, then=10), journal.ack))
        for _ in range(200):  # until the agent has handed on all it may, or 2 s
            if ledger.handed >= wanted:
                break
            await asyncio.sleep(0.01)
        recording.cancel()
        return ledger.handed

    assert asyncio.run(scenario()) >= (IN_FLIGHT_GROUPS + 1) * GROUP_LIMIT


class Broken(Ledger):
    """A sink that fails its first batch, as a bug in the writer's answer would."""

    async def write(self, records: Sequence[Record]) -> list[Handled]:
        self.handed += len(records)
        if self.handed == len(records):
            raise RuntimeError("a bug")
        await asyncio.sleep(0.01)
        return [_handled(raw, position) for raw, position in records]


@pytest.mark.parametrize("agent", ["record_facts", "record_sharing"])
def test_a_batch_that_fails_is_said_acks_nothing_after_it_and_stops_the_worker(
    agent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unacked, it holds back every later ack: the worker would commit nothing more and
    only hold more in memory. Stopped, it is started again and all is delivered again."""
    ledger, journal = Broken(), Journal()
    stops: list[BaseException] = []

    async def stop(exc: BaseException) -> None:
        stops.append(exc)

    async def scenario() -> None:
        taken = [batch(b"{}", first=n) for n in range(3)]
        recorder = Recorder(
            ledger, Batching(patience=0.0), journal.deadletter, dict, on_failure=stop
        )
        await getattr(recorder, agent)(batches_of(*taken, then=0.3), journal.ack)

    said = logged(capsys, lambda: asyncio.run(scenario()))
    assert journal.steps == []
    assert [e["error"] for e in said if e["event"] == "batch_failed"] == ["RuntimeError"]
    assert [type(exc) for exc in stops] == [RuntimeError]
