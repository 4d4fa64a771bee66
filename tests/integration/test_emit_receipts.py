"""``emit`` waits for the log's signed receipts, not the broker's acknowledgements: against
a real broker and a fake log that answers each record as a test says, hostile included."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from pipeline.cli.main import app
from pipeline.ledger.log.checkpoints import log_signer
from pipeline.settings import DEFAULT_LOG_ORIGIN
from pipeline.simulate import simulate
from pipeline.transparency.delivery import DeliveryReceipt, open_receipt, sign_receipt
from pipeline.transparency.note import Signer
from pipeline.transport.kafka import KafkaConfig, ensure_topics
from tests.integration.fake_log import LOG, ORIGIN, FakeLog, honest
from tests.integration.streaming import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()
OTHER_KEY = Signer(ORIGIN, bytes(range(1, 33)))
OTHER_LOG = Signer("other.example/log", bytes(range(32)))


@pytest.fixture
def events() -> list[bytes]:
    return [orjson.dumps(line.event) for line in simulate(3, seed=2)[:6]]


@pytest.fixture
def topics(kafka: KafkaConfig) -> KafkaConfig:
    ensure_topics(kafka)
    return kafka


@pytest.fixture(autouse=True)
def no_configured_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SHARING_AUDIT_LOG_VKEY", "SHARING_AUDIT_LOG_KEY", "SHARING_AUDIT_BROKER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write(folder: Path, lines: list[bytes]) -> Path:
    (folder / "e.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "log.vkey").write_text(LOG.verifier.vkey() + "\n")
    return folder / "e.jsonl"


def emit(kafka: KafkaConfig, file: Path, *options: str) -> Result:
    args = ["emit", str(file), "--broker", kafka.bootstrap, "--timeout", "3", *options]
    return runner.invoke(app, args)


def ids(raw: list[bytes]) -> list[str]:
    return [orjson.loads(r)["id"] for r in raw]


def kept(path: Path) -> dict[int, dict[str, object]]:
    return {row["line"]: row for row in map(orjson.loads, path.read_bytes().splitlines())}


def test_emit_exits_0_once_every_line_holds_a_receipt_and_keeps_each_verbatim(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events)
    with FakeLog(topics):
        done = emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert done.exit_code == 0, done.output
    assert "recorded 6 events sent to" in done.output and "(allowed 6)" in done.output
    rows = kept(tmp_path / "r.jsonl")
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    for number, raw in enumerate(events, 1):
        note = str(rows[number]["receipt"]).encode()
        assert open_receipt(note, LOG.verifier).event_id == rows[number]["event_id"]
        assert rows[number]["event_id"] == orjson.loads(raw)["id"]


def test_an_acknowledged_line_the_log_never_receipted_is_not_delivered(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    """The embedded broker keeps records in memory: it acknowledges what no ledger holds."""
    file = write(tmp_path, events)
    done = emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert done.exit_code == 1
    for number, event_id in enumerate(ids(events), 1):
        assert f"line {number}: no receipt within 3s (event {event_id})" in done.output
    assert (tmp_path / "r.jsonl").read_bytes() == b""


def dropping(lost: set[str]) -> Callable[[DeliveryReceipt], list[bytes]]:
    return lambda r: [] if r.event_id in lost else honest(r)


def test_emit_names_exactly_the_lines_without_a_receipt_and_a_rerun_sends_only_those(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events)
    lost = {ids(events)[1], ids(events)[4]}
    with FakeLog(topics, dropping(lost)):
        first = emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert first.exit_code == 1
    named = [line for line in first.output.splitlines() if "no receipt within" in line]
    assert named == [
        f"sharing-audit: line 2: no receipt within 3s (event {ids(events)[1]})",
        f"sharing-audit: line 5: no receipt within 3s (event {ids(events)[4]})",
    ]
    assert sorted(kept(tmp_path / "r.jsonl")) == [1, 3, 4, 6]

    with FakeLog(topics) as log:  # it reads the topics from the start: both runs' records
        again = emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert again.exit_code == 0, again.output
    assert "4 lines held a receipt already" in again.output
    assert {i: log.seen[i] for i in ids(events)} == {i: 2 if i in lost else 1 for i in ids(events)}
    assert sorted(kept(tmp_path / "r.jsonl")) == [1, 2, 3, 4, 5, 6]


def hostile(receipt: DeliveryReceipt) -> list[bytes]:
    """Everything but the log's own receipt, and then that receipt (twice)."""
    another_event = dataclasses.replace(receipt, event_id="someone-else")
    return [
        b"\x00garbage",
        sign_receipt(receipt, OTHER_KEY),
        sign_receipt(dataclasses.replace(receipt, origin=OTHER_LOG.name), OTHER_LOG),
        sign_receipt(another_event, LOG),
        *honest(receipt),
        *honest(receipt),
    ]


