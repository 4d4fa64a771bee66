"""The streaming commands as people run them: ``emit``, ``up``."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.simulate import simulate
from pipeline.transport.kafka import KafkaConfig, ensure_topics, read_topic
from tests.integration.test_demo import fresh_clone, untracked

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()


def test_emit_without_a_broker_says_how_to_give_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHARING_AUDIT_BROKER", raising=False)
    (tmp_path / "e.jsonl").write_text("{}\n")
    result = runner.invoke(app, ["emit", str(tmp_path / "e.jsonl")])
    assert result.exit_code == 2
    assert "--broker HOST:PORT" in result.output
    assert "Traceback" not in result.output


def test_emit_wait_acked_sends_every_routable_line_and_names_the_others(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    ensure_topics(kafka)
    events = [orjson.dumps(line.event) for line in simulate(3, seed=2)[:5]]
    lines = [events[0], b"not json", *events[1:], b'{"type": "uk.school.unknown.v1"}']
    (tmp_path / "e.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "emit",
            str(tmp_path / "e.jsonl"),
            "--broker",
            kafka.bootstrap,
            "--wait",
            "acked",
        ],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 1
    errors = done.stderr.decode()
    assert "line 2: not sent: not valid JSON" in errors
    assert f"line {len(lines)}: not sent: type is not an event type of contract v1" in errors
    assert "Traceback" not in errors
    sent = [
        r.value
        for topic in ("sharing.census", "sharing.transfer", "sharing.referral", "pupil.lifecycle")
        for r in read_topic(kafka, topic, expected=1, timeout=3)
    ]
    assert sorted(sent) == sorted(events)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hang-up"])
def test_up_prints_the_broker_and_the_ledger_and_ctrl_c_stops_everything(
    tmp_path: Path, stop: signal.Signals
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    env = {**os.environ, "SHARING_AUDIT_LOG_LEVEL": "WARNING"}
    env.pop("SHARING_AUDIT_BROKER", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up", "--db", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert up.stdout is not None
    broker = up.stdout.readline().decode().strip()
    ledger = up.stdout.readline().decode().strip()
    assert broker.startswith("broker: 127.0.0.1:")
    assert ledger == f"ledger: {url}"
    host, port = broker.removeprefix("broker: ").split(":")
    socket.create_connection((host, int(port)), timeout=5).close()

    up.send_signal(stop)
    # Not its stderr on failure: a broker or worker left behind would hold it open.
    assert up.wait(60) == 0, f"up ended with status {up.returncode}"
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()


@contextlib.contextmanager
def on_a_terminal(
    command: list[str], cwd: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Screen]]:
    """``sharing-audit COMMAND...`` run on a pseudo-terminal, stopped as Ctrl-C would if
    the test fails, so that no broker or worker outlives it."""
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    env.pop("SHARING_AUDIT_BROKER", None)
    terminal, side = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *command],
        stdin=side,
        stdout=side,
        stderr=side,
        env=env,
        cwd=cwd,
    )
    os.close(side)
    try:
        yield process, Screen(terminal)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def emit_six_events(broker: str, folder: Path, url: str) -> None:
    events = [orjson.dumps(line.event) for line in simulate(3, seed=2)[:6]]
    (folder / "e.jsonl").write_bytes(b"\n".join(events) + b"\n")
    emit = [sys.executable, "-m", "pipeline.cli", "emit", "e.jsonl", "--broker", broker]
    emit += ["--db", url]  # whose log key checks the receipts
    subprocess.run(emit, cwd=folder, capture_output=True, timeout=60, check=True)


def assert_the_json_log_is_in_the_file_not_on_screen(shown: Screen, folder: Path) -> None:
    text = shown.text()
    assert b"worker log: sharing-audit-worker.log" in text
    assert b'"event":' not in text
    logged = (folder / "sharing-audit-worker.log").read_bytes().splitlines()
    assert any(b'"event": "batch_recorded"' in line for line in logged)


def test_up_on_a_terminal_shows_a_live_status_line_and_keeps_the_json_log_in_a_file(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    with on_a_terminal(["up", "--db", url], tmp_path) as (up, shown):
        broker = shown.until(re.compile(rb"broker: (127\.0\.0\.1:\d+)"), timeout=30).group(1)
        emit_six_events(broker.decode(), tmp_path, url)
        shown.until(re.compile(rb"recorded 6 events: allowed \d+"), timeout=90)
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
    assert_the_json_log_is_in_the_file_not_on_screen(shown, tmp_path)


def test_up_counts_events_sent_again_as_duplicates_recorded_once(tmp_path: Path) -> None:
    """Sent twice, six events are recorded once each, and the line says so, rather than
    leaving six deliveries to look like records lost between the broker and the ledger."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    with on_a_terminal(["up", "--db", url], tmp_path) as (up, shown):
        broker = shown.until(re.compile(rb"broker: (127\.0\.0\.1:\d+)"), timeout=30).group(1)
        emit_six_events(broker.decode(), tmp_path, url)
        shown.until(re.compile(rb"recorded 6 events: allowed \d+"), timeout=90)
        emit_six_events(broker.decode(), tmp_path, url)
        shown.until(
            re.compile(rb"recorded 6 events: [^|]*\| 6 duplicates \(sent again, recorded once\)"),
            timeout=90,
        )
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0


