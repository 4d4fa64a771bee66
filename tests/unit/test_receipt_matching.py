"""Matching the log's receipts to the records a sender sent, without a broker
(pipeline.transport.receipts): a line counts delivered only by a receipt the log signed,
for the position the broker acknowledged and the event the line carries; anything else on
the topic is counted and ignored."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar, NamedTuple

import orjson
import pytest

from pipeline.transparency.delivery import DeliveryReceipt, sign_receipt
from pipeline.transparency.merkle import leaf_hash
from pipeline.transparency.note import Signer, Verifier
from pipeline.transport.receipts import (
    CHECKED_TOGETHER,
    CLOCK_SKEW,
    REFUSED,
    STALE,
    Outgoing,
    ReceiptBook,
    deliver,
    read_held,
    receipt_line,
)

ORIGIN = "example.org/sharing-audit"
LOG = Signer(ORIGIN, bytes(range(32)))
OTHER_KEY = Signer(ORIGIN, bytes(range(1, 33)))
OTHER_LOG = Signer("other.example/log", bytes(range(32)))
AT = ("sharing.referral", 1, 7)
NOW = int(time.time())  # the sender's clock, as the tests of deliver() read it too


def receipt(
    event_id: str | None = "ev-1",
    at: tuple[str, int, int] = AT,
    decision: str = "allowed",
    seq: int = 3,
    origin: str = ORIGIN,
) -> DeliveryReceipt:
    topic, partition, offset = at
    return DeliveryReceipt(
        origin, event_id, topic, partition, offset, seq, leaf_hash(b"e"), decision, NOW
    )


def signed(r: DeliveryReceipt, log: Signer = LOG) -> bytes:
    return sign_receipt(r, log)


def book() -> ReceiptBook:
    return ReceiptBook(LOG.verifier, clock=lambda: NOW)


def test_a_receipt_for_the_acknowledged_position_and_event_delivers_the_line() -> None:
    matching = book()
    matching.acked(1, AT, "ev-1")
    found = matching.offer(signed(receipt()))
    assert found is not None and found[0] == 1
    assert found[1].receipt.seq == 3 and found[1].note == signed(receipt())
    assert set(matching.held) == {1}


def test_a_receipt_that_comes_before_the_ack_is_kept_until_the_ack_comes() -> None:
    matching = book()
    assert matching.offer(signed(receipt())) is None
    held = matching.acked(1, AT, "ev-1")
    assert held is not None and held.receipt.decision == "allowed"
    assert set(matching.held) == {1}


def test_an_acknowledged_line_without_a_receipt_is_not_delivered() -> None:
    matching = book()
    matching.acked(1, AT, "ev-1")
    matching.acked(2, ("sharing.referral", 1, 8), "ev-2")
    matching.offer(signed(receipt()))
    assert matching.waiting() == [2]


def test_a_receipt_signed_by_another_key_is_ignored_and_counted() -> None:
    matching = book()
    matching.acked(1, AT, "ev-1")
    assert matching.offer(signed(receipt(), OTHER_KEY)) is None
    assert matching.waiting() == [1]
    assert matching.ignored["not signed by the log"] == 1


def test_a_receipt_of_another_log_is_ignored_and_counted() -> None:
    matching = book()
    matching.acked(1, AT, "ev-1")
    assert matching.offer(signed(receipt(origin=OTHER_LOG.name), OTHER_LOG)) is None
    assert matching.waiting() == [1]
    assert matching.ignored["not signed by the log"] == 1


def test_garbage_on_the_topic_is_ignored_and_counted() -> None:
    matching = book()
    for junk in (b"", b"\xff\xfe", b"sharing-audit/receipt/v1\n", b"{}" * 10_000):
        assert matching.offer(junk) is None
    assert matching.ignored["not signed by the log"] == 4


def test_a_receipt_naming_another_event_at_the_position_is_not_the_lines() -> None:
    matching = book()
    matching.acked(1, AT, "ev-1")
    assert matching.offer(signed(receipt(event_id="ev-other"))) is None
    assert matching.waiting() == [1]
    assert matching.ignored["for another event at the position"] == 1


def test_an_early_receipt_naming_another_event_is_not_taken_when_the_ack_comes() -> None:
    matching = book()
    matching.offer(signed(receipt(event_id="ev-other")))
    assert matching.acked(1, AT, "ev-1") is None
    assert matching.waiting() == [1]
    assert matching.ignored["for another event at the position"] == 1


def test_a_line_without_an_event_id_takes_a_receipt_that_names_none() -> None:
    matching = book()
    matching.acked(1, AT, None)
    assert matching.offer(signed(receipt(event_id="ev-1"))) is None
    found = matching.offer(signed(receipt(event_id=None, decision="rejected")))
    assert found is not None and found[0] == 1


def dated(r: DeliveryReceipt, seconds_before_now: int) -> DeliveryReceipt:
    return dataclasses.replace(r, time=NOW - seconds_before_now)


def test_a_replayed_old_receipt_at_a_reused_offset_does_not_deliver_a_line_without_an_id() -> None:
    """A broker started again reuses offsets: the log's genuine receipt for another id-less
    record at this offset, a day before, is not this line's."""
    matching = book()
    matching.acked(1, AT, None)
    assert (
        matching.offer(signed(dated(receipt(event_id=None, decision="rejected"), 86_400))) is None
    )
    assert matching.waiting() == [1]
    assert matching.ignored[STALE] == 1


