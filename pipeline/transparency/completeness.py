"""Completeness: holding the log to the receipts it signed (``sharing-audit audit receipts``).

A receipt is the log's signed promise that an entry (its ``seq`` and leaf hash) is in the
ledger and will be in a signed checkpoint within the maximum merge delay (MMD) of the
receipt's ``time``, as a Certificate Transparency log's SCT is (RFC 6962 section 3). The
auditor holds each receipt to the checkpoint they accepted (``audit verify`` keeps it, held
consistent with every earlier one), never to anything the log says of itself:

- a receipt that does not open under the log's verifier key, for its origin, is refused:
  whoever holds it was handed something the log never signed;
- an entry within the accepted tree needs an inclusion proof of the *receipt's* leaf hash
  at index ``seq - 1`` against the accepted root. A proof that fails, a proof against
  another root of the same size (a fork), or leaf bytes served for that seq that hash to
  something else, is proof the log misbehaved: it signed a promise it did not keep;
- an entry beyond the accepted tree is pending until the MMD has passed by the time the
  checkpoint was accepted, and after that is proof the log left out what it receipted;
- a log that will not give a proof (an error, garbage, a proof against a checkpoint the
  auditor never accepted) leaves the receipt unproven: not evidence, but not proven.

Pure: it takes bytes and returns findings. Reading files and asking the log over HTTP is
the command line's (:mod:`pipeline.cli.audit`).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pipeline.transparency.delivery import DeliveryReceipt, ReceiptRefused, open_receipt
from pipeline.transparency.merkle import ProofError, leaf_hash, verify_inclusion
from pipeline.transparency.note import Checkpoint, NoteError, Verifier, open_checkpoint
from pipeline.transparency.receipt import Receipt, ReceiptError

#: How far ahead of the auditor's clock a receipt may be dated (seconds): clocks differ.
CLOCK_SKEW = 300
#: The longest receipts line read: a receipt is some 400 bytes, its JSON line under 1 KiB.
MAX_LINE = 64 * 1024


class Verdict(StrEnum):
    PROVEN = "proven"
    PENDING = "pending"
    UNPROVEN = "unproven"
    REFUSED = "refused"
    MISBEHAVIOUR = "misbehaviour"
    NO_RECEIPT = "no receipt"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class Accepted:
    """The checkpoint the auditor accepted (the note, verbatim) and when (Unix seconds):
    the log had to include whatever it receipted an MMD before then."""

    checkpoint: Checkpoint
    note: bytes
    at: int


@dataclass(frozen=True, slots=True)
class Served:
    """What the log served for one receipt: a C2SP tlog-proof against the accepted
    checkpoint, the entry's leaf bytes, or why it gave no proof (``problem``)."""

    proof: bytes | None = None
    leaf: bytes | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """What became of one receipt, and why, in words an auditor can repeat."""

    verdict: Verdict
    reason: str
    receipt: DeliveryReceipt | None = None
    #: Another receipt the log signed that contradicts this one (the note, verbatim).
    other: bytes | None = None


def held_in_line(line: bytes) -> tuple[str | None, bytes | None]:
    """The event id and receipt (the signed note, verbatim) in one line of a receipts
    file (``{"line": N, "event_id": ..., "receipt": "..."}``); the receipt is None when the
    line holds none. :class:`ReceiptRefused` naming what is wrong with the line."""
    if len(line) > MAX_LINE:
        raise ReceiptRefused(f"the line is longer than {MAX_LINE // 1024} KiB")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ReceiptRefused("the line is not UTF-8") from None
    try:
        held = json.loads(text)
    except ValueError:
        raise ReceiptRefused("the line is not JSON") from None
    if not isinstance(held, dict):
        raise ReceiptRefused("the line is not a JSON object")
    event_id, note = held.get("event_id"), held.get("receipt")
    if event_id is not None and not isinstance(event_id, str):
        raise ReceiptRefused("its event_id is not a string")
    if note is not None and not isinstance(note, str):
        raise ReceiptRefused("its receipt is not a string (the signed note)")
    return event_id, None if note is None else note.encode("utf-8")


def open_held(note: bytes, log: Verifier, event_id: str | None) -> DeliveryReceipt:
    """The receipt in ``note``, signed by the log for its origin and for the event the line
    sent (``event_id``, when the line names one and the receipt does); else
    :class:`ReceiptRefused` saying why."""
    receipt = open_receipt(note, log)
    if event_id is not None and receipt.event_id is not None and receipt.event_id != event_id:
        raise ReceiptRefused(
            f"the receipt is for event {receipt.event_id}, not the line's {event_id}"
        )
    return receipt