def test_up_in_a_fresh_clone_leaves_nothing_there_for_git_add(tmp_path: Path) -> None:
    """Everything ``up`` writes by default in the working folder (the ledger, its keys, the
    log's signing key among them, and the worker's log) is ignored by the project's
    .gitignore, and Faust makes no folder there."""
    clone = fresh_clone(tmp_path / "clone")
    with on_a_terminal(["up"], clone) as (up, shown):
        broker = shown.until(re.compile(rb"broker: (127\.0\.0\.1:\d+)"), timeout=30).group(1)
        emit_six_events(broker.decode(), tmp_path, f"sqlite:///{clone}/sharing-audit.db")
        shown.until(re.compile(rb"recorded 6 events: allowed \d+"), timeout=90)
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
    made = {p.name for p in clone.iterdir()}
    assert {"sharing-audit.db.logkey", "sharing-audit-worker.log"} <= made
    assert "sharing-audit-data" not in made
    assert untracked(clone) == []


def test_worker_on_a_terminal_shows_a_live_status_line_and_keeps_the_json_log_in_a_file(
    tmp_path: Path, kafka: KafkaConfig
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    command = ["worker", "--broker", kafka.bootstrap, "--db", url]
    with on_a_terminal(command, tmp_path) as (worker, shown):
        shown.until(re.compile(rb"ledger: sqlite"), timeout=30)
        emit_six_events(kafka.bootstrap, tmp_path, url)
        shown.until(
            re.compile(rb"recorded 6 events: allowed \d+.*\| awaiting receipt 0"), timeout=90
        )
        worker.send_signal(signal.SIGINT)
        assert worker.wait(60) == 0
    assert_the_json_log_is_in_the_file_not_on_screen(shown, tmp_path)
    assert b"Traceback" not in shown.text()


class Screen:
    """What a program wrote to a pseudo-terminal, read as it comes."""

    def __init__(self, terminal: int) -> None:
        self.terminal = terminal
        self.seen = b""

    def until(self, pattern: re.Pattern[bytes], timeout: float) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while (found := pattern.search(self._plain())) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"never shown: {pattern.pattern!r} in {self._plain()[-2000:]!r}"
            ready, _, _ = select.select([self.terminal], [], [], min(left, 1.0))
            if ready:
                try:
                    self.seen += os.read(self.terminal, 65536)
                except OSError:  # the program has gone
                    break
        assert found is not None, f"never shown: {pattern.pattern!r}"
        return found

    def text(self) -> bytes:
        with contextlib.suppress(OSError):
            while select.select([self.terminal], [], [], 0.2)[0]:
                chunk = os.read(self.terminal, 65536)
                if not chunk:
                    break
                self.seen += chunk
        return self._plain()

    def _plain(self) -> bytes:
        return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", self.seen)
