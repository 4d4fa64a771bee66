"""The pipeline survives its worker being killed and its database going away.

Invariants 1 and 2 of the design: every record read ends in the ledger exactly once, and
offsets are committed only after the ledger has the records, so a crash at any point
leaves no gap and no duplicate.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy.engine import make_url

from pipeline.checking import expected_of
from pipeline.engine import Engine
from pipeline.ledger.store import Ledger
from pipeline.ledger.verification import verify
from pipeline.policy.pack import Policy
from pipeline.simulate import simulate
from pipeline.transport.kafka import KafkaConfig
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline
from tests.integration.proxy import Proxy
from tests.integration.streaming import (
    ledger_count,
    ledger_final,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY_ENV = {"SHARING_AUDIT_PSEUDONYM_KEY": "5a" * 32}


def year_events(pupils: int, seed: int) -> list[bytes]:
    return [orjson.dumps(line.event) for line in simulate(pupils, violation_rate=0.05, seed=seed)]


def send_paced(kafka: KafkaConfig, records: list[bytes], per_second: float | None = None) -> None:
    """Send ``records`` (at about ``per_second``), every one acknowledged."""
    chunk = 250
    with MisProducer(kafka) as producer:
        for start in range(0, len(records), chunk):
            producer.send_all(records[start : start + chunk])
            if per_second:
                time.sleep(chunk / per_second)


def assert_recorded_exactly_once(
    url: str, records: list[bytes], policy: Policy, log: Path, timeout: float
) -> None:
    expected = expected_of(records, Engine(policy))
    done = wait_until(lambda: ledger_count(url) >= expected.entries, timeout=timeout)
    assert done, f"{ledger_count(url)} of {expected.entries}; log: {log.read_text()[-3000:]}"
    time.sleep(1.0)  # a duplicate, if there were one, would land now
    assert ledger_count(url) == expected.entries
    assert ledger_final(url) == expected.final
    ledger = Ledger.open(url)
    with ledger.engine.connect() as connection:
        result = verify(connection)
    ledger.engine.dispose()
    assert result.ok, result.fault


def test_a_worker_killed_five_times_while_events_flow_loses_and_repeats_nothing(
    kafka: KafkaConfig, db_url: str, tmp_path: Path, policy: Policy
) -> None:
    records = year_events(9_500, seed=11)
    assert len(records) >= 20_000
    log = tmp_path / "worker.log"
    rng = random.Random(20261129)
    with Pipeline(db_url, kafka, worker_log=log, env=KEY_ENV) as pipeline:
        # Slow enough that events still flow at the fifth kill: each restart takes a
        # session timeout (6 s) and a start-up before the worker records again.
        sender = threading.Thread(target=send_paced, args=(kafka, records, 300.0))
        sender.start()
        kills = 0
        while kills < 5:
            before = ledger_count(db_url)

            def moved(than: int = before) -> bool:
                return ledger_count(db_url) > than

            assert wait_until(moved, timeout=60), (
                "the worker made no progress: " + log.read_text()[-3000:]
            )
            time.sleep(rng.uniform(0.1, 2.5))
            assert sender.is_alive(), "the events stopped flowing before the fifth kill"
            assert pipeline.worker is not None
            pipeline.worker.kill()
            kills += 1
            pipeline.restart_worker()
        sender.join()
        assert_recorded_exactly_once(db_url, records, policy, log, timeout=240)
    assert wait_until(lambda: not _processes_using(db_url), timeout=30), (
        "worker processes outlived the pipeline: " + "; ".join(_processes_using(db_url))
    )


def _processes_using(url: str) -> list[str]:
    """Command lines of live processes given ``url`` (the workers and their writers)."""
    listing = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True)
    return [
        line
        for line in listing.stdout.splitlines()
        if url in line and not line.lstrip().startswith("Z") and "ps -eo" not in line
    ]


def _text(path: Path) -> str:
    """What a log file holds so far (nothing before its process made it)."""
    return path.read_text() if path.exists() else ""


def test_a_worker_waits_for_a_stopped_database_and_catches_up_when_it_is_back(
    kafka: KafkaConfig, pg_url: str, tmp_path: Path, policy: Policy
) -> None:
    real = make_url(pg_url)
    proxy = Proxy((real.host or "127.0.0.1", real.port or 5432))
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    log = tmp_path / "worker.log"
    first, second = year_events(150, seed=3), year_events(150, seed=4)
    with Pipeline(url, kafka, worker_log=log, env=KEY_ENV):
        send_paced(kafka, first)
        # Waited for, not slept on: a slow machine's worker takes more than seconds to start.
        said = wait_until(lambda: "database_unavailable" in _text(log), timeout=60)
        assert said, _text(log)[-3000:]
        assert ledger_count(pg_url) == 0
        proxy.up()
        assert_recorded_exactly_once(pg_url, first, policy, log, timeout=90)

        proxy.down()  # and now an outage while the worker runs
        send_paced(kafka, second)
        time.sleep(4)
        proxy.up()
        assert_recorded_exactly_once(pg_url, first + second, policy, log, timeout=120)
    proxy.down()
