"""No silent loss at shutdown (issue 30): ``up`` stopped while records wait for an
unavailable ledger says how many, keeps recording them, and only a second Ctrl-C loses
them, saying so; the embedded broker dying under ``up`` is said and the broker restarted.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline.checking import expected_of
from pipeline.engine import Engine
from pipeline.policy.pack import Policy
from pipeline.simulate import simulate
from pipeline.transport.kafka import ALL_TOPICS, KafkaConfig, Lag
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Worker
from tests.integration.streaming import ledger_count, wait_until

pytestmark = [pytest.mark.integration]

HOLD = """
import sqlite3, sys
held = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
held.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
sys.stdin.readline()
held.execute("ROLLBACK")
"""


def term_events(count: int = 81) -> list[bytes]:
    events = [orjson.dumps(line.event) for line in simulate(40, seed=30)]
    assert len(events) >= count
    return events[:count]


class Up:
    """``sharing-audit up`` as a subprocess, its output (worker log included) read as it
    comes, stopped at the end whatever happened."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output += line

    def said(self, pattern: str, timeout: float) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.output.decode(errors="replace"))
            found[:] = [match] if match else []
            return bool(match)

        assert wait_until(seen, timeout), f"never said {pattern!r}: {self.tail()}"
        return found[0]

    def tail(self) -> str:
        return self.output.decode(errors="replace")[-4000:]

    @property
    def broker(self) -> str:
        return self.said(r"broker: (127\.0\.0\.1:\d+)", 60).group(1)


@contextlib.contextmanager
def running_up(db: Path, *command: str) -> Iterator[Up]:
    """``sharing-audit up`` (or ``command``) on the SQLite ledger ``db``."""
    env = {
        **os.environ,
        "SHARING_AUDIT_PSEUDONYM_KEY": "5a" * 32,
        "SHARING_AUDIT_LOG_LEVEL": "WARNING",
    }
    env.pop("SHARING_AUDIT_BROKER", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *(command or ("up",)), "--db", f"sqlite:///{db}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    up = Up(process)
    try:
        yield up
    finally:
        for _ in range(2):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(30)
        if process.poll() is None:
            process.kill()


@contextlib.contextmanager
def sqlite_held(db: Path) -> Iterator[None]:
    """The ledger's file write-locked by another process until the block ends."""
    assert wait_until(lambda: _has_ledger(db), timeout=90), "the worker never made the ledger"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == b"held\n"
        yield
    finally:
        holder.stdin.close()
        holder.wait(30)


def _has_ledger(db: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=1)) as connection:
            found = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'ledger_entry'"
            ).fetchone()
        return found is not None
    except sqlite3.Error:
        return False


def send(broker: str, records: list[bytes]) -> None:
    with MisProducer(KafkaConfig(bootstrap=broker)) as producer:
        producer.send_all(records)


@pytest.mark.slow
def test_ctrl_c_while_the_ledger_is_held_says_what_is_not_recorded_and_records_it_before_stopping(
    tmp_path: Path, policy: Policy
) -> None:
    db = tmp_path / "ledger.db"
    events = term_events()
    with running_up(db) as up:
        broker = up.broker
        with sqlite_held(db):
            send(broker, events)
            up.process.send_signal(signal.SIGINT)
            up.said(r"81 records accepted but not yet recorded", timeout=30)
            time.sleep(35)  # past the old 30-second grace: still waiting, not killed
            assert up.process.poll() is None, up.tail()
            assert ledger_count(f"sqlite:///{db}") == 0
            assert "waiting for the ledger" in up.tail()
        assert up.process.wait(120) == 0, up.tail()
        assert "worker_killed" not in up.tail()
    expected = expected_of(events, Engine(policy))
    assert ledger_count(f"sqlite:///{db}") == expected.entries


