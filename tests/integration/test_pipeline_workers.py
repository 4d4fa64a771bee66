"""Several workers on one PostgreSQL ledger: they share the topics' partitions in one
consumer group and append to one chain; killed again and again while events flow, they
record every event once, and the checkpoints they sign extend each other."""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path

import pytest

from pipeline.ledger import schema
from pipeline.ledger.store import Ledger
from pipeline.ledger.tree import consistency_proof
from pipeline.policy.pack import Policy
from pipeline.settings import DEFAULT_LOG_ORIGIN
from pipeline.transparency.merkle import verify_consistency
from pipeline.transparency.note import Signer, open_checkpoint
from pipeline.transport.kafka import KafkaConfig
from pipeline.transport.processes import Worker, worker_command
from tests.integration.streaming import ledger_count, wait_until
from tests.integration.test_pipeline_faults import (
    KEY_ENV,
    assert_recorded_exactly_once,
    send_paced,
    year_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_three_workers_on_postgresql_killed_ten_times_record_every_event_once(
    kafka: KafkaConfig, pg_url: str, tmp_path: Path, policy: Policy
) -> None:
    records = year_events(14_500, seed=13)[:30_000]
    assert len(records) == 30_000
    env = {
        **KEY_ENV,
        "SHARING_AUDIT_LOG_KEY": "6b" * 32,
        "SHARING_AUDIT_CHECKPOINT_SECONDS": "1",
        "SHARING_AUDIT_LOG_LEVEL": "WARNING",
    }
    schema.prepare(Ledger.open(pg_url).engine)  # one schema, not three workers racing for it
    log = tmp_path / "workers.log"
    workers = [Worker(worker_command(kafka.bootstrap, pg_url), log, env) for _ in range(3)]
    rng = random.Random(20261201)
    for worker in workers:
        worker.start()
    try:
        # Slow enough that events still flow at the tenth kill: the group rebalances after
        # each, and the killed worker's partitions wait out a session timeout (6 s).
        sender = threading.Thread(target=send_paced, args=(kafka, records, 400.0))
        sender.start()
        for _ in range(10):
            before = ledger_count(pg_url)

            def moved(than: int = before) -> bool:
                return ledger_count(pg_url) > than

            assert wait_until(moved, timeout=90), (
                "the workers made no progress: " + log.read_text()[-3000:]
            )
            time.sleep(rng.uniform(0.2, 2.0))
            assert sender.is_alive(), "the events stopped flowing before the tenth kill"
            victim = rng.choice(workers)
            victim.kill()
            victim.start()
        sender.join()
        assert_recorded_exactly_once(pg_url, records, policy, log, timeout=300)
    finally:
        for worker in workers:
            worker.stop()
    key = bytes.fromhex(env["SHARING_AUDIT_LOG_KEY"])
    _assert_checkpoints_extend_each_other(pg_url, Signer(DEFAULT_LOG_ORIGIN, key))


def _assert_checkpoints_extend_each_other(url: str, signer: Signer) -> None:
    """Every checkpoint the workers signed opens under the log's key, and each is proven
    an extension of the one before by the tree the entries make."""
    ledger = Ledger.open(url)
    with ledger.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT note FROM log_checkpoint ORDER BY size")
        notes = [note for (note,) in rows]
        signed = [open_checkpoint(note.encode(), signer.verifier)[0] for note in notes]
        assert len(signed) >= 2
        for old, new in itertools.pairwise(signed):
            proof = consistency_proof(connection, old.size, new.size)
            verify_consistency(old.size, new.size, old.root, new.root, proof)
    ledger.engine.dispose()