def test_a_hostile_receipts_topic_is_counted_and_ignored_and_never_delivers_a_line(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events)
    lost = {ids(events)[2]}
    with FakeLog(topics, lambda r: hostile(r)[:4] if r.event_id in lost else hostile(r)):
        done = emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert done.exit_code == 1
    assert "line 3: no receipt within 3s" in done.output
    assert sum("no receipt within" in line for line in done.output.splitlines()) == 1
    assert "ignored 24 records on sharing.receipts" in done.output
    assert "not signed by the log: 18" in done.output
    assert "for another event at the position: 6" in done.output
    assert "Traceback" not in done.output
    assert sorted(kept(tmp_path / "r.jsonl")) == [1, 2, 4, 5, 6]


def test_a_kept_receipt_that_does_not_verify_is_named_and_its_line_sent_again(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events[:2])
    forged = DeliveryReceipt(
        ORIGIN, ids(events)[0], "sharing.census", 0, 0, 1, bytes(32), "allowed", 1
    )
    row = {
        "line": 1,
        "event_id": ids(events)[0],
        "receipt": sign_receipt(forged, OTHER_KEY).decode(),
    }
    (tmp_path / "r.jsonl").write_bytes(orjson.dumps(row) + b"\n")
    with FakeLog(topics) as log:
        done = emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert done.exit_code == 0, done.output
    assert "line 1: the receipt kept does not verify" in done.output
    assert log.seen[ids(events)[0]] == 1
    rows = [orjson.loads(r) for r in (tmp_path / "r.jsonl").read_bytes().splitlines()]
    assert [r["line"] for r in rows] == [1, 1, 2] or [r["line"] for r in rows] == [1, 2, 1]


def test_a_torn_last_receipt_is_cut_off_and_its_line_sent_again(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events[:2])
    with FakeLog(topics):
        assert emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl").exit_code == 0
    whole = (tmp_path / "r.jsonl").read_bytes()
    (tmp_path / "r.jsonl").write_bytes(whole[: whole.index(b"\n") + 1] + whole[-60:-1])
    with FakeLog(topics):
        done = emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert done.exit_code == 0, done.output
    assert "1 lines held a receipt already" in done.output
    assert len(kept(tmp_path / "r.jsonl")) == 2


def test_unroutable_lines_are_not_sent_and_named_while_the_others_are_recorded(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, [events[0], b"not json", events[1], b'{"type": "uk.school.x.v1"}'])
    with FakeLog(topics) as log:
        done = emit(topics, file, "--vkey", "log.vkey")
    assert done.exit_code == 1
    assert "line 2: not sent: not valid JSON (no event id)" in done.output
    assert "line 4: not sent: type is not an event type of contract v1" in done.output
    assert "no receipt" not in done.output
    assert set(log.seen) == set(ids(events[:2]))


def test_with_a_topic_every_line_is_sent_as_is_and_one_without_an_id_gets_its_receipt(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, [events[0], b"not json"])
    with FakeLog(topics):
        done = emit(
            topics,
            file,
            "--vkey",
            "log.vkey",
            "--topic",
            "sharing.referral",
            "--receipts",
            "r.jsonl",
        )
    assert done.exit_code == 0, done.output
    assert kept(tmp_path / "r.jsonl")[2]["event_id"] is None