@pytest.mark.slow
def test_ctrl_c_on_a_supervised_worker_records_what_it_accepted_before_stopping(
    tmp_path: Path, kafka: KafkaConfig, policy: Policy
) -> None:
    db = tmp_path / "ledger.db"
    events = term_events(20)
    log = tmp_path / "worker.log"
    command = ("worker", "--broker", kafka.bootstrap, "--log-file", str(log))
    with running_up(db, *command) as worker:
        with sqlite_held(db):
            send(kafka.bootstrap, events)
            worker.process.send_signal(signal.SIGINT)
            worker.said(r"20 records accepted but not yet recorded", timeout=30)
            time.sleep(3)
            assert worker.process.poll() is None, worker.tail()
        assert worker.process.wait(120) == 0, worker.tail()
    assert ledger_count(f"sqlite:///{db}") == expected_of(events, Engine(policy)).entries


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_saying_how_many_records_are_lost(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with running_up(db) as up:
        broker = up.broker
        with sqlite_held(db):
            send(broker, term_events())
            up.process.send_signal(signal.SIGINT)
            up.said(r"81 records accepted but not yet recorded", timeout=30)
            up.process.send_signal(signal.SIGINT)
            assert up.process.wait(20) == 1, up.tail()
    said = up.output.decode(errors="replace")
    assert "81 records not recorded are lost" in said
    assert "their senders hold no receipt for them" in said
    assert "Traceback" not in said


@pytest.mark.slow
def test_the_embedded_broker_killed_under_up_is_said_and_started_again_with_its_topics(
    tmp_path: Path, policy: Policy
) -> None:
    db = tmp_path / "ledger.db"
    url = f"sqlite:///{db}"
    with running_up(db) as up:
        broker = up.broker
        with sqlite_held(db):
            send(broker, term_events(5))
            lag = Lag(KafkaConfig(bootstrap=broker))
            assert wait_until(lambda: lag.records() == 5, timeout=10)
            time.sleep(2)  # up looks at the lag every second
            lag.close()
            os.kill(_broker_pid(broker), signal.SIGKILL)
            up.said(r"the embedded broker stopped .*5 records .* lost", timeout=30)
            up.said(rf"broker started again: {re.escape(broker)}", timeout=60)
        topics = _topics(broker)
        assert set(ALL_TOPICS) <= topics
        fresh = [orjson.dumps(line.event) for line in simulate(3, seed=31)[:6]]
        send(broker, fresh)
        expected = expected_of(fresh, Engine(policy)).entries
        assert wait_until(lambda: ledger_count(url) >= expected, timeout=120), up.tail()
        assert up.process.poll() is None, up.tail()


def _broker_pid(address: str) -> int:
    """The embedded broker listening at ``address`` (found by its command line)."""
    listener = f"tcp://{address}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if b"broker" in command and listener.encode() in command:
                return int(entry.name)
    raise AssertionError(f"no broker process listens at {address}")


def _topics(address: str) -> set[str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=address)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_the_lag_counts_every_record_sent_on_the_embedded_broker(kafka: KafkaConfig) -> None:
    from pipeline.transport.kafka import ensure_topics

    ensure_topics(kafka)
    events = term_events()
    send(kafka.bootstrap, events)
    lag = Lag(kafka)
    try:
        assert lag.records() == len(events)
    finally:
        lag.close()


def test_a_worker_killed_after_its_grace_says_how_many_records_it_left_unrecorded(
    capfd: pytest.CaptureFixture[str],
) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    worker = Worker([sys.executable, "-c", stubborn], lag=lambda: 7)
    worker.start()
    time.sleep(0.5)
    worker.stop(grace=0.5)
    said = capfd.readouterr().err
    assert "worker killed after 0.5 s: 7 records accepted but not recorded" in said


@pytest.mark.slow
def test_a_worker_stopped_while_draining_a_backlog_stops_by_itself_and_loses_nothing(
    kafka: KafkaConfig, sqlite_url: str, tmp_path: Path, policy: Policy
) -> None:
    """SIGTERM (what ``up`` sends once nothing is left, and a service manager at any time)
    while the sharing agents hold batches for the facts agent: the worker stops within its
    grace, having stopped taking records, and a worker started again records the rest once.
    Each held batch used to wait out the pacer's patience in turn for a facts agent that
    had stopped: the worker was killed after its grace, recording a batch every 10 s."""
    from pipeline.transport.kafka import ensure_topics
    from pipeline.transport.processes import worker_command
    from tests.integration.test_pipeline_faults import (
        KEY_ENV,
        assert_recorded_exactly_once,
        year_events,
    )

    ensure_topics(kafka)
    records = year_events(9_000, seed=17)[:20_000]
    log = tmp_path / "worker.log"
    worker = Worker(worker_command(kafka.bootstrap, sqlite_url), log, KEY_ENV)
    worker.start()
    try:
        send(kafka.bootstrap, records)
        assert wait_until(lambda: ledger_count(sqlite_url) > 0, timeout=90), log.read_text()
        assert worker.stop() == 0, "killed after its grace: " + log.read_text()[-3000:]
        expected = expected_of(records, Engine(policy)).entries
        assert ledger_count(sqlite_url) < expected, "the backlog drained before the stop"
        worker.start()
        assert_recorded_exactly_once(sqlite_url, records, policy, log, timeout=180)
    finally:
        worker.stop()


def emit(broker: str, file: Path, db: Path, receipts: Path, timeout: float) -> str:
    """``sharing-audit emit`` as a school runs it, keeping its receipts; what it printed."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pipeline.cli", "emit", str(file), "--broker", broker),
            *("--db", f"sqlite:///{db}", "--receipts", str(receipts), "--timeout", str(timeout)),
        ],
        capture_output=True,
        timeout=timeout + 120,
        env={**os.environ, "SHARING_AUDIT_PSEUDONYM_KEY": "5a" * 32},
    )
    return f"exit {done.returncode}\n{done.stdout.decode()}{done.stderr.decode()}"


@pytest.mark.slow
def test_the_issues_term_is_not_delivered_while_the_ledger_is_held_and_is_recorded_once_after(
    tmp_path: Path, policy: Policy
) -> None:
    """The scenario issue 30 reports: emit of a term's 81 events while another process holds
    the SQLite file, then up stopped (twice: the records are lost with the embedded broker)
    and started again. Emit never says delivered without receipts; run again, it leaves
    every event recorded once and every line with a receipt."""
    db, file, kept = tmp_path / "ledger.db", tmp_path / "term.jsonl", tmp_path / "r.jsonl"
    events = term_events()
    file.write_bytes(b"".join(raw + b"\n" for raw in events))
    with running_up(db) as up:
        broker = up.broker
        with sqlite_held(db):
            said = emit(broker, file, db, kept, timeout=5)
            assert said.startswith("exit 1"), said
            assert all(f"line {n}: no receipt within" in said for n in range(1, 82)), said
            up.process.send_signal(signal.SIGINT)
            up.said(r"81 records accepted but not yet recorded", timeout=30)
            up.process.send_signal(signal.SIGINT)
            assert up.process.wait(20) == 1, up.tail()
    assert ledger_count(f"sqlite:///{db}") == 0
    with running_up(db) as up:
        said = emit(up.broker, file, db, kept, timeout=120)
        assert said.startswith("exit 0"), said
    assert ledger_count(f"sqlite:///{db}") == expected_of(events, Engine(policy)).entries
    rows = [orjson.loads(row) for row in kept.read_bytes().splitlines()]
    assert sorted(row["line"] for row in rows) == list(range(1, 82))
