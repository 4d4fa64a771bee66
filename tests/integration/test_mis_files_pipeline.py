"""From an MIS's files to the ledger, on the real broker and a real worker: a CTF sent twice
is recorded once, and ``sharing-audit watch`` killed again and again while files arrive
ends with every file in done/ or rejected/ and every event of every done file in the
ledger exactly once."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.files.events import file_events
from pipeline.files.gias import Gias
from pipeline.files.watch import DONE, REJECTED, SENDING
from pipeline.policy.pack import Policy
from pipeline.transport.kafka import KafkaConfig
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline
from tests.integration.streaming import ledger_count, ledger_final, wait_until
from tests.mis_files import CTF_SECTIONS, ctf, ctf_pupil
from tests.unit.test_mis_files import BOMB

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()
KEY_ENV = {"SHARING_AUDIT_PSEUDONYM_KEY": "5a" * 32}


def test_a_ctf_read_twice_and_sent_twice_records_each_pupils_transfer_once(
    kafka: KafkaConfig, sqlite_url: str, tmp_path: Path
) -> None:
    data = ctf(*(ctf_pupil(n, CTF_SECTIONS["attendance"][0]) for n in range(1, 6)))
    (tmp_path / "850200_CTF_8502002_001.xml").write_bytes(data)
    (tmp_path / "copy.xml").write_bytes(data)
    lines = []
    for name in ("850200_CTF_8502002_001.xml", "copy.xml", "850200_CTF_8502002_001.xml"):
        done = runner.invoke(app, ["ctf", "events", str(tmp_path / name)])
        assert done.exit_code == 0, done.output
        lines += done.stdout_bytes.splitlines()
    assert len(lines) == 15
    with Pipeline(sqlite_url, kafka, worker_log=tmp_path / "worker.log", env=KEY_ENV):
        with MisProducer(kafka) as producer:
            producer.send_all(lines)
        assert wait_until(lambda: ledger_count(sqlite_url) >= 5, timeout=60)
        time.sleep(1.5)  # a second recording, if there were one, would land now
        assert ledger_count(sqlite_url) == 5
    assert set(ledger_final(sqlite_url)) == {orjson.loads(line)["id"] for line in lines}


def _write_files(folder: Path, count: int, rng: random.Random) -> list[str]:
    """``count`` CTFs of three pupils each, some written in place, some under a temporary
    name then renamed, every seventh an XML bomb; the names written."""
    names = []
    for n in range(count):
        name = f"850200{n:04d}_CTF_8502002_{n:03d}.xml"
        pupils = [ctf_pupil(3 * n + k, CTF_SECTIONS["sen"][0]) for k in range(3)]
        data = BOMB if n % 7 == 3 else ctf(*pupils, written=f"2026-07-06T10:{n % 60:02d}:00")
        if rng.random() < 0.5:
            (folder / name).write_bytes(data)
        else:
            (folder / (name + ".part")).write_bytes(data)
            (folder / (name + ".part")).rename(folder / name)
        names.append(name)
        time.sleep(rng.uniform(0.05, 0.3))
    return names


def _watcher(folder: Path, kafka: KafkaConfig, out: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pipeline.cli", "watch", str(folder)]
    with out.open("ab") as log:
        return subprocess.Popen(
            [*command, "--broker", kafka.bootstrap, "--settle", "0.2"], stdout=log, stderr=log
        )


def _pending(folder: Path) -> list[Path]:
    """Files not yet sent: in the folder, or taken into ``.sending``, which the watcher
    makes once started (on a slow machine every watcher may be killed before that)."""
    sending = folder / SENDING
    taken = sending.iterdir() if sending.exists() else ()
    return [p for p in (*folder.iterdir(), *taken) if p.is_file()]


def test_watch_killed_while_files_arrive_sends_every_file_once_into_the_ledger(
    kafka: KafkaConfig, sqlite_url: str, tmp_path: Path, policy: Policy
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    out = tmp_path / "watch.out"
    rng = random.Random(20261201)
    names: list[str] = []
    with Pipeline(sqlite_url, kafka, worker_log=tmp_path / "worker.log", env=KEY_ENV):
        writer = threading.Thread(target=lambda: names.extend(_write_files(folder, 42, rng)))
        writer.start()
        watcher = _watcher(folder, kafka, out)
        for _ in range(5):
            time.sleep(rng.uniform(0.8, 2.5))
            watcher.kill()  # SIGKILL: no chance to finish what it was doing
            watcher.wait()
            watcher = _watcher(folder, kafka, out)
        writer.join()
        try:
            assert wait_until(lambda: not _pending(folder), timeout=90), out.read_text()[-3000:]
        finally:
            watcher.terminate()
            watcher.wait(timeout=30)
        done = sorted(p for p in (folder / DONE).iterdir())
        rejected = sorted(p.name for p in (folder / REJECTED).iterdir())
        assert sorted([p.name for p in done] + [r for r in rejected if not r.endswith(".why")]) == (
            sorted(names)
        )
        assert all(f"{r}.why" in rejected for r in rejected if not r.endswith(".why"))
        assert len([r for r in rejected if r.endswith(".why")]) == 6  # the bombs
        expected = {
            event["id"] for path in done for event in file_events(path, policy, Gias()).events
        }
        assert len(expected) == 3 * 36
        assert wait_until(lambda: ledger_count(sqlite_url) >= len(expected), timeout=60)
        time.sleep(1.5)
        assert ledger_count(sqlite_url) == len(expected)
    assert set(ledger_final(sqlite_url)) == expected


def test_watch_prints_each_outcome_with_control_characters_in_names_escaped(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    religion = CTF_SECTIONS["religion"][0]  # noted as not in the pack's mapping
    (folder / "good\x1b]0;owned\x07.xml").write_bytes(ctf(ctf_pupil(1, religion)))
    (folder / "bad\x1b[2J\u202e.xml").write_bytes(b"<CTfile><Header></CTfile>")
    (folder / "link\x1b[31m.xml").symlink_to(tmp_path)
    done = runner.invoke(
        app, ["watch", str(folder), "--broker", kafka.bootstrap, "--settle", "0", "--once"]
    )
    assert done.exit_code == 0 and "Traceback" not in done.output, done.output
    assert not any(c in done.output for c in "\x1b\x07\u202e"), done.output
    assert "done: good\\x1b]0;owned\\x07.xml: 1 events" in done.output
    assert "good\\x1b]0;owned\\x07.xml: <Religion>" in done.output
    assert "rejected: bad\\x1b[2J\\u202e.xml: " in done.output
    assert "rejected: link\\x1b[31m.xml: " in done.output and "symbolic link" in done.output
