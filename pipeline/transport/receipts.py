"""Waiting for the log's receipts: a record counts delivered when the log signed that it
recorded it, not when the broker acknowledged it.

The embedded broker keeps records in memory, and even a replicated Kafka says nothing of
whether the worker ever recorded what it took. After the ledger transaction recording a
record commits, the worker publishes one receipt for it on ``sharing.receipts`` (contract,
Clarifications 2026-12-06): a signed note naming the record's position
(``TOPIC/PARTITION/OFFSET``) and its event id. A sender matches it against the position
its producer's acknowledgement gave, and the event id the record carries.

Receipts come at least once, in any order, possibly before the sender has seen its own
acknowledgement; the topic may hold anything anyone wrote to it. Only a receipt that
:func:`open_receipt` accepts under the log's verifier key counts; anything else is counted
and ignored, so a hostile topic can delay a sender but never make it believe a record
delivered. One implementation for the SDK, ``emit`` and whoever else sends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

import orjson

from pipeline.transparency.delivery import (
    DeliveryReceipt,
    ReceiptRefused,
    claimed_receipt,
    open_receipt,
)
from pipeline.transparency.note import Verifier
from pipeline.transport.kafka import (
    FETCH_WAIT_MS,
    RECEIPTS_TOPIC,
    KafkaConfig,
    KafkaUnavailable,
    consumer_settings,
)

#: Where a broker put a record: topic, partition, offset.
Position = tuple[str, int, int]
#: Why a record on the receipts topic was ignored, as the summary says it.
REFUSED = "not signed by the log"
ANOTHER_EVENT = "for another event at the position"
STALE = "dated before the record without an id was sent"
#: How far a receipt without an event id may be dated before its record was acknowledged:
#: the worker's clock and the sender's may differ by this much (NTP keeps them far closer).
CLOCK_SKEW = 300.0
#: How long a sender waits for the broker's acknowledgements once its records are flushed.
ACK_TIMEOUT = 30.0
#: How long without a receipt before a sender sends again what still lacks one: longer
#: than a worker takes to restart and rejoin its group (a session timeout, 6 s, and its
#: start-up), so that only what a broker lost is sent again, not what a worker is behind on.
RESEND_AFTER = 30.0


#: How many receipts read together each thread checking their signatures takes at least: a
#: check releases the GIL, and a worker answers a group of thousands of records at once,
#: so a sender would otherwise check them on one core while the others stand idle. Fewer
#: are checked in turn, as threads would cost more than they save.
CHECKED_TOGETHER = 32


#: The most receipts one read of the topic returns: a worker's group of thousands at once,
#: rather than 500 (the client's default) and the rest a fetch later.
RECEIPTS_A_POLL = 10_000


class Held(NamedTuple):
    """A receipt the log signed for a record, and the note's bytes exactly as signed."""

    receipt: DeliveryReceipt
    note: bytes


