"""What the agents do with the writer's results, without a broker."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import pickle
from typing import Any, cast

import pytest

from agents.app import create_app
from agents.recorder import Batching, deadletters, log_decisions
from agents.sink import GROUP_LIMIT, IN_FLIGHT_GROUPS
from agents.worker import settle_heap
from agents.writer import Handled
from pipeline.backoff import backoff_delays
from pipeline.engine import Position
from pipeline.logging import configure as configure_logging
from pipeline.transport.kafka import KafkaConfig
from schemas.decisions import ALLOWED, Decision, RuleId


def _at(offset: int) -> Position:
    return Position("sharing.referral", 0, offset)


def test_only_records_that_are_not_contract_events_are_dead_lettered() -> None:
    records = [(b"not json", _at(1)), (b"{}", _at(2)), (b'{"ok": 1}', _at(3))]
    handled = [
        Handled("decision", _at(1), None, Decision.rejected(RuleId.EVENT_INVALID, "not JSON")),
        Handled(
            "duplicate", _at(2), "e-2", Decision.rejected(RuleId.EVENT_INVALID, "data: missing")
        ),
        Handled("decision", _at(3), "e-3", ALLOWED),
        Handled("decision", _at(4), "e-4", Decision.rejected(RuleId.EVENT_ID_REUSED, "reused")),
    ]
    assert deadletters(handled, records) == [
        ((b"not json", _at(1)), "not JSON"),
        ((b"{}", _at(2)), "data: missing"),
    ]


def test_a_re_evaluation_is_never_dead_lettered() -> None:
    rejected = Decision.rejected(RuleId.EVENT_INVALID, "x")
    assert deadletters([Handled("reevaluation", _at(1), "e", rejected)], [(b"x", _at(1))]) == []


def test_backoff_grows_to_its_cap_and_stays_there() -> None:
    delays = list(itertools.islice(backoff_delays(first=0.5, cap=4.0), 8))
    assert 0.4 <= delays[0] <= 0.6
    assert delays[1] > delays[0]
    assert all(3.2 <= d <= 4.8 for d in delays[4:])


def test_a_decision_log_line_carries_the_event_id_and_kafka_position(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", json=True)
    try:
        breach = Decision.from_violations({RuleId.CONSENT_MISSING: ["no consent"]})
        log_decisions(
            [
                Handled("decision", _at(41), "e-41", breach),
                Handled("decision", _at(42), "e-42", ALLOWED),
            ]
        )
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        configure_logging(level="WARNING")
    [line] = [line for line in lines if line["event"] == "decision_recorded"]
    assert line["event_id"] == "e-41"
    assert (line["topic"], line["partition"], line["offset"]) == ("sharing.referral", 0, 41)
    assert line["decision"] == "breach" and line["rules"] == ["consent.missing"]


def test_records_and_their_results_cross_to_the_writer_process_unchanged() -> None:
    records = [(b"{}", _at(1)), (b"x", Position(None, None, None))]
    invalid = Decision.rejected(RuleId.EVENT_INVALID, "x")
    handled = [
        Handled("decision", _at(1), "e-1", ALLOWED),
        Handled("duplicate", _at(2), None, invalid),
    ]
    assert pickle.loads(pickle.dumps(records)) == records
    assert pickle.loads(pickle.dumps(handled)) == handled


@pytest.mark.parametrize("size", [1, 100, 500, 3_000, GROUP_LIMIT])
def test_one_agent_alone_can_fill_every_group_the_writer_has_in_hand(size: int) -> None:
    batching = Batching(size=size)
    assert batching.in_flight >= (IN_FLIGHT_GROUPS + 1) * GROUP_LIMIT
    assert batching.in_flight >= 2 * size  # one batch gathers while one is written


def test_settling_the_heap_leaves_what_exists_out_of_later_collections() -> None:
    def collected(thing: object) -> bool:
        return any(o is thing for o in gc.get_objects())

    before: list[int] = []  # a container: the collector tracks it
    gc.unfreeze()
    try:
        assert collected(before)
        settle_heap()
        assert not collected(before)
        assert collected([])  # what is made later is collected as ever
    finally:
        gc.unfreeze()


def test_the_workers_consumer_asks_the_broker_to_answer_a_fetch_within_50_ms() -> None:
    """The embedded broker answers a fetch only when its wait runs out, and Faust asks for
    1.5 s: a record sent to an idle worker waited for that before it was even taken."""

    async def fetch_wait() -> int:
        app = create_app(KafkaConfig("127.0.0.1:9"), sink=cast(Any, object()))
        thread = app.consumer._new_consumer_thread()
        consumer = thread._create_worker_consumer(app.transport)
        wait: int = consumer._fetch_max_wait_ms
        await consumer.stop()
        return wait

    assert asyncio.run(fetch_wait()) <= 50


def test_an_agent_hands_on_what_it_has_within_20_ms_rather_than_wait_for_a_full_batch() -> None:
    """Faust's take waits ``within`` for a batch to fill: at 200 ms, at low load each event
    waited up to that long before the ledger saw it. Under load batches still fill, as
    the writer's back-pressure leaves records to gather while the agent waits."""
    assert Batching().within <= 0.02