def test_an_old_receipt_read_before_the_ack_does_not_deliver_a_line_without_an_id() -> None:
    matching = book()
    matching.offer(signed(dated(receipt(event_id=None, decision="rejected"), 86_400)))
    assert matching.acked(1, AT, None) is None
    assert matching.waiting() == [1]


def test_a_receipt_dated_within_the_clock_skew_delivers_a_line_without_an_id() -> None:
    """The worker's clock may be behind the sender's: minutes apart is not a replay."""
    matching = book()
    matching.acked(1, AT, None)
    found = matching.offer(signed(dated(receipt(event_id=None), int(CLOCK_SKEW) - 1)))
    assert found is not None and found[0] == 1


def test_an_old_receipt_naming_the_lines_event_id_still_delivers_it() -> None:
    """A line with an id is matched by its id too: the date does not matter."""
    matching = book()
    matching.acked(1, AT, "ev-1")
    assert matching.offer(signed(dated(receipt(), 86_400))) is not None


def test_a_receipt_delivered_twice_counts_once() -> None:
    matching = book()
    matching.acked(1, AT, "ev-1")
    assert matching.offer(signed(receipt())) is not None
    assert matching.offer(signed(receipt())) is None
    assert list(matching.held) == [1] and matching.repeated == 1


def test_a_resent_lines_duplicate_receipt_naming_the_first_entry_delivers_it() -> None:
    matching = book()
    matching.acked(4, ("sharing.referral", 0, 12), "ev-1")
    first_entry = receipt(at=("sharing.referral", 0, 12), decision="duplicate", seq=3)
    found = matching.offer(signed(first_entry))
    assert found is not None and found[1].receipt.decision == "duplicate"


def test_receipts_of_other_senders_records_are_neither_held_nor_ignored() -> None:
    matching = book()
    matching.acked(1, AT, "ev-1")
    matching.offer(signed(receipt(event_id="ev-9", at=("sharing.census", 0, 1))))
    assert matching.waiting() == [1] and not matching.held and not matching.ignored


class CountingVerifier(Verifier):
    """The log's verifier key, counting the signatures it checks."""

    checked: ClassVar[list[bytes]] = []

    def verifies(self, message: bytes, signature: bytes) -> bool:
        self.checked.append(message)
        return super().verifies(message, signature)


