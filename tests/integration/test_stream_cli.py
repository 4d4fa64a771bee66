"""The streaming commands as people run them: ``emit``, ``up``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.simulate import simulate
from pipeline.transport.kafka import KafkaConfig, ensure_topics, read_topic

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


def test_emit_sends_every_routable_line_and_names_the_others(
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


def test_up_prints_the_broker_and_the_ledger_and_ctrl_c_stops_everything(
    tmp_path: Path,
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

    up.send_signal(signal.SIGINT)
    assert up.wait(60) == 0, up.stderr.read().decode() if up.stderr else ""
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()
