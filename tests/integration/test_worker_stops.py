"""A worker that cannot record a batch stops, acking nothing, rather than going on past
it: started again (compose restarts it; ``up`` says that it stopped), it is delivered the
batch again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.transport.kafka import KafkaConfig, Lag, ensure_topics
from pipeline.transport.mis import MisProducer
from tests.integration.test_pipeline_faults import year_events

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_whose_batch_fails_exits_with_an_error_and_commits_nothing(
    kafka: KafkaConfig,
) -> None:
    ensure_topics(kafka)
    with MisProducer(kafka) as producer:
        producer.send_all(year_events(20, seed=5)[:40])
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.broken_worker", kafka.bootstrap],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0, said[-3000:]
    assert '"event": "batch_failed"' in said, said[-3000:]
    lag = Lag(kafka)
    try:
        assert lag.records() == 40, "a record of a batch that failed was committed"
    finally:
        lag.close()