def test_only_the_receipts_of_this_senders_positions_have_their_signatures_checked() -> None:
    """A trust's many MISs share the topic: a sender does not pay for the others'."""
    CountingVerifier.checked.clear()
    matching = ReceiptBook(CountingVerifier(LOG.name, LOG.verifier.public), clock=lambda: NOW)
    matching.acked(1, AT, "ev-1")
    for offset in range(100):
        matching.offer(signed(receipt(f"ev-other-{offset}", at=("sharing.census", 0, offset))))
    assert matching.offer(signed(receipt())) is not None
    assert len(CountingVerifier.checked) == 1


def burst(matching: ReceiptBook) -> list[bytes]:
    """A poll's worth of notes: receipts of many lines the sender waits for, among them a
    forged one, one twice, one of another sender's record and one read before its ack."""
    count = 2 * CHECKED_TOGETHER
    for line in range(count):
        matching.acked(line, ("sharing.referral", 0, line), f"ev-{line}")
    notes = [signed(receipt(f"ev-{n}", at=("sharing.referral", 0, n))) for n in range(count)]
    notes[5] = signed(receipt("ev-5", at=("sharing.referral", 0, 5)), OTHER_KEY)
    notes.insert(9, notes[8])
    notes.append(signed(receipt("ev-x", at=("sharing.census", 3, 1))))
    notes.append(signed(receipt(f"ev-{count}", at=("sharing.referral", 0, count))))
    return notes


def test_a_burst_of_receipts_offered_at_once_delivers_what_offering_each_in_turn_does() -> None:
    one_by_one, at_once = book(), book()
    notes, same = burst(one_by_one), burst(at_once)
    assert notes == same
    delivered = [found for note in notes if (found := one_by_one.offer(note)) is not None]
    assert at_once.offer_all(notes) == delivered
    assert len(delivered) == 2 * CHECKED_TOGETHER - 1
    assert at_once.waiting() == one_by_one.waiting() == [5]
    assert at_once.ignored == one_by_one.ignored == {REFUSED: 1}
    assert at_once.repeated == one_by_one.repeated == 1
    count = 2 * CHECKED_TOGETHER
    assert at_once.acked(count, ("sharing.referral", 0, count), f"ev-{count}") is not None


class ThreadNoting(Verifier):
    """The log's verifier key, noting the threads its signatures are checked on, and what."""

    threads: ClassVar[set[str]] = set()
    checked: ClassVar[list[bytes]] = []

    def verifies(self, message: bytes, signature: bytes) -> bool:
        self.threads.add(threading.current_thread().name)
        self.checked.append(message)
        time.sleep(0.002)  # long enough that one thread cannot take every check
        return super().verifies(message, signature)


def test_a_burst_of_receipts_has_its_signatures_checked_on_several_threads() -> None:
    """A worker answers a group of thousands of records at once: the sender checks them on
    every core (a check releases the GIL), not on one while the others stand idle."""
    ThreadNoting.threads.clear()
    matching = ReceiptBook(ThreadNoting(LOG.name, LOG.verifier.public), clock=lambda: NOW)
    matching.offer_all(burst(matching))
    checkers = ThreadNoting.threads - {threading.current_thread().name}
    assert len(checkers) >= min(2, os.cpu_count() or 1)


def test_each_receipt_of_a_burst_has_its_signature_checked_once() -> None:
    """Checked ahead, a receipt is not checked again as it is offered, nor twice when the
    topic carries it twice; the receipts of others' records and of records not yet
    acknowledged are not checked ahead (nor is the forged one: another key id)."""
    ThreadNoting.checked.clear()
    matching = ReceiptBook(ThreadNoting(LOG.name, LOG.verifier.public), clock=lambda: NOW)
    matching.offer_all(burst(matching))
    assert len(ThreadNoting.checked) == len(set(ThreadNoting.checked)) == 2 * CHECKED_TOGETHER - 1


