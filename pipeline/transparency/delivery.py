"""Delivery receipts: the log's signed promise that it recorded one record, handed back to
whoever sent it (``sharing-audit/receipt/v1``, in ``reference/verifiable-log.md``).

A broker's acknowledgement says a record reached the broker; the embedded broker keeps
records in memory, and nobody outside the worker can tell whether a record it took ever
reached the ledger. A receipt is signed only after the ledger transaction holding the
record committed, and names the entry (``seq``) and its RFC 6962 leaf hash, so whoever
holds it can later demand the inclusion proof: a log that cannot give one, or whose leaf
at that seq hashes to something else, has been caught leaving out what it accepted
(Certificate Transparency's signed certificate timestamp, RFC 6962 section 3).

The receipt is a C2SP signed note under the log's key (the key that signs checkpoints),
so Go's ``golang.org/x/mod/sumdb/note`` opens it with the log's verifier key. Its second
line is ``origin ...``, never a decimal size, so no checkpoint parser takes it for a
checkpoint. Pure: no database, clock or network.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from pipeline.transparency.merkle import Hash
from pipeline.transparency.note import Note, NoteError, Signer, Verifier, sign_note

HEADER = "sharing-audit/receipt/v1"
#: What a receipt can say became of a record: a decision, or why none was made anew.
OUTCOMES = frozenset({"allowed", "review", "breach", "rejected", "duplicate", "id_reused"})
#: The event id of a record that had no usable one.
NO_EVENT = "-"
_DECIMAL = r"(0|[1-9][0-9]{0,18})"
#: A Kafka topic's name: the only records a receipt can name.
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: Each line as the format fixes it, and what to tell someone whose line is not so.
_LINE_RULES = (
    (re.escape(HEADER), f"the first line is {HEADER}"),
    (r"origin (?P<origin>[!-~]{1,255})", "the second line is origin and the log's name"),
    (r"event (?P<event>[ -~]{1,128})", "the third line is event and the event id, or -"),
    (
        rf"record (?P<topic>{TOPIC_NAME.pattern})/(?P<partition>{_DECIMAL})"
        rf"/(?P<offset>{_DECIMAL})",
        "the fourth line is record TOPIC/PARTITION/OFFSET",
    ),
    (r"seq (?P<seq>[1-9][0-9]{0,18})", "the fifth line is seq and the entry's number"),
    (r"leaf (?P<leaf>[A-Za-z0-9+/]{43}=)", "the sixth line is leaf and a SHA-256 in base64"),
    (r"decision (?P<decision>[a-z_]{1,16})", "the seventh line is decision and the outcome"),
    (rf"time (?P<time>{_DECIMAL})", "the eighth line is time and Unix seconds"),
)
_LINES = re.compile("".join(pattern + "\n" for pattern, _ in _LINE_RULES))


class ReceiptRefused(Exception):
    """A receipt that is malformed, not signed by the log, or for another log."""


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What the log promised about one record: where it was read, the entry recording it
    (its ``seq`` and leaf hash), the outcome, and when (Unix seconds)."""

    origin: str
    event_id: str | None
    topic: str
    partition: int
    offset: int
    seq: int
    leaf: Hash
    decision: str
    time: int

    @property
    def record(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def text(self) -> bytes:
        """The note's text, each line ending in a newline, in the order the format fixes."""
        leaf = base64.b64encode(self.leaf).decode("ascii")
        return (
            f"{HEADER}\norigin {self.origin}\nevent {self.event_id or NO_EVENT}\n"
            f"record {self.record}\nseq {self.seq}\nleaf {leaf}\n"
            f"decision {self.decision}\ntime {self.time}\n"
        ).encode()

    @classmethod
    def from_text(cls, text: bytes) -> DeliveryReceipt:
        """The receipt a note's text states, or :class:`ReceiptRefused` naming the first
        thing wrong with it. Strict: one spelling of each value, so that two texts never
        state the same receipt (and a signature covers exactly one)."""
        try:
            decoded = text.decode("ascii")
        except UnicodeDecodeError:
            raise ReceiptRefused("a receipt's text is ASCII") from None
        match = _LINES.fullmatch(decoded)
        if match is None:
            raise ReceiptRefused(_first_bad_line(decoded))
        if match["decision"] not in OUTCOMES:
            raise ReceiptRefused(f"decision {match['decision']!r} is not a receipt's outcome")
        event = match["event"]
        try:
            leaf = base64.b64decode(match["leaf"], validate=True)
        except (binascii.Error, ValueError):
            raise ReceiptRefused("the receipt's leaf is not standard base64") from None
        if base64.b64encode(leaf).decode() != match["leaf"]:
            raise ReceiptRefused("the receipt's leaf is not in canonical base64")
        return cls(
            origin=match["origin"],
            event_id=None if event == NO_EVENT else event,
            topic=match["topic"],
            partition=int(match["partition"]),
            offset=int(match["offset"]),
            seq=int(match["seq"]),
            leaf=leaf,
            decision=match["decision"],
            time=int(match["time"]),
        )


def _first_bad_line(text: str) -> str:
    """Why a text is not a receipt, naming the first line that is not as the format says."""
    lines = text.split("\n")
    if lines[-1] != "":
        return "a receipt's text ends in a newline"
    lines = lines[:-1]
    for number, (pattern, rule) in enumerate(_LINE_RULES):
        if number >= len(lines):
            return f"the receipt ends after {len(lines)} lines: {rule}"
        if not re.fullmatch(pattern, lines[number]):
            return f"line {number + 1} is malformed: {rule}"
    return f"a receipt is exactly {len(_LINE_RULES)} lines, this has {len(lines)}"


def sign_receipt(receipt: DeliveryReceipt, log: Signer) -> bytes:
    """The receipt as a signed note under the log's key, the bytes a sender keeps."""
    if receipt.origin != log.name:
        raise ValueError(f"a receipt for {receipt.origin!r} signed by {log.name!r}")
    return sign_note(receipt.text(), log).encode()


def claimed_receipt(data: bytes) -> DeliveryReceipt:
    """The receipt a signed note states, its signatures not checked; or
    :class:`ReceiptRefused` if its text is not a receipt. Every sender reads every receipt
    on the topic, a trust's many senders' alike: checking a signature costs far more than
    reading the text, so a sender checks only those of the records it waits for (with
    :func:`open_receipt`), never trusting a claimed one."""
    end = data.find(b"\n\n")
    if end < 0:
        raise ReceiptRefused("a signed note is its text, a blank line, and signature lines")
    return DeliveryReceipt.from_text(data[: end + 1])


def open_receipt(data: bytes, log: Verifier) -> DeliveryReceipt:
    """The receipt in a signed note that ``log`` signed, for ``log``'s origin; or
    :class:`ReceiptRefused` saying why not. Signatures by other keys are ignored, as a
    note verifier must; one by the log's own key that fails refuses the whole note."""
    try:
        note = Note.parse(data)
    except NoteError as exc:
        raise ReceiptRefused(str(exc)) from None
    if not any(log.made(s) for s in note.signatures):
        raise ReceiptRefused(f"not signed by the log's key {log.name}")
    if not note.signed_by(log):
        raise ReceiptRefused(f"a signature by the log's key {log.name} does not verify")
    receipt = DeliveryReceipt.from_text(note.text)
    if receipt.origin != log.name:
        raise ReceiptRefused(f"the receipt is for {receipt.origin!r}, not {log.name!r}")
    return receipt
