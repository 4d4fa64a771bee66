"""The MIS export folder, watched (pipeline.files.watch): each complete file sent once
acknowledged and moved to done/, an unreadable one to rejected/ with its reason, nothing
skipped across a stop. The broker is stood in for here; the real one, and a watcher
killed while files arrive, are in tests/integration/test_mis_files_pipeline.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from pipeline.files.events import Converted
from pipeline.files.safe_xml import FileRefused
from pipeline.files.watch import DONE, REJECTED, SENDING, FolderWatcher


class Broker:
    """Records what was sent; ``down`` makes a send fail as an unanswered one does."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.down = False

    def send(self, records: list[bytes]) -> None:
        if self.down:
            raise TimeoutError("no acknowledgement")
        self.sent += records


def convert(path: Path) -> Converted:
    """A file's events: one per line of text; a file saying 'bad' cannot be read."""
    text = path.read_text()
    if "bad" in text:
        raise FileRefused(f"{path}: not well-formed XML at line 1, column 0")
    return Converted([{"id": line} for line in text.split()])


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def watcher(tmp_path: Path, broker: Broker) -> FolderWatcher:
    return FolderWatcher(tmp_path, convert, broker.send, settle=0)


def old(path: Path, text: str) -> Path:
    path.write_text(text)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def ids(broker: Broker) -> list[str]:
    return [orjson.loads(r)["id"] for r in broker.sent]


def test_a_file_is_sent_then_moved_to_done(watcher: FolderWatcher, broker: Broker) -> None:
    old(watcher.folder / "a.xml", "e1 e2")
    [outcome] = watcher.poll()
    assert (outcome.status, outcome.events) == ("done", 2)
    assert ids(broker) == ["e1", "e2"]
    assert (watcher.folder / DONE / "a.xml").exists() and not (watcher.folder / "a.xml").exists()


def test_a_file_that_cannot_be_read_goes_to_rejected_beside_its_reason(
    watcher: FolderWatcher, broker: Broker
) -> None:
    old(watcher.folder / "b.xml", "bad")
    [outcome] = watcher.poll()
    rejected = watcher.folder / REJECTED
    assert outcome.status == "rejected" and broker.sent == []
    assert (rejected / "b.xml").exists()
    assert "not well-formed" in (rejected / "b.xml.why").read_text()


def test_a_file_the_broker_did_not_acknowledge_waits_and_is_sent_at_the_next_poll(
    watcher: FolderWatcher, broker: Broker
) -> None:
    old(watcher.folder / "a.xml", "e1")
    broker.down = True
    [outcome] = watcher.poll()
    assert outcome.status == "waiting" and (watcher.folder / SENDING / "a.xml").exists()
    broker.down = False
    [outcome] = watcher.poll()
    assert outcome.status == "done" and ids(broker) == ["e1"]


def test_what_a_stopped_watcher_was_sending_is_sent_first_at_start(
    tmp_path: Path, broker: Broker
) -> None:
    (tmp_path / SENDING).mkdir()
    old(tmp_path / SENDING / "interrupted.xml", "e0")
    old(tmp_path / "new.xml", "e1")
    outcomes = FolderWatcher(tmp_path, convert, broker.send, settle=0).poll()
    assert [o.file for o in outcomes] == ["interrupted.xml", "new.xml"]
    assert ids(broker) == ["e0", "e1"]


def test_a_file_still_being_written_waits_until_it_settles(tmp_path: Path, broker: Broker) -> None:
    watcher = FolderWatcher(tmp_path, convert, broker.send, settle=30)
    (tmp_path / "fresh.xml").write_text("e1")
    assert watcher.poll() == []
    past = time.time() - 31
    os.utime(tmp_path / "fresh.xml", (past, past))
    assert [o.status for o in watcher.poll()] == ["done"]


@pytest.mark.parametrize("name", [".hidden.xml", "export.xml.tmp", "export.xml.part", "x.xml~"])
def test_a_file_named_as_unfinished_is_left_alone(
    watcher: FolderWatcher, broker: Broker, name: str
) -> None:
    old(watcher.folder / name, "e1")
    assert watcher.poll() == [] and (watcher.folder / name).exists()


def test_a_name_used_again_by_the_mis_overwrites_nothing(
    watcher: FolderWatcher, broker: Broker
) -> None:
    old(watcher.folder / "a.xml", "e1")
    watcher.poll()
    old(watcher.folder / "a.xml", "e2")
    watcher.poll()
    assert sorted(p.name for p in (watcher.folder / DONE).iterdir()) == ["a.2.xml", "a.xml"]


def test_files_are_taken_oldest_first(watcher: FolderWatcher, broker: Broker) -> None:
    second = old(watcher.folder / "a.xml", "e2")
    first = old(watcher.folder / "b.xml", "e1")
    os.utime(first, (time.time() - 120, time.time() - 120))
    assert second.exists()
    watcher.poll()
    assert ids(broker) == ["e1", "e2"]
