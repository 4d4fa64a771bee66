"""The MIS export folder, watched (pipeline.files.watch): each complete file sent and moved
to done/ once every event in it holds the log's receipt, kept beside it; an unreadable one to
rejected/ with its reason, nothing skipped and nothing sent twice across a stop. The broker
and the log are stood in for here; the real ones, and a watcher killed while files arrive,
are in tests/integration/test_mis_files_pipeline.py."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import orjson
import pytest

from pipeline.files.events import Converted, stream_events
from pipeline.files.gias import Gias
from pipeline.files.safe_xml import FileRefused
from pipeline.files.watch import DONE, REJECTED, SENDING, FolderWatcher, receipts_beside
from pipeline.logging import configure as configure_logging
from pipeline.policy.pack import Policy
from pipeline.transparency.delivery import DeliveryReceipt, open_receipt, sign_receipt
from pipeline.transparency.merkle import leaf_hash
from pipeline.transparency.note import Signer
from pipeline.transport.receipts import (
    Delivery,
    Held,
    OnReceipt,
    Outgoing,
    deliver_keeping,
    receipt_line,
)
from tests.factory import upn
from tests.mis_files import CTF_SECTIONS, census, census_pupil, ctf, ctf_pupil
from tests.unit.test_mis_files import BOMB

LOG = Signer("example.org/sharing-audit", bytes(range(32)))
OTHER_KEY = Signer("example.org/sharing-audit", bytes(range(1, 33)))


class Broker:
    """The broker and the log's worker: records what was sent, and gives each record the
    receipt an honest log signs, unless ``withheld`` names its event (no receipt comes) or
    ``forged`` does (a receipt comes under another key); ``down`` makes a send fail as an
    unanswered one does."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.down = False
        self.withheld: set[str] = set()
        self.forged: set[str] = set()

    def deliver(self, records: Sequence[Outgoing], on_receipt: OnReceipt) -> Delivery:
        if self.down:
            raise TimeoutError("no acknowledgement")
        delivery = Delivery()
        for index, record in enumerate(records):
            offset = len(self.sent)
            self.sent.append(record.raw)
            event = record.event_id or "-"
            if event in self.withheld:
                delivery.missing.append(index)
                continue
            receipt = DeliveryReceipt(
                LOG.name, record.event_id, "sharing.transfer", 0, offset, offset + 1,
                leaf_hash(record.raw), "allowed", 1767225600,
            )  # fmt: skip
            note = sign_receipt(receipt, OTHER_KEY if event in self.forged else LOG)
            held = Held(receipt, note)
            delivery.held[index] = held
            on_receipt(index, held)
        return delivery

    def send(self, records: list[bytes], kept: Path | None) -> Mapping[int, str]:
        """What the watcher is given: with a receipts file, the sending that keeps the
        log's receipts in it; without, acknowledgements alone."""
        if kept is None:
            if self.down:
                raise TimeoutError("no acknowledgement")
            self.sent += records
            return {}
        outgoing = [Outgoing(raw, orjson.loads(raw)["id"]) for raw in records]
        return deliver_keeping(outgoing, kept, LOG.verifier, self.deliver).lacking


def convert(stream: IO[bytes], name: str) -> Converted:
    """A file's events: one per word of text; a file saying 'bad' cannot be read."""
    text = stream.read().decode()
    if "bad" in text:
        raise FileRefused(f"{name}: not well-formed XML at line 1, column 0")
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
    assert sorted(p.name for p in (watcher.folder / DONE).iterdir()) == [
        "a.2.xml",
        "a.2.xml.receipts.jsonl",
        "a.xml",
        "a.xml.receipts.jsonl",
    ]


def test_files_are_taken_oldest_first(watcher: FolderWatcher, broker: Broker) -> None:
    second = old(watcher.folder / "a.xml", "e2")
    first = old(watcher.folder / "b.xml", "e1")
    os.utime(first, (time.time() - 120, time.time() - 120))
    assert second.exists()
    watcher.poll()
    assert ids(broker) == ["e1", "e2"]