def test_a_forked_child_checks_a_burst_of_receipts_as_its_parent_does() -> None:
    """A child inherits its parent's threads as a pool that is full but has none running:
    it makes threads of its own rather than wait on them for ever."""
    parent = book()
    assert parent.offer_all(burst(parent))
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        status = 2
        try:
            signal.alarm(20)
            child = book()
            status = 0 if len(child.offer_all(burst(child))) == 2 * CHECKED_TOGETHER - 1 else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_burst_of_receipts_offered_as_the_interpreter_exits_is_checked_in_turn() -> None:
    """Threads are refused once the interpreter is exiting (an atexit handler, a thread
    left running): the receipts are checked one by one, as offered."""
    at_exit = (
        "import atexit\n"
        "from tests.unit.test_receipt_matching import book, burst\n"
        "def deliver():\n"
        "    matching = book()\n"
        "    print(len(matching.offer_all(burst(matching))))\n"
        "atexit.register(deliver)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", at_exit], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == str(2 * CHECKED_TOGETHER - 1), done.stderr


class FailingOn(Verifier):
    """The log's verifier key, failing outright (not refusing) on one receipt's text."""

    failing: ClassVar[bytes] = b""

    def verifies(self, message: bytes, signature: bytes) -> bool:
        if message == self.failing:
            raise RuntimeError("the check itself failed")
        return super().verifies(message, signature)


def test_a_check_that_fails_in_a_burst_fails_in_its_turn_after_the_receipts_before_it() -> None:
    matching = ReceiptBook(FailingOn(LOG.name, LOG.verifier.public), clock=lambda: NOW)
    notes = burst(matching)
    FailingOn.failing = notes[40].split(b"\n\n")[0] + b"\n"
    try:
        with pytest.raises(RuntimeError, match="the check itself failed"):
            matching.offer_all(notes)
    finally:
        FailingOn.failing = b""
    assert len(matching.held) == 38  # the 40 before it, but the forged one and a repeat


def test_a_forged_receipt_read_before_the_ack_is_refused_when_the_ack_comes() -> None:
    matching = book()
    matching.offer(signed(receipt(), OTHER_KEY))
    assert matching.acked(1, AT, "ev-1") is None
    assert matching.waiting() == [1]
    assert matching.ignored[REFUSED] == 1


def test_kept_receipts_are_read_back_verified_and_a_torn_last_line_is_ignored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.jsonl"
    good = receipt_line(1, "ev-1", signed(receipt()))
    path.write_bytes(good + receipt_line(2, "ev-2", signed(receipt("ev-2")))[:40])
    held, problems = read_held(path, LOG.verifier)
    assert set(held) == {1} and held[1].event_id == "ev-1"
    assert held[1].held.note == signed(receipt())
    assert problems == []