def another_event_at(
    receipt: DeliveryReceipt, note: bytes, claimed: dict[int, tuple[str, bytes]]
) -> Finding | None:
    """Misbehaviour when another receipt already named ``receipt``'s seq for another event
    (``claimed``: seq to the event and note of the first receipt there; this one, ``note``,
    is added). One entry records one event, and a duplicate's receipt names the entry that
    recorded its own event: a log that dropped an event and receipted it as a "duplicate"
    of someone else's entry would otherwise have every receipt proven."""
    if receipt.event_id is None:
        return None
    first, first_note = claimed.setdefault(receipt.seq, (receipt.event_id, note))
    if first == receipt.event_id:
        return None
    return Finding(
        Verdict.MISBEHAVIOUR,
        f"the log receipted seq {receipt.seq} for event {first} and for event "
        f"{receipt.event_id} ({receipt.decision}): one entry records one event, so it "
        "receipted an event its ledger does not hold",
        receipt,
        other=first_note,
    )


def unproven_beyond(
    receipt: DeliveryReceipt, accepted: Accepted, mmd: float, *, now: int
) -> Finding | None:
    """For an entry beyond the accepted tree: pending, or (once the MMD had passed when the
    checkpoint was accepted) misbehaviour, as is a receipt dated ahead of ``now`` by more
    than clock skew (the log would put off its own deadline). None when the accepted tree
    holds its seq, and it needs its proof (:func:`judge`)."""
    size = accepted.checkpoint.size
    if receipt.seq <= size:
        return None
    if receipt.time > now + CLOCK_SKEW:
        return Finding(
            Verdict.MISBEHAVIOUR,
            f"the log dated the receipt for seq {receipt.seq} {_when(receipt.time)}, "
            f"{receipt.time - now:,} s ahead of now: a receipt dated ahead puts off the "
            "log's promise to include it",
            receipt,
        )
    due = receipt.time + mmd
    if due < accepted.at:
        return Finding(
            Verdict.MISBEHAVIOUR,
            f"the log receipted seq {receipt.seq} at {_when(receipt.time)}, promising it in a "
            f"checkpoint by {_when(due)} (MMD {mmd:g} s), but the checkpoint you accepted at "
            f"{_when(accepted.at)} holds only size {size}: the log left out what it receipted "
            "(checkpoints carry no time: this holds if that one was the log's "
            "latest when you accepted it)",
            receipt,
        )
    return Finding(
        Verdict.PENDING,
        f"seq {receipt.seq} is beyond the accepted checkpoint (size {size}) and not due until "
        f"{_when(due)}: accept a newer checkpoint (sharing-audit audit verify), then re-run",
        receipt,
    )


def judge(receipt: DeliveryReceipt, accepted: Accepted, served: Served, log: Verifier) -> Finding:
    """Whether what the log served proves the receipt's leaf at index ``seq - 1`` in the
    accepted checkpoint. Only the receipt's own leaf hash is proven: a leaf the log serves
    is hashed here and compared, never taken as the leaf."""
    if served.problem is not None or served.proof is None:
        return Finding(Verdict.UNPROVEN, served.problem or "the log gave no proof", receipt)
    try:
        proof = Receipt.parse(served.proof)
        proven_in, _ = open_checkpoint(proof.checkpoint, log)
    except (ReceiptError, NoteError, ValueError) as exc:
        return Finding(
            Verdict.UNPROVEN, f"the log's proof is not a tlog-proof it signed: {exc}", receipt
        )
    kept = accepted.checkpoint
    if proven_in.size != kept.size:
        return Finding(
            Verdict.UNPROVEN,
            f"the log proved it against a checkpoint of size {proven_in.size}, not the "
            f"{kept.size} you accepted",
            receipt,
        )
    if proven_in.root != kept.root:
        return Finding(
            Verdict.MISBEHAVIOUR,
            f"the log signed two checkpoints of size {kept.size} with different roots (a "
            "fork): the one you accepted and the one its proof leads to",
            receipt,
        )
    if proof.index != receipt.seq - 1:
        return Finding(
            Verdict.UNPROVEN,
            f"the log's proof is for entry {proof.index + 1}, not {receipt.seq}",
            receipt,
        )
    return _judged_proof(receipt, kept, proof.proof, served.leaf)


