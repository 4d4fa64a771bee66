"""The pipeline survives its worker being killed and its database going away.

Invariants 1 and 2 of the design: every record read ends in the ledger exactly once, and
offsets are committed only after the ledger has the records, so a crash at any point
leaves no gap and no duplicate.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy.engine import make_url

from pipeline.checking import expected_of
from pipeline.engine import Engine
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.storage.store import Ledger
from pipeline.policy.intake import read_event
from pipeline.policy.pack import Policy
from pipeline.settings import DEFAULT_LOG_ORIGIN
from pipeline.simulate import simulate
from pipeline.transparency.note import Signer
from pipeline.transport.kafka import KafkaConfig
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline
from tests.integration.proxy import Proxy
from tests.integration.receipt_checks import (
    assert_proven_in_the_first_checkpoint_after_each,
    receipts_by_line,
)
from tests.integration.streaming import (
    ledger_count,
    ledger_final,
    wait_until,
)
from tests.integration.test_receipts_interop import SOURCE as RECEIPTS_GO
from tests.integration.test_receipts_interop import go_opens
from tests.integration.test_transparency_interop import go_built

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


def test_a_worker_killed_five_times_and_its_broker_once_under_a_waiting_emit_loses_nothing(
    sqlite_url: str, tmp_path: Path, policy: Policy
) -> None:
    """The Done-when of issue 30 on SQLite: emit of 20,000 events waits for their receipts
    while the worker is SIGKILLed five times and the embedded broker (and every record it
    held) once; emit sends again what the broker lost and exits 0 on its own."""
    go_receipts = go_built(RECEIPTS_GO, tmp_path)  # skipped where Go is not installed
    records = year_events(9_500, seed=11)[:20_000]
    assert len(records) == 20_000
    events, receipts = tmp_path / "events.jsonl", tmp_path / "receipts.jsonl"
    events.write_bytes(b"\n".join(records) + b"\n")
    vkey = tmp_path / "log.vkey"
    vkey.write_text(LOG.verifier.vkey() + "\n")
    log = tmp_path / "worker.log"
    rng = random.Random(20261129)
    with Pipeline(sqlite_url, worker_log=log, env=RECEIPTED_ENV) as pipeline:
        emit = _emit(events, pipeline.broker, receipts, vkey, tmp_path / "emit.err")
        for fault in range(6):
            before = ledger_count(sqlite_url)

            def moved(than: int = before) -> bool:
                return ledger_count(sqlite_url) > than

            assert wait_until(moved, timeout=90), (
                "the worker made no progress: " + log.read_text()[-3000:]
            )
            time.sleep(rng.uniform(0.1, 1.0))
            assert emit.poll() is None, "emit ended before the last fault"
            if fault == 2:
                _kill_the_broker(pipeline)
            else:
                assert pipeline.worker is not None
                pipeline.worker.kill()
                pipeline.restart_worker()
        assert emit.wait(timeout=600) == 0, _text(tmp_path / "emit.err")[-3000:]
        assert_recorded_exactly_once(sqlite_url, records, policy, log, timeout=60)
    assert wait_until(lambda: not _processes_using(sqlite_url), timeout=30), (
        "worker processes outlived the pipeline: " + "; ".join(_processes_using(sqlite_url))
    )
    held = receipts_by_line(receipts, LOG.verifier, [read_event(r).key for r in records])
    assert go_opens(go_receipts, [h.note for h in held.values()], LOG) == f"ok {len(held)}"
    assert_proven_in_the_first_checkpoint_after_each(
        sqlite_url, [h.receipt for h in held.values()], LOG.verifier
    )


#: The worker's environment when its receipts are checked: the log's key known to the
#: test, and a checkpoint signed each second (the first after each entry comes soon).
RECEIPTED_ENV = {
    **KEY_ENV,
    "SHARING_AUDIT_LOG_KEY": "6b" * 32,
    "SHARING_AUDIT_CHECKPOINT_SECONDS": "1",
    "SHARING_AUDIT_LOG_LEVEL": "WARNING",
}
LOG = Signer(DEFAULT_LOG_ORIGIN, bytes.fromhex(RECEIPTED_ENV["SHARING_AUDIT_LOG_KEY"]))


def _emit(
    events: Path, broker: str, receipts: Path, vkey: Path, err: Path
) -> subprocess.Popen[bytes]:
    """``sharing-audit emit`` of ``events``, waiting for receipts and keeping them; a broker
    silent for 10 s (not the 30 s default, to keep the test short) has its lines sent again."""
    command = [sys.executable, "-m", "pipeline.cli", "emit", str(events), "--broker", broker]
    command += ["--receipts", str(receipts), "--vkey", str(vkey), "--timeout", "300"]
    command += ["--resend-after", "10"]
    with err.open("wb") as stderr:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)


def _kill_the_broker(pipeline: Pipeline) -> None:
    """SIGKILL the embedded broker (every record it held is lost) and start it again, as
    ``up`` does when it sees it die."""
    assert pipeline.embedded is not None and pipeline.embedded.process is not None
    pipeline.embedded.process.kill()
    pipeline.embedded.process.wait(10)
    assert pipeline.broker_died
    pipeline.restart_broker()


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