class ReceiptBook:
    """Which of a sender's records hold a receipt. Pure: fed acknowledgements
    (:meth:`acked`) and the values read from the receipts topic (:meth:`offer`), in any
    order; receipts of positions not yet acknowledged are kept until they are."""

    def __init__(self, log: Verifier, clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.clock = clock
        self.held: dict[int, Held] = {}
        self.ignored: Counter[str] = Counter()
        self.repeated = 0
        # Each acknowledged position's record, its event and when it was acknowledged: a
        # line without an event id is matched by position alone, and a broker started
        # again reuses offsets, so a receipt the log signed for another id-less record at
        # the same offset in the broker's earlier life is told apart only by its date.
        self._waiting: dict[Position, tuple[int, str | None, float]] = {}
        self._unheld: set[int] = set()
        # Receipts read before their position was acknowledged, as read: their signatures
        # are checked only if the position turns out to be one of this sender's.
        self._early: dict[Position, list[bytes]] = {}
        # The event each delivered position carried: a broker started again reuses
        # offsets, so a position done may come back carrying another line's record.
        self._done: dict[Position, str | None] = {}
        # What :meth:`offer_all` found of the notes it checked ahead (None: refused).
        self._checked: dict[bytes, Held | None] = {}

    def acked(self, index: int, position: Position, event_id: str | None) -> Held | None:
        """Record ``index`` is at ``position``, carrying ``event_id`` (None: no usable id);
        the receipt that already came for it, if one did. A record sent again is acked
        again at its new position: the receipt of either sending delivers it."""
        acked_at = self.clock()
        for note in self._early.pop(position, []):
            why = self._refusal(claimed_receipt(note), event_id, acked_at)
            if why is not None:
                self.ignored[why] += 1
                continue
            held = self._opened(note)
            if held is not None:
                return self._deliver(index, position, held)
        if index not in self.held:
            self._waiting[position] = (index, event_id, acked_at)
            self._unheld.add(index)
        return None

    def offer(self, note: bytes) -> tuple[int, Held] | None:
        """Take one value read from the receipts topic; the record it newly delivers. Only
        a receipt for a position this sender waits for has its signature checked: the
        topic carries every sender's receipts."""
        try:
            claimed = claimed_receipt(note)
        except ReceiptRefused:
            self.ignored[REFUSED] += 1
            return None
        position = (claimed.topic, claimed.partition, claimed.offset)
        waiting = self._waiting.get(position)
        if waiting is None:
            if position in self._done and self._done[position] == claimed.event_id:
                self.repeated += 1  # a count for the summary: never trusted
            else:
                self._early.setdefault(position, []).append(note)
            return None
        index, event_id, acked_at = waiting
        why = self._refusal(claimed, event_id, acked_at)
        if why is not None:
            self.ignored[why] += 1
            return None
        held = self._opened(note)
        if held is None:
            return None
        del self._waiting[position]
        if index in self.held:  # its other sending's receipt came first
            self._done[position] = event_id
            self.repeated += 1
            return None
        return index, self._deliver(index, position, held)

    def offer_all(self, notes: Sequence[bytes]) -> list[tuple[int, Held]]:
        """:meth:`offer` each of ``notes`` in turn; the records they newly deliver. The
        signatures of those for positions this sender waits for are checked first, shared
        among threads, one a core (:data:`CHECKED_TOGETHER` each at least)."""
        cores = os.cpu_count() or 1
        # Claims are read here and again as offered: only where threads may be worth it.
        ahead = cores > 1 and len(notes) >= 2 * CHECKED_TOGETHER
        awaited = list(dict.fromkeys(n for n in notes if self._awaited(n))) if ahead else []
        ways = min(cores, len(awaited) // CHECKED_TOGETHER)
        try:
            if ways > 1:
                self._checked = _checked_together(self._open_all, awaited, ways)
            return [found for note in notes if (found := self.offer(note)) is not None]
        finally:
            self._checked = {}

    def _awaited(self, note: bytes) -> bool:
        """Whether ``note`` claims to be the receipt of a position this sender waits for."""
        try:
            claimed = claimed_receipt(note)
        except ReceiptRefused:
            return False
        return (claimed.topic, claimed.partition, claimed.offset) in self._waiting

    def _opened(self, note: bytes) -> Held | None:
        """The receipt in ``note`` if the log signed it (else counted, and None)."""
        held = self._checked[note] if note in self._checked else self._open(note)
        if held is None:
            self.ignored[REFUSED] += 1
        return held

    def _open_all(self, notes: list[bytes]) -> list[Held | None]:
        return [self._open(note) for note in notes]

    def _open(self, note: bytes) -> Held | None:
        try:
            return Held(open_receipt(note, self.log), note)
        except ReceiptRefused:
            return None

    @staticmethod
    def _refusal(receipt: DeliveryReceipt, event_id: str | None, acked_at: float) -> str | None:
        """Why ``receipt`` is not that of the record carrying ``event_id`` acknowledged at
        ``acked_at``, at the same position; None when it is."""
        if receipt.event_id != event_id:
            return ANOTHER_EVENT
        if event_id is None and receipt.time < acked_at - CLOCK_SKEW:
            return STALE
        return None

    def _deliver(self, index: int, position: Position, held: Held) -> Held:
        self._done[position] = held.receipt.event_id
        self.held[index] = held
        self._unheld.discard(index)
        return held

    def outstanding(self) -> int:
        """How many acknowledged records hold no receipt yet."""
        return len(self._unheld)

    def waiting(self) -> list[int]:
        """The acknowledged records that hold no receipt yet, in order."""
        return sorted(self._unheld)


def _checked_together(
    open_all: Callable[[list[bytes]], list[Held | None]], notes: list[bytes], ways: int
) -> dict[bytes, Held | None]:
    """What ``open_all`` finds of each of ``notes``, shared among ``ways`` threads; nothing
    when the threads cannot be had (the interpreter exiting refuses them) or a check
    failed otherwise: each note is then checked as it is offered, where a failure is
    raised in its turn."""
    parts = [notes[n::ways] for n in range(ways)]
    try:
        opened = list(_checks().map(open_all, parts))
    except Exception:
        return {}
    return {
        n: held
        for part, found in zip(parts, opened, strict=True)
        for n, held in zip(part, found, strict=True)
    }


@functools.cache
def _checks() -> ThreadPoolExecutor:
    """The threads that check receipts' signatures, one a core, made when first needed
    (and made again in a forked child, which inherits the pool but none of its threads)."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="receipt-checks")


os.register_at_fork(after_in_child=_checks.cache_clear)


class Feed(Protocol):
    """Where receipts are read from: :class:`ReceiptFeed` on a broker."""

    def skip_to_end(self) -> None: ...

    def notes(self, timeout: float) -> list[bytes]: ...


class ReceiptFeed:
    """The receipts topic, read from its end: open it (and :meth:`skip_to_end`) before
    sending, so that no receipt of what is sent goes by unread. Reads without a consumer
    group: it commits nothing and every sender reads every receipt."""

    def __init__(self, config: KafkaConfig) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        try:
            self.consumer = KafkaConsumer(
                **consumer_settings(config),
                fetch_max_wait_ms=FETCH_WAIT_MS,
                max_poll_records=RECEIPTS_A_POLL,
            )
            numbers = self.consumer.partitions_for_topic(RECEIPTS_TOPIC)
        except KafkaError as exc:
            raise KafkaUnavailable(
                f"no Kafka broker answers at {config.bootstrap}: {exc}"
            ) from None
        if not numbers:
            self.consumer.close()
            raise KafkaUnavailable(
                f"the broker at {config.bootstrap} has no topic {RECEIPTS_TOPIC}: "
                "a worker of this version creates it (or sharing-audit up, broker)"
            )
        self.partitions = [TopicPartition(RECEIPTS_TOPIC, n) for n in sorted(numbers)]
        self.consumer.assign(self.partitions)
        self.skip_to_end()

    def skip_to_end(self) -> None:
        """Read on from the topic's end as it is now (its position asked for at once,
        since a seek alone is resolved only at the next poll, after the sends)."""
        self.consumer.seek_to_end(*self.partitions)
        for partition in self.partitions:
            self.consumer.position(partition)

    def notes(self, timeout: float) -> list[bytes]:
        """The values that came within ``timeout`` seconds (none is a normal answer)."""
        batches = self.consumer.poll(timeout_ms=max(1, int(timeout * 1000)))
        return [record.value or b"" for batch in batches.values() for record in batch]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()


class Outgoing(NamedTuple):
    """One record to send: its bytes, the event id the log will name it by (None when it
    has no usable one), and a topic overriding the contract's routing."""

    raw: bytes
    event_id: str | None
    topic: str | None = None


class Sender(Protocol):
    """What sends records: ``send_record`` gives a future of the acknowledgement (its
    value a RecordMetadata) or raises ValueError when the record cannot be routed."""

    def send_record(self, raw: bytes, topic: str | None = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...


@dataclass
class Delivery:
    """What became of records sent: each one's receipt, or why it has none."""

    held: dict[int, Held] = field(default_factory=dict)
    #: Records the broker never took (unroutable, or not acknowledged), and why.
    unsent: dict[int, str] = field(default_factory=dict)
    #: Records the broker acknowledged that hold no receipt after the wait.
    missing: list[int] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)


OnReceipt = Callable[[int, Held], None]


def deliver(
    records: Sequence[Outgoing],
    sender: Sender,
    feed: Feed,
    log: Verifier,
    timeout: float,
    on_ack: Callable[[int], None] | None = None,
    on_receipt: OnReceipt | None = None,
    resend_after: float | None = None,
) -> Delivery:
    """Send ``records`` (numbered by their index) and wait until each holds a receipt the
    log signed, at most ``timeout`` seconds after the last acknowledgement. ``on_receipt``
    is told of each receipt as it comes, so that it can be kept at once.

    With ``resend_after``, once no receipt has come for that many seconds, the records
    still without one (or without an acknowledgement) are sent again, while the wait
    lasts: a broker that died and was started again lost what it held, and nobody else
    will send it. A worker merely behind, or restarting, keeps receipts coming or is
    silent for less, so what the broker holds is not piled on again. Sending again is
    safe: the log records an event id once, and the receipt of either sending delivers it."""
    book = ReceiptBook(log)
    delivery = Delivery(held=book.held, ignored=book.ignored)
    feed.skip_to_end()
    sending = _Sending(records, sender, book, delivery, on_ack, on_receipt)
    sending.send(range(len(records)))
    deadline = time.monotonic() + timeout
    heard = time.monotonic()  # when a receipt last delivered a record
    while book.outstanding() or (resend_after is not None and sending.unacked()):
        if (left := deadline - time.monotonic()) <= 0:
            break
        for found in book.offer_all(feed.notes(min(left, 0.5))):
            heard = time.monotonic()
            if on_receipt is not None:
                on_receipt(*found)
        if resend_after is not None and time.monotonic() - max(heard, sending.last) >= resend_after:
            sending.send(sending.lacking())
    delivery.missing = book.waiting()
    return delivery


@dataclass
class _Sending:
    """Records going to the broker, each acknowledgement matched in the book; which were
    sent (what may be sent again) and when the broker last answered."""

    records: Sequence[Outgoing]
    sender: Sender
    book: ReceiptBook
    delivery: Delivery
    on_ack: Callable[[int], None] | None
    on_receipt: OnReceipt | None
    sent: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    #: When the last sending was acknowledged (or given up on).
    last: float = 0.0

    def send(self, indices: Iterable[int]) -> None:
        """Send these records and wait for the broker's acknowledgement of each."""
        futures: list[tuple[int, Any]] = []
        for index in indices:
            record = self.records[index]
            try:
                futures.append((index, self.sender.send_record(record.raw, record.topic)))
            except ValueError as exc:  # NotRoutable: never sent again
                self.delivery.unsent[index] = f"not sent: {exc}"
        # The producer gives up on a record after its own delivery timeout, so the flush
        # ends; what was not acknowledged by then is said record by record.
        with contextlib.suppress(Exception):
            self.sender.flush()
        acks_by = time.monotonic() + ACK_TIMEOUT
        for index, future in futures:
            self.sent.add(index)
            try:
                metadata = future.get(timeout=max(0.0, acks_by - time.monotonic()))
            except Exception as exc:
                if index not in self.acked:
                    self.delivery.unsent[index] = f"not delivered: {type(exc).__name__}"
                continue
            self.delivery.unsent.pop(index, None)
            if index not in self.acked:
                self.acked.add(index)
                if self.on_ack is not None:
                    self.on_ack(index)
            position = (metadata.topic, metadata.partition, metadata.offset)
            held = self.book.acked(index, position, self.records[index].event_id)
            if held is not None and self.on_receipt is not None:
                self.on_receipt(index, held)
        self.last = time.monotonic()

    def unacked(self) -> bool:
        """Whether a record sent was never acknowledged (and so may be sent again)."""
        return any(index in self.sent for index in self.delivery.unsent)

    def lacking(self) -> list[int]:
        """The records sent that hold no receipt yet, in order."""
        return sorted(i for i in self.sent if i not in self.book.held)


#: Sends records and waits for their receipts, telling each as it comes: ``deliver``
#: bound to a producer, as :meth:`MisProducer.send_recorded` is.
Deliver = Callable[[Sequence[Outgoing], OnReceipt], Delivery]


@dataclass
class Keeping:
    """Where a file's records stand once sent: which lines (1-based) hold a receipt kept,
    which lack one and why, and what was wrong with the receipts kept before."""

    held: set[int]
    lacking: dict[int, str]
    problems: list[str]


def deliver_keeping(
    records: Sequence[Outgoing], kept: Path, log: Verifier, send: Deliver
) -> Keeping:
    """Send those of ``records`` (line N is ``records[N-1]``) that hold no receipt in
    ``kept`` and append each receipt to it as it comes, so that a sender stopped at any
    point sends again only what lacks one. What is kept is checked again under the log's
    key and against the event each line carries; so is what ``send`` hands back, so that
    no sender, however it is built, can file a receipt the log did not sign."""
    held, problems = held_for(kept, log, {n: r.event_id for n, r in enumerate(records, 1)})
    if problems:  # what is filed holds the log's receipts alone, not what was refused
        _rewrite(kept, held)
    todo = [n for n in range(1, len(records) + 1) if n not in held]
    lacking: dict[int, str] = {}
    with append_to(kept) as out:  # made even when nothing is sent: a file of no events
        if not todo:
            return Keeping(set(held), lacking, problems)

        def on_receipt(index: int, got: Held) -> None:
            line = todo[index]
            event_id = records[line - 1].event_id
            if line not in held and _signed_for(got.note, event_id, log):
                out.write(receipt_line(line, event_id, got.note))
                out.flush()
                held[line] = KeptReceipt(event_id, got)

        delivery = send([records[n - 1] for n in todo], on_receipt)
    for index, line in enumerate(todo):
        if line not in held:
            lacking[line] = delivery.unsent.get(index, "no receipt in time")
    return Keeping(set(held), lacking, problems)


def _rewrite(path: Path, held: dict[int, KeptReceipt]) -> None:
    """``path`` holding ``held`` alone, written aside (a hidden name with the same ending)
    and renamed into place, so that a crash leaves the old file or the new, whole."""
    aside = path.with_name(f".{path.name}")
    aside.write_bytes(
        b"".join(receipt_line(n, kept.event_id, kept.held.note) for n, kept in sorted(held.items()))
    )
    os.replace(aside, path)


def _signed_for(note: bytes, event_id: str | None, log: Verifier) -> bool:
    try:
        return open_receipt(note, log).event_id == event_id
    except ReceiptRefused:
        return False


def held_for(
    path: Path, log: Verifier, events: dict[int, str | None]
) -> tuple[dict[int, KeptReceipt], list[str]]:
    """The receipts kept in ``path`` that the log signed for these very lines (``events``:
    each line's event id), and what is wrong with the others, each line named: forged,
    torn, or for an event the line no longer carries. OSError as :func:`read_held`."""
    kept, problems = read_held(path, log)
    for number, held in list(kept.items()):
        if number not in events or events[number] != held.event_id:
            problems.append(f"line {number}: the receipt kept is for another event than the line")
            del kept[number]
    return kept, problems


# The receipts a sender keeps: JSON Lines, one object per line of the input that holds a
# receipt, {"line": N, "event_id": ..., "receipt": "<the signed note, verbatim>"}.


class KeptReceipt(NamedTuple):
    event_id: str | None
    held: Held


def append_to(path: Path) -> BinaryIO:
    """``path`` opened to append receipts to, a torn last line (a crash while it was
    written) cut off first, so that the next line starts on a line of its own."""
    with contextlib.suppress(FileNotFoundError):
        data = path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole != len(data):
            os.truncate(path, whole)
    return path.open("ab")


def receipt_line(line: int, event_id: str | None, note: bytes) -> bytes:
    """One line of a receipts file, its newline included."""
    return orjson.dumps({"line": line, "event_id": event_id, "receipt": note.decode()}) + b"\n"


def read_held(path: Path, log: Verifier) -> tuple[dict[int, KeptReceipt], list[str]]:
    """The receipts kept in ``path`` that the log signed, by input line, and what is
    wrong with the others (each line named). A last line without its newline is one a
    crash tore while writing it: it is ignored, its input line sent again. OSError when
    the file is there but cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, []
    kept: dict[int, KeptReceipt] = {}
    bad: list[BadRow] = []
    for row in data.split(b"\n")[:-1]:
        if not row.strip():
            continue
        try:
            line, event_id, held = _kept(row, log)
        except BadRow as exc:
            bad.append(exc)
            continue
        kept[line] = KeptReceipt(event_id, held)
    # A line that a later row holds (its line sent again, and receipted) is not at fault.
    return kept, [str(exc) for exc in bad if exc.line is None or exc.line not in kept]


class BadRow(ValueError):
    """A row of a receipts file that holds no receipt of the log, naming its line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _kept(row: bytes, log: Verifier) -> tuple[int, str | None, Held]:
    """One receipts-file row, verified; :class:`BadRow` naming its line and what is wrong."""
    try:
        value = orjson.loads(row)
    except orjson.JSONDecodeError:
        raise BadRow("a row that is not JSON is skipped") from None
    line = value.get("line") if isinstance(value, dict) else None
    if not isinstance(line, int) or isinstance(line, bool) or line < 1:
        raise BadRow("a row without a line number is skipped")
    note, event_id = value.get("receipt"), value.get("event_id")
    if not isinstance(note, str) or not (event_id is None or isinstance(event_id, str)):
        raise BadRow(f"line {line}: the receipt kept is not a signed note's text", line)
    try:
        receipt = open_receipt(note.encode(), log)
    except ReceiptRefused as exc:
        raise BadRow(f"line {line}: the receipt kept does not verify ({exc})", line) from None
    if receipt.event_id != event_id:
        raise BadRow(f"line {line}: the receipt kept names another event than the row", line)
    return line, event_id, Held(receipt, note.encode())