def _judged_proof(
    receipt: DeliveryReceipt, kept: Checkpoint, hashes: tuple[bytes, ...], leaf: bytes | None
) -> Finding:
    index, served_hash = receipt.seq - 1, None if leaf is None else leaf_hash(leaf)
    try:
        verify_inclusion(index, kept.size, receipt.leaf, hashes, kept.root)
    except ProofError as exc:
        if served_hash is not None and _proves(index, kept, hashes, served_hash):
            return Finding(
                Verdict.MISBEHAVIOUR,
                f"the accepted checkpoint holds another entry at seq {receipt.seq}: the log "
                f"proved the leaf it serves there ({_b64(served_hash)}), not the receipt's",
                receipt,
            )
        return Finding(
            Verdict.MISBEHAVIOUR,
            f"the log's proof does not show the receipt's leaf at seq {receipt.seq} in the "
            f"accepted checkpoint of size {kept.size}: not the leaf it proves ({exc})",
            receipt,
        )
    if served_hash is not None and served_hash != receipt.leaf:
        return Finding(
            Verdict.MISBEHAVIOUR,
            f"the log serves leaf bytes for seq {receipt.seq} that hash to {_b64(served_hash)}, "
            "not the receipt's leaf",
            receipt,
        )
    return Finding(
        Verdict.PROVEN, f"seq {receipt.seq} is in the checkpoint of size {kept.size}", receipt
    )


def _proves(index: int, kept: Checkpoint, hashes: tuple[bytes, ...], leaf: bytes) -> bool:
    try:
        verify_inclusion(index, kept.size, leaf, hashes, kept.root)
    except ProofError:
        return False
    return True


def newer_than_accepted(served: bytes, accepted: Accepted, log: Verifier) -> str | None:
    """What to tell an auditor whose accepted checkpoint the log has outgrown (the note it
    serves now, if signed by it, is larger): receipts are held to the checkpoint accepted,
    and one not yet the log's latest makes receipts pending, or overdue, that the latest
    may hold. None when it is not larger, or is not a checkpoint the log signed."""
    try:
        latest, _ = open_checkpoint(served, log)
    except NoteError:
        return None
    if latest.size <= accepted.checkpoint.size:
        return None
    return (
        f"the log now serves a checkpoint of size {latest.size}, larger than the "
        f"{accepted.checkpoint.size} you accepted: accept it (sharing-audit audit verify, with "
        f"sharing-audit log consistency --old {accepted.checkpoint.size}), then re-run"
    )


def tally(findings: Iterable[Finding]) -> Counter[Verdict]:
    return Counter(finding.verdict for finding in findings)


def exit_status(findings: Iterable[Finding]) -> int:
    """1 when a receipt was refused or the log misbehaved; 2 when some receipt could not be
    proven (the log gave no usable proof) or some file could not be read; else 0: every
    receipt proven or pending."""
    counts = tally(findings)
    if counts[Verdict.REFUSED] or counts[Verdict.MISBEHAVIOUR]:
        return 1
    return 2 if counts[Verdict.UNPROVEN] or counts[Verdict.UNREADABLE] else 0


def evidence_readme(finding: Finding, accepted: Accepted, where: str) -> str:
    """What a folder of evidence shows, in plain words, for whoever it is handed to."""
    receipt = finding.receipt
    seq = "" if receipt is None else f" for seq {receipt.seq}"
    notes = "receipt.note" if finding.other is None else "other-receipt.note receipt.note"
    return (
        f"Evidence that the log {accepted.checkpoint.origin} broke a promise it signed.\n\n"
        f"The receipt{seq} ({where}) is in receipt.note, exactly as the log signed it: the "
        "log's word that it recorded that entry, with that leaf hash, and would include it "
        "in a signed checkpoint within its maximum merge delay.\n"
        f"checkpoint.note is the checkpoint of size {accepted.checkpoint.size} the auditor "
        f"accepted at {_when(accepted.at)}, also signed by the log, and held consistent with "
        "every checkpoint accepted before it.\n"
        f"{_seq_of(receipt)}.tlog-proof and {_seq_of(receipt)}.leaf, when present, are what "
        "the log served when asked to prove the receipt (the proof and the entry's bytes).\n"
        + (
            "other-receipt.note is another receipt the log signed for the same seq, for "
            "another event.\n"
            if finding.other is not None
            else ""
        )
        + f"\nWhat they show: {finding.reason}.\n\n"
        "Anyone holding the log's verifier key can check this with nothing else: "
        "copy checkpoint.note to STATE/checkpoint, then sharing-audit audit receipts "
        f"{notes} --vkey log.vkey --state STATE --proofs . ; or Go's "
        "golang.org/x/mod/sumdb/note and tlog packages.\n"
    )


def _seq_of(receipt: DeliveryReceipt | None) -> str:
    return "SEQ" if receipt is None else str(receipt.seq)


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