# -- a hostile export folder --------------------------------------------------------------


def test_a_reader_failing_in_any_way_rejects_the_file_and_the_watcher_goes_on(
    tmp_path: Path, broker: Broker
) -> None:
    def failing(stream: IO[bytes], name: str) -> Converted:
        if "deep" in name:
            raise RecursionError("maximum recursion depth exceeded")
        return convert(stream, name)

    old(tmp_path / "a-deep.xml", "e0")
    old(tmp_path / "b.xml", "e1")
    outcomes = FolderWatcher(tmp_path, failing, broker.send, settle=0).poll()
    assert [(o.file, o.status) for o in outcomes] == [("a-deep.xml", "rejected"), ("b.xml", "done")]
    assert "RecursionError" in (tmp_path / REJECTED / "a-deep.xml.why").read_text()
    assert ids(broker) == ["e1"]


def test_a_file_replaced_while_it_is_read_is_sent_as_read_and_the_replacement_after(
    tmp_path: Path, broker: Broker
) -> None:
    def replaced_while_read(stream: IO[bytes], name: str) -> Converted:
        if not hasattr(replaced_while_read, "done"):
            replaced_while_read.done = True  # type: ignore[attr-defined]
            (tmp_path / "new.tmp").write_text("e9")
            os.replace(tmp_path / "new.tmp", tmp_path / "a.xml")  # the MIS writes again
        return convert(stream, name)

    old(tmp_path / "a.xml", "e1 e2")
    watcher = FolderWatcher(tmp_path, replaced_while_read, broker.send, settle=0)
    watcher.poll()
    assert ids(broker) == ["e1", "e2"] and (tmp_path / "a.xml").read_text() == "e9"
    watcher.poll()
    assert ids(broker) == ["e1", "e2", "e9"]
    assert sorted(p.read_text() for p in (tmp_path / DONE).glob("*.xml")) == ["e1 e2", "e9"]


def test_a_symbolic_link_is_rejected_unread_and_its_reason_tells_nothing_of_its_target(
    tmp_path: Path, broker: Broker
) -> None:
    folder, secret = tmp_path / "exports", tmp_path / "secret.txt"
    folder.mkdir()
    secret.write_text("bad e-secret")
    (folder / "link.xml").symlink_to(secret)
    [outcome] = FolderWatcher(folder, convert, broker.send, settle=0).poll()
    why = (folder / REJECTED / "link.xml.why").read_text()
    assert outcome.status == "rejected" and "symbolic link" in why and broker.sent == []
    assert "secret" not in why and "well-formed" not in why
    assert (folder / REJECTED / "link.xml").is_symlink() and secret.read_text() == "bad e-secret"


@pytest.mark.parametrize(
    ("make", "says"),
    [(os.mkfifo, "a FIFO"), (os.mkdir, "a folder")],
    ids=["fifo", "folder"],
)
def test_anything_but_a_regular_file_is_rejected_unopened_saying_what_it_is(
    watcher: FolderWatcher, broker: Broker, make: Callable[[Path], None], says: str
) -> None:
    make(watcher.folder / "odd.xml")
    old(watcher.folder / "b.xml", "e1")
    outcomes = watcher.poll()
    assert sorted((o.file, o.status) for o in outcomes) == [
        ("b.xml", "done"),
        ("odd.xml", "rejected"),
    ]
    assert says in (watcher.folder / REJECTED / "odd.xml.why").read_text()
    assert ids(broker) == ["e1"]


def test_control_characters_in_a_files_name_are_escaped_in_its_reason(
    watcher: FolderWatcher, broker: Broker
) -> None:
    name = "a\x1b]0;owned\x07\x1b[2J\u202e.xml"
    old(watcher.folder / name, "bad")
    [outcome] = watcher.poll()
    why = (watcher.folder / REJECTED / (name + ".why")).read_text()
    assert outcome.status == "rejected" and "\\x1b]0;owned\\x07\\x1b[2J\\u202e" in why
    assert not any(c in why for c in "\x1b\x07\u202e")


