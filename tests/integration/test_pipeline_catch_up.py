"""A worker started on a backlog: the topics drained at their own paces must not turn
every census into a string of re-evaluations (agents.pacing)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.engine import Engine, Position
from pipeline.ledger.records.entry import EntryKind
from pipeline.policy.pack import Policy
from pipeline.simulate import simulate
from pipeline.transport.kafka import KafkaConfig, ensure_topics
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline
from tests.integration.streaming import ledger_count, ledger_final, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_backlog_drained_makes_about_the_re_evaluations_of_the_events_in_sent_order(
    kafka: KafkaConfig, tmp_path: Path, policy: Policy
) -> None:
    # A school year of 1,500 pupils, sent in order before any worker runs: the census
    # topic holds a few hundred records, the lifecycle topic thousands.
    backlog = [orjson.dumps(line.event) for line in simulate(1500, violation_rate=0.05, seed=3)]
    engine = Engine(policy)
    outcomes = [
        o for n, raw in enumerate(backlog) for o in engine.process(raw, Position.line("-", n))
    ]
    in_order = sum(1 for o in outcomes if o.kind == "reevaluation")
    decided = sum(1 for o in outcomes if o.kind == "decision")
    ensure_topics(kafka)
    with MisProducer(kafka) as producer:
        producer.send_all(backlog, timeout=120)

    url = f"sqlite:///{tmp_path}/ledger.db"
    with Pipeline(url, kafka, worker_log=tmp_path / "worker.log"):
        assert wait_until(lambda: ledger_count(url) >= decided, timeout=180), (
            f"{ledger_count(url)} of {decided} decision entries; worker log: "
            + (tmp_path / "worker.log").read_text()[-3000:]
        )
    final = {
        e: (d.decision.value, tuple(r.value for r in d.rules))
        for e in {o.event_id for o in outcomes if o.recorded and isinstance(o.event_id, str)}
        if (d := engine.current(e)) is not None
    }
    assert ledger_final(url) == final
    assert ledger_count(url, EntryKind.REEVALUATION) <= in_order, f"{in_order} in sent order"