def test_a_kept_receipt_that_does_not_verify_is_named_and_not_held(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(
        receipt_line(3, "ev-1", signed(receipt(), OTHER_KEY))
        + orjson.dumps({"line": 4, "event_id": None, "receipt": 12})
        + b"\n"
        + receipt_line(5, "ev-1", signed(receipt()))
    )
    held, problems = read_held(path, LOG.verifier)
    assert set(held) == {5}
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4"]
    assert "not signed by the log's key" in problems[0]


def test_a_missing_receipts_file_holds_nothing(tmp_path: Path) -> None:
    assert read_held(tmp_path / "none.jsonl", LOG.verifier) == ({}, [])


class Acked(NamedTuple):
    topic: str
    partition: int
    offset: int


class Ack:
    """A producer's future: the position, or the error the broker gave."""

    def __init__(self, outcome: Acked | Exception) -> None:
        self.outcome = outcome

    def get(self, timeout: float) -> Acked:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class Broker:
    """Takes records at offsets 0, 1, 2... of sharing.referral; refuses what a test says;
    its flush fails as a timed-out one does."""

    def __init__(
        self, refused: frozenset[bytes] = frozenset(), unroutable: frozenset[bytes] = frozenset()
    ) -> None:
        self.refused, self.unroutable = refused, unroutable
        self.sent: list[bytes] = []

    def send_record(self, raw: bytes, topic: str | None = None) -> Ack:
        if raw in self.unroutable:
            raise ValueError("not valid JSON")
        self.sent.append(raw)
        if raw in self.refused:
            return Ack(TimeoutError("no answer"))
        return Ack(Acked("sharing.referral", 0, len(self.sent) - 1))

    def flush(self, timeout: float | None = None) -> None:
        raise TimeoutError("flush timed out")


class Topic:
    """The receipts topic: what a test put on it, read once."""

    def __init__(self, notes: list[bytes]) -> None:
        self.pending = notes

    def skip_to_end(self) -> None:
        pass

    def notes(self, timeout: float) -> list[bytes]:
        out, self.pending = self.pending, []
        return out


def at(offset: int, event_id: str) -> bytes:
    return signed(receipt(event_id, ("sharing.referral", 0, offset)))


def test_deliver_holds_each_receipt_and_returns_without_waiting_out_the_timeout() -> None:
    records = [Outgoing(b"a", "ev-a"), Outgoing(b"b", "ev-b")]
    started = time.monotonic()
    done = deliver(records, Broker(), Topic([at(1, "ev-b"), at(0, "ev-a")]), LOG.verifier, 60)
    assert time.monotonic() - started < 5
    assert sorted(done.held) == [0, 1] and not done.missing and not done.unsent


def test_deliver_names_what_was_not_sent_not_acknowledged_or_not_receipted() -> None:
    records = [Outgoing(b"bad", None), Outgoing(b"lost", "ev-l"), Outgoing(b"c", "ev-c")]
    broker = Broker(refused=frozenset({b"lost"}), unroutable=frozenset({b"bad"}))
    done = deliver(records, broker, Topic([]), LOG.verifier, 0.2)
    assert done.unsent == {0: "not sent: not valid JSON", 1: "not delivered: TimeoutError"}
    assert done.missing == [2] and not done.held


def test_a_bad_row_for_a_line_a_later_row_holds_is_not_reported(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(
        receipt_line(3, "ev-1", signed(receipt(), OTHER_KEY))
        + receipt_line(3, "ev-1", signed(receipt()))
    )
    held, problems = read_held(path, LOG.verifier)
    assert set(held) == {3} and problems == []


class LosingLog:
    """A broker and the log behind it, in one: each record sent is acknowledged at the next
    offset of sharing.referral and receipted, except the first sending of each record in
    ``lost`` (a broker that died holding it); the first sending of one in ``late`` is
    receipted only once it is sent again; one in ``refused_once`` is not acknowledged the
    first time."""

    def __init__(
        self,
        lost: frozenset[bytes] = frozenset(),
        refused_once: frozenset[bytes] = frozenset(),
        late: frozenset[bytes] = frozenset(),
    ) -> None:
        self.lost, self.refused, self.late = set(lost), set(refused_once), set(late)
        self.sent: list[bytes] = []
        self.pending: list[bytes] = []
        self.held_back: dict[bytes, bytes] = {}

    def send_record(self, raw: bytes, topic: str | None = None) -> Ack:
        self.sent.append(raw)
        if raw in self.refused:
            self.refused.discard(raw)
            return Ack(TimeoutError("no answer"))
        offset = len(self.sent) - 1
        note = at(offset, f"ev-{raw.decode()}")
        if raw in self.lost:
            self.lost.discard(raw)
        elif raw in self.late:
            self.late.discard(raw)
            self.held_back[raw] = note
        else:
            self.pending += [note, *filter(None, [self.held_back.pop(raw, None)])]
        return Ack(Acked("sharing.referral", 0, offset))

    def flush(self, timeout: float | None = None) -> None:
        pass

    def skip_to_end(self) -> None:
        pass

    def notes(self, timeout: float) -> list[bytes]:
        out, self.pending = self.pending, []
        if not out:
            time.sleep(min(timeout, 0.01))
        return out


def lines(*names: str) -> list[Outgoing]:
    return [Outgoing(name.encode(), f"ev-{name}") for name in names]


def test_deliver_sends_again_a_line_acknowledged_but_not_receipted_after_resend_after() -> None:
    log = LosingLog(lost=frozenset({b"b"}))
    done = deliver(lines("a", "b", "c"), log, log, LOG.verifier, 10, resend_after=0.1)
    assert sorted(done.held) == [0, 1, 2] and not done.missing and not done.unsent
    assert log.sent == [b"a", b"b", b"c", b"b"]
    assert done.held[1].receipt.offset == 3  # the receipt of the line sent again


def test_deliver_does_not_send_again_before_resend_after_has_passed() -> None:
    log = LosingLog(lost=frozenset({b"b"}))
    done = deliver(lines("a", "b"), log, log, LOG.verifier, 0.3, resend_after=60)
    assert log.sent == [b"a", b"b"] and done.missing == [1]


def test_deliver_without_resend_after_sends_each_line_once() -> None:
    log = LosingLog(lost=frozenset({b"b"}))
    done = deliver(lines("a", "b"), log, log, LOG.verifier, 0.3)
    assert log.sent == [b"a", b"b"] and done.missing == [1]


def test_deliver_sends_again_a_line_the_broker_did_not_acknowledge() -> None:
    log = LosingLog(refused_once=frozenset({b"a"}))
    acks: list[int] = []
    done = deliver(lines("a", "b"), log, log, LOG.verifier, 10, acks.append, resend_after=0.1)
    assert sorted(done.held) == [0, 1] and not done.unsent and not done.missing
    assert sorted(acks) == [0, 1]  # each line acknowledged once, as a progress bar counts


def test_deliver_tells_each_lines_receipt_once_though_both_sendings_were_receipted() -> None:
    log = LosingLog(late=frozenset({b"a"}))
    told: list[int] = []
    done = deliver(
        lines("a"),
        log,
        log,
        LOG.verifier,
        10,
        on_receipt=lambda i, _: told.append(i),
        resend_after=0.05,
    )
    assert told == [0] and log.sent == [b"a", b"a"] and not done.missing


def test_the_receipt_of_either_sending_of_a_line_delivers_it_and_the_other_is_a_repeat() -> None:
    matching = book()
    first, again = ("sharing.referral", 0, 5), ("sharing.referral", 0, 9)
    matching.acked(1, first, "ev-1")
    matching.acked(1, again, "ev-1")
    assert matching.offer(signed(receipt(at=again))) is not None
    assert matching.outstanding() == 0 and matching.waiting() == []
    assert matching.offer(signed(receipt(at=first))) is None
    assert list(matching.held) == [1] and matching.repeated == 1


def test_a_position_a_restarted_broker_gives_another_line_takes_that_lines_early_receipt() -> None:
    matching = book()
    matching.acked(0, AT, "ev-a")
    assert matching.offer(signed(receipt("ev-a"))) is not None
    assert matching.offer(signed(receipt("ev-b"))) is None  # before its ack, at the same offset
    held = matching.acked(1, AT, "ev-b")
    assert held is not None and held.receipt.event_id == "ev-b"


class Trickling(LosingLog):
    """Receipts come one at a time, a little apart: a worker busy with a backlog."""

    def notes(self, timeout: float) -> list[bytes]:
        time.sleep(0.05)
        out, self.pending = self.pending[:1], self.pending[1:]
        return out


def test_deliver_sends_nothing_again_while_receipts_keep_coming() -> None:
    log = Trickling(lost=frozenset({b"b"}))
    names = "abcdefghij"
    done = deliver(lines(*names), log, log, LOG.verifier, 10, resend_after=0.2)
    assert sorted(done.held) == list(range(len(names)))
    assert sorted(log.sent) == sorted([n.encode() for n in names] + [b"b"])
