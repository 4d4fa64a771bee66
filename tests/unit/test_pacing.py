"""Holding sharing batches back to the facts agent while a backlog drains (agents.pacing)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from agents.app import _facts_ends
from agents.pacing import Pacer
from pipeline.transport.kafka import FACTS_TOPIC


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pacer(patience: float = 3.0) -> tuple[Pacer, Clock]:
    clock = Clock()
    return Pacer(patience, clock), clock


def test_a_batch_emitted_after_what_a_behind_facts_partition_has_given_is_held() -> None:
    pacer, _ = _pacer()
    pacer.facts_taken([(0, 9, 50.0)])
    assert pacer.holds(60.0, {0: 100})


def test_a_batch_emitted_before_the_facts_partition_got_to_is_not_held() -> None:
    pacer, _ = _pacer()
    pacer.facts_taken([(0, 9, 50.0)])
    assert not pacer.holds(50.0, {0: 100})
    assert not pacer.holds(40.0, {0: 100})


def test_a_facts_partition_taken_to_its_end_holds_nothing() -> None:
    pacer, _ = _pacer()
    pacer.facts_taken([(0, 99, 50.0)])
    assert not pacer.holds(60.0, {0: 100})


def test_the_facts_partition_furthest_behind_decides() -> None:
    pacer, _ = _pacer()
    pacer.facts_taken([(0, 9, 80.0), (1, 9, 50.0)])
    assert pacer.holds(60.0, {0: 100, 1: 100})
    assert not pacer.holds(60.0, {0: 100, 1: 10})  # partition 1 has nothing more


def test_a_facts_partition_this_worker_no_longer_has_holds_nothing() -> None:
    pacer, _ = _pacer()
    pacer.facts_taken([(0, 9, 50.0)])
    assert not pacer.holds(60.0, {})


def test_an_untaken_facts_partition_counts_as_behind_only_in_the_first_patience() -> None:
    pacer, clock = _pacer(patience=3.0)
    asyncio.run(pacer.wait_turn(60.0, lambda: {}))  # the first sharing batch starts the clock
    assert pacer.holds(60.0, {2: 100})
    assert pacer.holds(60.0, {2: None})  # its end not fetched yet
    assert not pacer.holds(60.0, {2: 0})  # an empty partition
    clock.now += 3.0
    assert not pacer.holds(60.0, {2: 100})


def test_a_batch_without_emission_times_is_never_held() -> None:
    pacer, _ = _pacer()
    pacer.facts_taken([(0, 9, 50.0)])
    assert not pacer.holds(0.0, {0: 100})


def test_facts_without_emission_times_hold_until_their_partition_is_taken() -> None:
    pacer, _ = _pacer()
    pacer.facts_taken([(0, 9, 0.0)])
    assert pacer.holds(60.0, {0: 100})
    assert not pacer.holds(60.0, {0: 10})


@dataclass
class Behind:
    """A worker whose facts partition 0 is behind a sharing batch emitted at 60."""

    pacer: Pacer = field(default_factory=lambda: Pacer(patience=30.0))
    ends: dict[int, int | None] = field(default_factory=lambda: {0: 100})
    full: bool = False

    def __post_init__(self) -> None:
        self.pacer.facts_taken([(0, 9, 50.0)])


def _held_then_released(release: Callable[[Behind], None]) -> tuple[bool, float]:
    """Whether the batch was held before ``release``, and the seconds it waited in all."""

    async def scenario() -> tuple[bool, float]:
        worker = Behind()
        waiting = asyncio.ensure_future(
            worker.pacer.wait_turn(60.0, lambda: worker.ends, lambda: worker.full)
        )
        await asyncio.sleep(0.01)
        held = not waiting.done()
        release(worker)
        return held, await asyncio.wait_for(waiting, timeout=5)

    return asyncio.run(scenario())


def test_a_held_batch_goes_as_soon_as_the_facts_agent_passes_it() -> None:
    held, waited = _held_then_released(lambda w: w.pacer.facts_taken([(0, 19, 61.0)]))
    assert held
    assert waited < 5


def test_a_held_batch_goes_when_the_facts_partition_reaches_its_end() -> None:
    def partition_ends(worker: Behind) -> None:
        worker.ends[0] = 10  # the partition moved away, or its end was misreported

    held, waited = _held_then_released(partition_ends)
    assert held
    assert waited < 5


def test_no_batch_is_held_longer_than_the_patience() -> None:
    pacer = Pacer(patience=0.05)
    pacer.facts_taken([(0, 9, 50.0)])
    waited = asyncio.run(asyncio.wait_for(pacer.wait_turn(60.0, lambda: {0: 100}), timeout=5))
    assert 0.05 <= waited < 1.0


def test_a_held_batch_goes_at_once_when_its_agent_can_hold_no_more() -> None:
    def fill(worker: Behind) -> None:
        worker.full = True
        worker.pacer.wake()

    held, waited = _held_then_released(fill)
    assert held
    assert waited < 5


def test_a_batch_is_held_no_longer_than_the_patience_since_it_was_taken() -> None:
    """Batches wait their turns one after another: a batch that waited behind another is
    not held a patience more once its turn comes (64 held batches were, one after another,
    when the facts agent stopped moving: ten minutes)."""
    pacer, clock = _pacer(patience=3.0)
    pacer.facts_taken([(0, 9, 50.0)])
    behind = {0: 100}
    assert pacer.holds(60.0, behind)
    turn = pacer.wait_turn(60.0, lambda: behind, taken=clock.now - 3.0)
    assert asyncio.run(asyncio.wait_for(turn, timeout=1)) == 0.0


def _worker(**state: Any) -> Any:
    """A Faust app as ``_facts_ends`` reads it: facts partition 0 ends at 100."""
    consumer = SimpleNamespace(
        flow_active=state.pop("flow_active", True),
        assignment=lambda: [SimpleNamespace(topic=FACTS_TOPIC, partition=0)],
        highwater=lambda tp: 100,
    )
    return SimpleNamespace(
        **{"consumer": consumer, "should_stop": False, "rebalancing": False, **state}
    )


def test_the_worker_tells_the_pacer_where_its_facts_partitions_end() -> None:
    assert _facts_ends(_worker()) == {0: 100}


@pytest.mark.parametrize(
    "state",
    [{"should_stop": True}, {"rebalancing": True}, {"flow_active": False}],
    ids=["stopping", "rebalancing", "fetching paused"],
)
def test_no_batch_waits_for_a_facts_agent_that_cannot_take_a_record(state: dict[str, Any]) -> None:
    """Stopping, or in a rebalance (Faust then waits for every record taken to be acked
    before the partitions go), the facts agent takes nothing: a batch held for it would be
    held for nothing, and would hold up the stop or the rebalance."""
    assert _facts_ends(_worker(**state)) == {}


def test_a_batch_said_to_be_taken_later_than_now_is_held_no_longer_than_the_patience() -> None:
    pacer = Pacer(patience=0.05)
    pacer.facts_taken([(0, 9, 50.0)])
    later = pacer.clock() + 1_000.0
    turn = pacer.wait_turn(60.0, lambda: {0: 100}, taken=later)
    assert asyncio.run(asyncio.wait_for(turn, timeout=5)) < 1.0