def test_the_log_key_may_be_given_in_the_environment(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARING_AUDIT_LOG_VKEY", LOG.verifier.vkey())
    file = write(tmp_path, events[:1])
    with FakeLog(topics):
        assert emit(topics, file).exit_code == 0


def test_on_the_embedded_default_emit_takes_the_local_ledgers_key(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    local = log_signer(None, DEFAULT_LOG_ORIGIN, url)
    file = write(tmp_path, events[:2])
    with FakeLog(topics, log=local):
        done = emit(topics, file, "--db", url)
    assert done.exit_code == 0, done.output


def test_without_any_log_key_emit_says_it_cannot_check_receipts(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events[:1])
    done = emit(topics, file, "--db", f"sqlite:///{tmp_path}/none.db")
    assert done.exit_code == 2
    assert "cannot check the log's receipts" in done.output
    assert "--wait acked" in done.output and "only promises that the broker took" in done.output
    assert not (tmp_path / "none.db").exists()


def test_a_vkey_file_that_is_not_a_key_is_named(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events[:1])
    (tmp_path / "bad.vkey").write_text("not a key\n")
    done = emit(topics, file, "--vkey", "bad.vkey")
    assert done.exit_code == 2
    assert "--vkey bad.vkey: the log's verifier key is not one" in done.output
    assert "Traceback" not in done.output


def test_wait_acked_sends_without_a_key_and_says_it_promises_only_the_broker(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events)
    done = emit(topics, file, "--wait", "acked")
    assert done.exit_code == 0, done.output
    assert "delivered 6 events" in done.output and "acknowledged only" in done.output


def test_an_interrupted_emit_keeps_the_receipts_it_got_and_says_how_to_go_on(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events)
    lost = {ids(events)[0]}
    command = [sys.executable, "-m", "pipeline.cli", "emit", str(file), "--broker"]
    command += [topics.bootstrap, "--vkey", "log.vkey", "--receipts", "r.jsonl"]
    with FakeLog(topics, dropping(lost)) as log:
        emitting = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE)
        assert wait_until(lambda: sum(log.seen.values()) == len(events), timeout=60)
        assert wait_until(lambda: len(kept(tmp_path / "r.jsonl")) == 5, timeout=30)
        emitting.send_signal(signal.SIGINT)
        _, errors = emitting.communicate(timeout=30)
    assert emitting.returncode == 130
    assert b"Traceback" not in errors
    assert b"interrupted: 5 lines hold a receipt, kept in r.jsonl" in errors
    assert sorted(kept(tmp_path / "r.jsonl")) == [2, 3, 4, 5, 6]


def test_when_every_line_holds_a_receipt_emit_sends_nothing_and_needs_no_broker(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events[:2])
    with FakeLog(topics):
        assert emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl").exit_code == 0
    gone = KafkaConfig(bootstrap="127.0.0.1:1")
    done = emit(gone, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert done.exit_code == 0, done.output
    assert "every line holds a receipt already (2)" in done.output


def test_a_receipts_file_that_cannot_be_read_is_named(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes]
) -> None:
    file = write(tmp_path, events[:1])
    (tmp_path / "r.jsonl").mkdir()
    done = emit(topics, file, "--vkey", "log.vkey", "--receipts", "r.jsonl")
    assert done.exit_code == 2
    assert "cannot read the receipts kept in r.jsonl" in done.output
    assert "Traceback" not in done.output


def test_a_witness_key_given_for_the_log_is_refused(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.transparency.note import COSIGNATURE, Verifier

    witness = Verifier("witness.example", LOG.verifier.public, COSIGNATURE)
    monkeypatch.setenv("SHARING_AUDIT_LOG_VKEY", witness.vkey())
    done = emit(topics, write(tmp_path, events[:1]))
    assert done.exit_code == 2
    assert "SHARING_AUDIT_LOG_VKEY: the log's verifier key is a witness's" in done.output


def test_wait_acked_refuses_to_keep_receipts_it_does_not_wait_for(tmp_path: Path) -> None:
    file = write(tmp_path, [b"{}"])
    done = emit(KafkaConfig(bootstrap="127.0.0.1:1"), file, "--wait", "acked", "--receipts", "r")
    assert done.exit_code == 2
    assert "--receipts keeps the log's receipts, which --wait acked does not" in done.output


def test_a_log_key_set_that_is_not_one_is_named_not_taken_for_none(
    topics: KafkaConfig, tmp_path: Path, events: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARING_AUDIT_LOG_KEY", "beef")
    done = emit(topics, write(tmp_path, events[:1]), "--db", f"sqlite:///{tmp_path}/l.db")
    assert done.exit_code == 2
    assert "SHARING_AUDIT_LOG_KEY must be 64 hexadecimal characters" in done.output
