"""Several workers on one PostgreSQL ledger: they share the topics' partitions in one
consumer group and append to one chain; killed again and again while events flow, they
record every event once, and the checkpoints they sign extend each other."""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import consistency_proof
from pipeline.policy.intake import read_event
from pipeline.policy.pack import Policy
from pipeline.settings import DEFAULT_LOG_ORIGIN
from pipeline.transparency.delivery import open_receipt
from pipeline.transparency.merkle import verify_consistency
from pipeline.transparency.note import Signer, Verifier, open_checkpoint
from pipeline.transport.kafka import RECEIPTS_TOPIC, KafkaConfig, read_topic
from pipeline.transport.processes import Worker, worker_command
from pipeline.transport.receipts import Held
from tests.integration.receipt_checks import assert_proven_in_the_first_checkpoint_after_each
from tests.integration.streaming import ledger_count, wait_until
from tests.integration.test_pipeline_faults import (
    KEY_ENV,
    assert_recorded_exactly_once,
    send_paced,
    year_events,
)
from tests.integration.test_receipts_interop import SOURCE as RECEIPTS_GO
from tests.integration.test_receipts_interop import go_opens
from tests.integration.test_transparency_interop import go_built

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_three_workers_on_postgresql_killed_ten_times_record_every_event_once(
    kafka: KafkaConfig, pg_url: str, tmp_path: Path, policy: Policy
) -> None:
    """The Done-when of issue 30 on PostgreSQL: every record holds receipts that agree,
    one of each opened by Go's note package, each proven in the first checkpoint after it.
    The receipts are read from sharing.receipts, not kept by emit: emit sends as fast as
    the broker takes, and the kills need events still flowing, so sending stays paced."""
    go_receipts = go_built(RECEIPTS_GO, tmp_path)  # skipped where Go is not installed
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
    signer = Signer(DEFAULT_LOG_ORIGIN, bytes.fromhex(env["SHARING_AUDIT_LOG_KEY"]))
    _assert_checkpoints_extend_each_other(pg_url, signer)
    held = _one_receipt_per_record(kafka, signer.verifier, records)
    assert go_opens(go_receipts, [h.note for h in held.values()], signer) == f"ok {len(held)}"
    assert_proven_in_the_first_checkpoint_after_each(
        pg_url, [h.receipt for h in held.values()], signer.verifier
    )


def _one_receipt_per_record(
    kafka: KafkaConfig, log: Verifier, records: list[bytes]
) -> dict[bytes, Held]:
    """One receipt of each record sent (by its ``record`` line), read from the receipts
    topic: asserts that every receipt opens under the log's key, that the receipts of one
    record (a redelivery after a kill is receipted again) name one entry and one event, and
    that every event sent is named."""
    got = read_topic(kafka, RECEIPTS_TOPIC, len(records), timeout=120, identity=_record_line)
    first: dict[bytes, Held] = {}
    for message in got:
        receipt, line = open_receipt(message.value, log), _record_line(message)
        agreed = first.setdefault(line, Held(receipt, message.value)).receipt
        assert (agreed.seq, agreed.leaf, agreed.event_id) == (
            receipt.seq,
            receipt.leaf,
            receipt.event_id,
        ), f"two receipts of {line!r} disagree"
    named = {held.receipt.event_id for held in first.values()}
    unnamed = {read_event(r).key for r in records} - named
    assert not unnamed, (
        f"{len(unnamed)} events sent hold no receipt"
        f" ({len(got)} receipts read, of {len(first)} records of {len(records)} sent)"
    )
    return first


def _record_line(message: Any) -> bytes:
    """A receipt's ``record TOPIC/PARTITION/OFFSET`` line: which record it is of."""
    return bytes(message.value.split(b"\n")[3])


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