def _good(serial: int, pupils: int = 3) -> bytes:
    return ctf(*(ctf_pupil(serial * 10 + k, CTF_SECTIONS["sen"][0]) for k in range(pupils)))


#: Each hostile file's bytes, and what its reason must say.
HOSTILE = {
    "deep.xml": (
        ctf(ctf_pupil(1, "<BasicDetails>" * 5_000 + "</BasicDetails>" * 5_000)),
        "nested more than",
    ),
    "padded.xml": (ctf(ctf_pupil(2, "<Email>" + "a" * (2 << 20) + "</Email>")), "MiB with no"),
    "bomb.xml": (BOMB, "document type declaration"),
    "page.xml": (b"<html><body>root:x:0:0</body></html>", "neither a Common Transfer File"),
    "cut\x1b[2J\x1b]0;owned\x07.xml": (_good(3)[:-40], "not well-formed"),
}


def test_a_hostile_export_folder_has_every_good_file_recorded_and_the_rest_rejected_saying_why(
    tmp_path: Path, policy: Policy
) -> None:
    folder, secret = tmp_path / "exports", tmp_path / "passwd"
    folder.mkdir()
    secret.write_bytes(_good(9)[:-9] + b"root:x:0:0")
    good = {"a.xml": _good(1), "b.xml": _good(2), "sc.xml": census(census_pupil(5))}
    one_unknown = ctf(ctf_pupil(99, CTF_SECTIONS["ethnicity"][0]), destination="<LEA>XXX</LEA>")
    for name, data in [*good.items(), *((n, d) for n, (d, _) in HOSTILE.items())]:
        (folder / name).write_bytes(data)
    (folder / "swapped.xml").write_bytes(_good(4, pupils=5))
    (folder / "link.xml").symlink_to(secret)
    os.mkfifo(folder / "pipe.xml")
    (folder / "sub.xml").mkdir()
    broker = Broker()

    def reading(stream: IO[bytes], name: str) -> Converted:
        if name.endswith("swapped.xml") and not (folder / "swapped.xml.tmp").exists():
            (folder / "swapped.xml.tmp").write_bytes(one_unknown)  # the MIS writes again
            os.link(folder / "swapped.xml.tmp", folder / "swap")
            os.replace(folder / "swap", folder / "swapped.xml")
        return stream_events(stream, name, policy, Gias())

    FolderWatcher(folder, reading, broker.send, settle=0).poll()
    # a run killed while sending, then started again as more files arrive
    (folder / SENDING / "interrupted.xml").write_bytes(_good(6))
    (folder / "c.xml").write_bytes(_good(7))
    (folder / "deep2.xml").write_bytes(HOSTILE["deep.xml"][0])
    FolderWatcher(folder, reading, broker.send, settle=0).poll()
    (folder / "swapped.xml.tmp").unlink()

    recorded = [*good.values(), _good(4, pupils=5), one_unknown, _good(6), _good(7)]
    expected = {
        event["id"]
        for data in recorded
        for event in stream_events(io.BytesIO(data), "x", policy, Gias()).events
    }
    assert set(ids(broker)) == expected and len(broker.sent) == 19
    filed = [*good, "swapped.xml", "swapped.2.xml", "interrupted.xml", "c.xml"]
    assert sorted(p.name for p in (folder / DONE).iterdir()) == sorted(
        [*filed, *(f"{name}.receipts.jsonl" for name in filed)]
    )
    assert [p for p in folder.iterdir() if p.name not in (DONE, REJECTED, SENDING)] == []
    assert list((folder / SENDING).iterdir()) == []
    says = {name: said for name, (_, said) in HOSTILE.items()} | {
        "link.xml": "symbolic link",
        "pipe.xml": "FIFO",
        "sub.xml": "a folder",
        "deep2.xml": "nested more than",
    }
    for name, said in says.items():
        why = (folder / REJECTED / (name + ".why")).read_text()
        assert said in why, (name, why)
        assert "root:x" not in why and upn(10) not in why and "\x1b" not in why
    cut = next(name for name in HOSTILE if name.startswith("cut"))
    assert "cut\\x1b[2J\\x1b]0;owned\\x07.xml" in (folder / REJECTED / f"{cut}.why").read_text()


