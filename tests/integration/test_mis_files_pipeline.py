"""From an MIS's files to the ledger, on the real broker and a real worker: a CTF sent twice
is recorded once, and ``sharing-audit watch`` killed again and again while files arrive
ends with every file in done/ or rejected/, every event of every done file in the ledger
exactly once, and beside each done file the log's receipt of each of its events. Against a
fake log: a file an event of which gets no receipt waits in .sending/, and the next run
sends that event alone."""

from __future__ import annotations

import os
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
from pipeline.transparency.delivery import open_receipt
from pipeline.transparency.note import Verifier
from pipeline.transport.kafka import KafkaConfig, ensure_topics
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline
from tests.integration.fake_log import LOG, FakeLog, honest
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


def _watcher(folder: Path, kafka: KafkaConfig, out: Path, vkey: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pipeline.cli", "watch", str(folder), "--vkey", str(vkey)]
    with out.open("ab") as log:
        return subprocess.Popen(
            [*command, "--broker", kafka.bootstrap, "--settle", "0.2"], stdout=log, stderr=log
        )


def _log_vkey(url: str, into: Path) -> Path:
    """The log's verifier key, as its operator hands it out (``log vkey``)."""
    command = [sys.executable, "-m", "pipeline.cli", "log", "vkey", "--db", url]
    into.write_bytes(subprocess.run(command, capture_output=True, check=True).stdout)
    return into


def _receipts_of(done: Path, policy: Policy, log: Verifier) -> list[tuple[int, str]]:
    """The receipts filed beside a done file, as (line, event id), each checked to be the
    log's, for the event at that position in the file."""
    events = file_events(done, policy, Gias()).events
    rows = [
        orjson.loads(r)
        for r in (done.parent / f"{done.name}.receipts.jsonl").read_bytes().splitlines()
    ]
    for row in rows:
        receipt = open_receipt(row["receipt"].encode(), log)
        assert receipt.event_id == row["event_id"] == events[row["line"] - 1]["id"], row
    return sorted((row["line"], row["event_id"]) for row in rows)


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
        vkey = _log_vkey(sqlite_url, tmp_path / "log.vkey")
        writer = threading.Thread(target=lambda: names.extend(_write_files(folder, 42, rng)))
        writer.start()
        watcher = _watcher(folder, kafka, out, vkey)
        for _ in range(5):
            time.sleep(rng.uniform(0.8, 2.5))
            watcher.kill()  # SIGKILL: no chance to finish what it was doing
            watcher.wait()
            watcher = _watcher(folder, kafka, out, vkey)
        writer.join()
        try:
            assert wait_until(lambda: not _pending(folder), timeout=90), out.read_text()[-3000:]
        finally:
            watcher.terminate()
            watcher.wait(timeout=30)
        done = sorted(p for p in (folder / DONE).iterdir() if p.suffix == ".xml")
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
    log = Verifier.parse(vkey.read_text().strip())
    for path in done:  # each file's every event holds exactly one receipt, the log's
        assert _receipts_of(path, policy, log) == [
            (n, event["id"]) for n, event in enumerate(file_events(path, policy, Gias()).events, 1)
        ]
    assert sorted(p.name for p in (folder / DONE).iterdir()) == sorted(
        [p.name for p in done] + [f"{p.name}.receipts.jsonl" for p in done]
    )


def test_watch_prints_each_outcome_with_control_characters_in_names_escaped(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    religion = CTF_SECTIONS["religion"][0]  # noted as not in the pack's mapping
    (folder / "good\x1b]0;owned\x07.xml").write_bytes(ctf(ctf_pupil(1, religion)))
    (folder / "bad\x1b[2J\u202e.xml").write_bytes(b"<CTfile><Header></CTfile>")
    (folder / "link\x1b[31m.xml").symlink_to(tmp_path)
    output = _watch_once(kafka, folder, "--wait", "acked")
    assert not any(c in output for c in "\x1b\x07\u202e"), output
    assert "done: good\\x1b]0;owned\\x07.xml: 1 event\n" in output
    assert "good\\x1b]0;owned\\x07.xml: <Religion>" in output
    assert "rejected: bad\\x1b[2J\\u202e.xml: " in output
    assert "rejected: link\\x1b[31m.xml: " in output and "symbolic link" in output


def test_watch_says_what_it_watches_then_tells_each_file_once_and_leaves_other_names_alone(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    ensure_topics(kafka)
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "one.xml").write_bytes(ctf(ctf_pupil(1, CTF_SECTIONS["sen"][0])))
    (folder / "two.XML").write_bytes(ctf(*(ctf_pupil(n, CTF_SECTIONS["sen"][0]) for n in (2, 3))))
    (folder / "bad.xml").write_bytes(b"<CTfile><Header></CTfile>")
    (folder / "notes.txt").write_text("send the spring census by Friday")
    said = _watch_once(kafka, folder, "--wait", "acked").splitlines()
    assert said[0].startswith(f"watching {folder}/ for *.xml (Common Transfer Files and census")
    assert said[1].startswith(f"each file's events go to {kafka.bootstrap}, then the file to")
    assert sorted(said[2:]) == [
        "done: one.xml: 1 event",
        "done: two.XML: 2 events",
        "rejected: bad.xml: not well-formed XML at line 1, column 18 (mismatched tag), "
        "inside <CTfile/Header>",
    ]
    assert (folder / "notes.txt").read_text() == "send the spring census by Friday"


@pytest.fixture
def no_configured_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SHARING_AUDIT_LOG_VKEY", "SHARING_AUDIT_LOG_KEY", "SHARING_AUDIT_BROKER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _watch_once(kafka: KafkaConfig, folder: Path, *options: str, exit_code: int = 0) -> str:
    args = ["watch", str(folder), "--broker", kafka.bootstrap, "--settle", "0", "--once"]
    done = runner.invoke(app, [*args, *options])
    assert done.exit_code == exit_code and "Traceback" not in done.output, done.output
    return done.output


def test_watch_leaves_a_file_lacking_a_receipt_in_sending_and_the_next_run_sends_that_event_alone(
    kafka: KafkaConfig, tmp_path: Path, policy: Policy, no_configured_keys: None
) -> None:
    ensure_topics(kafka)
    folder = tmp_path / "exports"
    folder.mkdir()
    (tmp_path / "log.vkey").write_text(LOG.verifier.vkey() + "\n")
    (folder / "a.xml").write_bytes(ctf(*(ctf_pupil(n, CTF_SECTIONS["sen"][0]) for n in (1, 2, 3))))
    ids = [event["id"] for event in file_events(folder / "a.xml", policy, Gias()).events]
    lost = ids[1]
    with FakeLog(kafka, lambda r: [] if r.event_id == lost else honest(r)):
        said = _watch_once(kafka, folder, "--vkey", "log.vkey", "--timeout", "2", exit_code=1)
    assert "waiting: a.xml: 1 of 3 events holds no receipt" in said and "line 2" in said
    assert (folder / SENDING / "a.xml").exists() and not (folder / DONE / "a.xml").exists()

    with FakeLog(kafka) as log:  # it reads the topics from the start: both runs' records
        said = _watch_once(kafka, folder, "--vkey", "log.vkey", "--timeout", "5")
    assert "done: a.xml: 3 events" in said, said
    assert {i: log.seen[i] for i in ids} == {i: 2 if i == lost else 1 for i in ids}
    assert _receipts_of(folder / DONE / "a.xml", policy, LOG.verifier) == list(enumerate(ids, 1))
    assert list((folder / SENDING).iterdir()) == []


def test_watch_without_the_logs_key_says_it_cannot_check_receipts_and_sends_nothing(
    tmp_path: Path, no_configured_keys: None
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a.xml").write_bytes(ctf(ctf_pupil(1, CTF_SECTIONS["sen"][0])))
    args = ["watch", str(folder), "--broker", "127.0.0.1:9", "--once"]
    done = runner.invoke(app, [*args, "--db", f"sqlite:///{tmp_path}/none.db"])
    assert done.exit_code == 2, done.output
    assert "cannot check the log's receipts" in done.output and "--wait acked" in done.output
    assert (folder / "a.xml").exists() and not (tmp_path / "none.db").exists()


def test_a_hostile_export_folder_watched_into_the_ledger_has_every_good_file_recorded(
    kafka: KafkaConfig, sqlite_url: str, tmp_path: Path, policy: Policy
) -> None:
    """Issue 29's hostile folder on the real broker and worker: deep, padded, bomb, wrong
    root, cut with an escape-laden name, a link to a secret, a FIFO, a folder, beside good
    files; every good file's events end in the ledger once, with the log's receipts."""
    from tests.unit.test_watch import HOSTILE, _good

    folder, secret = tmp_path / "exports", tmp_path / "passwd"
    folder.mkdir()
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    good = {"a.xml": _good(1), "b.xml": _good(2, pupils=5), "c.xml": _good(4)}
    for name, data in [*good.items(), *((n, d) for n, (d, _) in HOSTILE.items())]:
        (folder / name).write_bytes(data)
    (folder / "link.xml").symlink_to(secret)
    os.mkfifo(folder / "pipe.xml")
    (folder / "sub.xml").mkdir()
    with Pipeline(sqlite_url, kafka, worker_log=tmp_path / "worker.log", env=KEY_ENV):
        vkey = _log_vkey(sqlite_url, tmp_path / "log.vkey")
        command = [sys.executable, "-m", "pipeline.cli", "watch", str(folder), "--once"]
        command += ["--vkey", str(vkey), "--broker", kafka.bootstrap, "--settle", "0"]
        done = subprocess.run(command, capture_output=True, timeout=300)
    said = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, said
    assert "\x1b" not in said and "root:x" not in said
    expected = {
        e["id"] for n in good for e in file_events(folder / DONE / n, policy, Gias()).events
    }
    assert len(expected) == 11
    assert set(ledger_final(sqlite_url)) == expected
    assert ledger_count(sqlite_url) == len(expected)
    log = Verifier.parse(vkey.read_text())
    for name in good:
        assert len(_receipts_of(folder / DONE / name, policy, log)) == len(
            file_events(folder / DONE / name, policy, Gias()).events
        )
    rejected = {p.name for p in (folder / REJECTED).iterdir() if not p.name.endswith(".why")}
    assert rejected == {*HOSTILE, "link.xml", "pipe.xml", "sub.xml"}