def test_a_file_that_cannot_be_taken_waits_and_the_watcher_goes_on(
    watcher: FolderWatcher, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    old(watcher.folder / "a.xml", "e1")
    old(watcher.folder / "b.xml", "e2")
    replace = os.replace

    def refusing(source: Path, target: Path) -> None:
        if Path(source).name == "a.xml" and Path(target).parent.name == SENDING:
            raise PermissionError(1, "Operation not permitted")
        replace(source, target)

    monkeypatch.setattr(os, "replace", refusing)
    outcomes = watcher.poll()
    assert [(o.file, o.status) for o in outcomes] == [("a.xml", "waiting"), ("b.xml", "done")]
    assert "Operation not permitted" in outcomes[0].why and ids(broker) == ["e2"]


@pytest.mark.parametrize("name", [DONE, REJECTED, SENDING])
def test_a_watcher_will_not_start_on_a_folder_whose_own_folders_are_links(
    tmp_path: Path, broker: Broker, name: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / name).symlink_to(elsewhere)
    with pytest.raises(OSError, match=f"{name}/ is a symbolic link"):
        FolderWatcher(tmp_path / "exports", convert, broker.send, settle=0)


# -- done only when every event holds the log's receipt ------------------------------------


def kept(path: Path) -> list[tuple[int, str]]:
    """A receipts file's rows as (line, event id), each receipt checked under the log's key."""
    rows = [orjson.loads(row) for row in path.read_bytes().splitlines()]
    for row in rows:
        assert open_receipt(row["receipt"].encode(), LOG.verifier).event_id == row["event_id"]
    return [(row["line"], row["event_id"]) for row in rows]


def test_a_file_goes_to_done_with_the_logs_receipt_of_each_event_beside_it(
    watcher: FolderWatcher, broker: Broker
) -> None:
    old(watcher.folder / "a.xml", "e1 e2 e3")
    [outcome] = watcher.poll()
    assert (outcome.status, outcome.events) == ("done", 3)
    done = watcher.folder / DONE
    assert kept(done / "a.xml.receipts.jsonl") == [(1, "e1"), (2, "e2"), (3, "e3")]
    assert list((watcher.folder / SENDING).iterdir()) == []


def test_a_file_an_event_of_which_gets_no_receipt_stays_in_sending_and_the_rest_go_on(
    watcher: FolderWatcher, broker: Broker
) -> None:
    old(watcher.folder / "a.xml", "e1 e2 e3")
    old(watcher.folder / "b.xml", "e4")
    os.utime(watcher.folder / "a.xml", (time.time() - 120, time.time() - 120))
    broker.withheld = {"e2"}
    outcomes = watcher.poll()
    assert [(o.file, o.status) for o in outcomes] == [("a.xml", "waiting"), ("b.xml", "done")]
    assert "1 of 3 events" in outcomes[0].why and "line 2" in outcomes[0].why
    assert f"stays in {SENDING}/" in outcomes[0].why
    sending = watcher.folder / SENDING
    assert (sending / "a.xml").exists() and not (watcher.folder / DONE / "a.xml").exists()
    assert kept(sending / "a.xml.receipts.jsonl") == [(1, "e1"), (3, "e3")]


def test_after_a_restart_only_the_events_without_a_receipt_are_sent_again(
    tmp_path: Path, broker: Broker
) -> None:
    old(tmp_path / "a.xml", "e1 e2 e3")
    broker.withheld = {"e2"}
    FolderWatcher(tmp_path, convert, broker.send, settle=0).poll()
    broker.withheld, broker.sent = set(), []
    [outcome] = FolderWatcher(tmp_path, convert, broker.send, settle=0).poll()
    assert outcome.status == "done" and ids(broker) == ["e2"]
    assert sorted(kept(tmp_path / DONE / "a.xml.receipts.jsonl")) == [
        (1, "e1"),
        (2, "e2"),
        (3, "e3"),
    ]


class Crash(BaseException):
    """The watcher killed at this point."""


@pytest.mark.parametrize("moving", ["a.xml.receipts.jsonl", "a.xml"])
def test_a_watcher_killed_between_filing_a_file_and_its_receipts_files_both_at_restart(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch, moving: str
) -> None:
    old(tmp_path / "a.xml", "e1 e2")
    replace = os.replace

    def killed(source: Path, target: Path) -> None:
        if Path(source).name == moving and Path(target).parent.name == DONE:
            raise Crash
        replace(source, target)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(Crash):
        FolderWatcher(tmp_path, convert, broker.send, settle=0).poll()
    monkeypatch.setattr(os, "replace", replace)
    broker.sent = []
    [outcome] = FolderWatcher(tmp_path, convert, broker.send, settle=0).poll()
    assert outcome.status == "done" and broker.sent == []
    assert sorted(p.name for p in (tmp_path / DONE).iterdir()) == ["a.xml", "a.xml.receipts.jsonl"]
    assert kept(tmp_path / DONE / "a.xml.receipts.jsonl") == [(1, "e1"), (2, "e2")]
    assert list((tmp_path / SENDING).iterdir()) == []


def test_a_forged_receipt_kept_in_sending_is_ignored_and_its_event_sent_again(
    tmp_path: Path, broker: Broker
) -> None:
    (tmp_path / SENDING).mkdir()
    old(tmp_path / SENDING / "a.xml", "e1 e2")
    receipt = DeliveryReceipt(
        LOG.name, "e1", "sharing.transfer", 0, 7, 7, leaf_hash(b"e1"), "allowed", 1767225600
    )
    genuine = DeliveryReceipt(
        LOG.name, "e2", "sharing.transfer", 0, 8, 8, leaf_hash(b"e2"), "allowed", 1767225600
    )
    (tmp_path / SENDING / "a.xml.receipts.jsonl").write_bytes(
        receipt_line(1, "e1", sign_receipt(receipt, OTHER_KEY))
        + receipt_line(2, "e2", sign_receipt(genuine, LOG))
    )
    [outcome] = FolderWatcher(tmp_path, convert, broker.send, settle=0).poll()
    assert outcome.status == "done" and ids(broker) == ["e1"]
    assert sorted(kept(tmp_path / DONE / "a.xml.receipts.jsonl")) == [(1, "e1"), (2, "e2")]


def test_a_receipt_the_sender_hands_back_under_another_key_does_not_file_the_file(
    watcher: FolderWatcher, broker: Broker
) -> None:
    old(watcher.folder / "a.xml", "e1 e2")
    broker.forged = {"e2"}
    [outcome] = watcher.poll()
    assert outcome.status == "waiting" and "line 2" in outcome.why
    assert kept(watcher.folder / SENDING / "a.xml.receipts.jsonl") == [(1, "e1")]


def test_a_file_with_no_events_is_done_with_an_empty_receipts_file(
    watcher: FolderWatcher, broker: Broker
) -> None:
    old(watcher.folder / "empty.xml", "")
    [outcome] = watcher.poll()
    assert (outcome.status, outcome.events) == ("done", 0) and broker.sent == []
    assert (watcher.folder / DONE / "empty.xml.receipts.jsonl").read_bytes() == b""


def test_waiting_for_acknowledgements_alone_files_no_receipts(
    tmp_path: Path, broker: Broker
) -> None:
    old(tmp_path / "a.xml", "e1")
    [outcome] = FolderWatcher(tmp_path, convert, broker.send, settle=0, receipts=False).poll()
    assert outcome.status == "done" and ids(broker) == ["e1"]
    assert sorted(p.name for p in (tmp_path / DONE).iterdir()) == ["a.xml"]


def test_a_file_named_as_a_receipts_file_is_rejected_unread_and_never_taken_for_one(
    tmp_path: Path, broker: Broker
) -> None:
    """Whatever the pattern lets in (here, every name)."""
    watcher = FolderWatcher(tmp_path, convert, broker.send, settle=0, pattern="*")
    old(watcher.folder / "a.xml", "e1")
    old(watcher.folder / "a.xml.receipts.jsonl", "e9")
    outcomes = watcher.poll()
    assert sorted((o.file, o.status) for o in outcomes) == [
        ("a.xml", "done"),
        ("a.xml.receipts.jsonl", "rejected"),
    ]
    why = (watcher.folder / REJECTED / "a.xml.receipts.jsonl.why").read_text()
    assert "receipts" in why and ids(broker) == ["e1"]
    assert kept(watcher.folder / DONE / "a.xml.receipts.jsonl") == [(1, "e1")]


def test_a_link_in_place_of_a_files_receipts_is_set_aside_unfollowed_and_the_file_done(
    tmp_path: Path, broker: Broker
) -> None:
    folder, elsewhere = tmp_path / "exports", tmp_path / "elsewhere.txt"
    (folder / SENDING).mkdir(parents=True)
    elsewhere.write_text("")
    old(folder / SENDING / "a.xml", "e1")
    (folder / SENDING / "a.xml.receipts.jsonl").symlink_to(elsewhere)
    [outcome] = FolderWatcher(folder, convert, broker.send, settle=0).poll()
    assert outcome.status == "done" and elsewhere.read_text() == ""
    assert kept(folder / DONE / "a.xml.receipts.jsonl") == [(1, "e1")]
    why = (folder / REJECTED / "a.xml.receipts.jsonl.why").read_text()
    assert "symbolic link" in why and (folder / REJECTED / "a.xml.receipts.jsonl").is_symlink()


def test_a_file_rejected_at_restart_takes_the_receipts_its_events_got_along(
    tmp_path: Path, broker: Broker
) -> None:
    old(tmp_path / "a.xml", "e1 e2")
    broker.withheld = {"e2"}
    FolderWatcher(tmp_path, convert, broker.send, settle=0).poll()

    def refusing(stream: IO[bytes], name: str) -> Converted:
        raise FileRefused(f"{name}: no longer read by this pack")

    [outcome] = FolderWatcher(tmp_path, refusing, broker.send, settle=0).poll()
    assert outcome.status == "rejected" and list((tmp_path / SENDING).iterdir()) == []
    assert kept(tmp_path / REJECTED / "a.xml.receipts.jsonl") == [(1, "e1")]


def test_a_file_whose_name_leaves_no_room_for_its_reason_is_rejected_and_the_rest_sent(
    watcher: FolderWatcher, broker: Broker
) -> None:
    """A name of 255 bytes, the most a file system allows, has no room for ".why": the
    reason must be written all the same, and the watcher go on (else it dies on the
    file at every start, as it lies in .sending/)."""
    long = "b" * 251 + ".xml"
    old(watcher.folder / long, "bad")
    old(watcher.folder / "z.xml", "e1")
    outcomes = watcher.poll()
    assert [(o.file, o.status) for o in outcomes] == [(long, "rejected"), ("z.xml", "done")]
    assert ids(broker) == ["e1"]
    reasons = [p for p in (watcher.folder / REJECTED).iterdir() if p.name.endswith(".why")]
    assert len(reasons) == 1 and "not well-formed" in reasons[0].read_text()


def test_a_file_whose_name_is_not_utf8_is_rejected_saying_why_and_the_rest_sent(
    watcher: FolderWatcher, broker: Broker
) -> None:
    raw = os.fsencode(watcher.folder) + b"/caf\xe9.xml"  # Latin-1, as an old MIS may write
    with open(raw, "w") as out:
        out.write("bad")
    past = time.time() - 60
    os.utime(raw, (past, past))
    old(watcher.folder / "z.xml", "e1")
    outcomes = watcher.poll()
    assert [o.status for o in outcomes] == ["rejected", "done"] and ids(broker) == ["e1"]
    [reason] = [p for p in (watcher.folder / REJECTED).iterdir() if p.name.endswith(".why")]
    assert "not well-formed" in reason.read_text()


@pytest.mark.parametrize("name", [DONE, REJECTED])
def test_a_folder_of_the_watchers_own_swapped_for_a_link_while_it_runs_takes_nothing(
    tmp_path: Path, broker: Broker, name: str
) -> None:
    """Whoever writes the exports can replace done/ or rejected/ by a link at any time:
    the watcher must never move a file, or write a reason, where it points."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "exports"
    watcher = FolderWatcher(folder, convert, broker.send, settle=0)
    (folder / name).rmdir()
    (folder / name).symlink_to(elsewhere)
    old(folder / "a.xml", "e1")
    old(folder / "b.xml", "bad")
    with contextlib.suppress(OSError):  # refusing to go on is safe; following the link is not
        watcher.poll()
    assert list(elsewhere.iterdir()) == []


def test_a_file_whose_name_leaves_no_room_for_its_receipts_is_done_with_them_beside_it(
    watcher: FolderWatcher, broker: Broker
) -> None:
    long = "c" * 251 + ".xml"
    old(watcher.folder / long, "e1 e2")
    [outcome] = watcher.poll()
    assert outcome.status == "done"
    done = watcher.folder / DONE
    assert kept(receipts_beside(done / long)) == [(1, "e1"), (2, "e2")]
    assert receipts_beside(done / long) != receipts_beside(done / ("c" * 250 + "d.xml"))


def test_a_name_the_pattern_does_not_match_is_left_where_it_is_unread(
    watcher: FolderWatcher, broker: Broker
) -> None:
    old(watcher.folder / "a.xml", "e1")
    old(watcher.folder / "notes.txt", "bad: remember the census")
    [outcome] = watcher.poll()
    assert (outcome.file, outcome.status) == ("a.xml", "done")
    assert (watcher.folder / "notes.txt").read_text() == "bad: remember the census"
    assert list((watcher.folder / REJECTED).iterdir()) == [] and ids(broker) == ["e1"]


def test_the_pattern_matches_a_name_in_any_case(watcher: FolderWatcher, broker: Broker) -> None:
    old(watcher.folder / "A.XML", "e1")
    assert [(o.file, o.status) for o in watcher.poll()] == [("A.XML", "done")]


def test_a_pattern_given_takes_those_names_and_no_others(tmp_path: Path, broker: Broker) -> None:
    watcher = FolderWatcher(tmp_path, convert, broker.send, settle=0, pattern="*_CTF_*.xml")
    old(tmp_path / "850200_CTF_8502002_001.xml", "e1")
    old(tmp_path / "census.xml", "e2")
    assert [o.file for o in watcher.poll()] == ["850200_CTF_8502002_001.xml"]
    assert (tmp_path / "census.xml").exists() and ids(broker) == ["e1"]


def test_a_file_is_told_once_not_also_in_the_log_a_person_at_a_terminal_sees(
    watcher: FolderWatcher, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line reports each outcome; the watcher's own records of them are at
    INFO, below the WARNING the command line logs at."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(level="WARNING", json=True)
    old(watcher.folder / "bad.xml", "bad")
    old(watcher.folder / "b.xml", "e1")
    try:
        assert sorted(o.status for o in watcher.poll()) == ["done", "rejected"]
    finally:
        root.handlers[:], root.level = handlers, level
    said = capsys.readouterr()
    assert said.out == said.err == ""


def test_how_many_events_lack_a_receipt_is_said_in_agreement_with_the_count(
    watcher: FolderWatcher, broker: Broker
) -> None:
    broker.withheld = {"e2", "e3", "e4"}
    old(watcher.folder / "a.xml", "e1 e2")
    old(watcher.folder / "b.xml", "e3 e4")
    why = {o.file: o.why for o in watcher.poll()}
    assert why["a.xml"].startswith("1 of 2 events holds no receipt of the log (line 2: ")
    assert why["b.xml"].startswith("2 of 2 events hold no receipt of the log (line 1: ")
