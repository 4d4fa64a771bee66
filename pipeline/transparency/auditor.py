"""What an auditor runs, offline, to verify the log without trusting whoever runs it.

The auditor keeps the last checkpoint they accepted in a folder of their own (the state).
A new checkpoint is accepted only if the log's key signed it, enough of the witnesses
they trust cosigned it, and a consistency proof shows it extends the one kept: a smaller
checkpoint (a rollback), another root at the same size (a fork) or a proof that does not
lead to the kept root (a rewritten history) is refused, and the state is left as it was.
A receipt's checkpoint is held to the same state: an entry proven against a fork of the
kept tree is refused however well its own proof checks.

The state only ever holds a note Go's ``golang.org/x/mod/sumdb/note`` would open, so that
any other tool can read what the auditor kept: a note it would refuse (a control
character, a signature line by a known key that does not verify) is refused here first.

Nothing here touches a database, a broker or the web: the auditor can read it in one
sitting, or vendor it.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.transparency.merkle import EMPTY_ROOT, Hash, ProofError, verify_consistency
from pipeline.transparency.mirror import (
    EntryFault,
    MirrorCheck,
    MirrorFault,
    TileSource,
    check_mirror,
)
from pipeline.transparency.note import (
    Checkpoint,
    Note,
    NoteError,
    Verifier,
    cosigned_by,
    open_checkpoint,
    parse_decimal,
)
from pipeline.transparency.receipt import Receipt, ReceiptError, check_receipt

STATE_FILE = "checkpoint"


class Refused(Exception):
    """The checkpoint is not accepted; the message says why."""


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """A witness request's body: ``old N``, the proof's hashes, a blank line, and the
    checkpoint they lead to (``sharing-audit log consistency --old N`` prints one)."""

    old: int
    hashes: tuple[Hash, ...]

    def encode(self, checkpoint: bytes) -> bytes:
        lines = [f"old {self.old}", *(base64.b64encode(h).decode() for h in self.hashes)]
        return ("\n".join(lines) + "\n\n").encode() + checkpoint

    @classmethod
    def parse(cls, data: bytes) -> tuple[ConsistencyProof, bytes]:
        """The proof, and the checkpoint after it (empty if there is none)."""
        head, _, checkpoint = data.partition(b"\n\n")
        lines = head.decode("utf-8", "replace").split("\n")
        if not lines[0].startswith("old "):
            raise Refused("the proof does not start with 'old N'")
        try:
            old = parse_decimal(lines[0][4:], "the proof's old size")
        except NoteError as exc:
            raise Refused(str(exc)) from None
        hashes = []
        for line in lines[1:]:
            try:
                raw = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                raise Refused("a line of the proof is not a base64 hash") from None
            if len(raw) != 32:
                raise Refused("a line of the proof is not a SHA-256 hash")
            hashes.append(raw)
        if len(hashes) > 63:
            raise Refused("the proof has more than 63 hashes")
        return cls(old, tuple(hashes)), checkpoint


def accept(
    note: bytes,
    log: Verifier,
    state: Path,
    proof: bytes | None = None,
    witnesses: Sequence[Verifier] = (),
    quorum: int = 0,
) -> Checkpoint:
    """Accept the checkpoint in ``note`` into ``state``, or raise :class:`Refused`."""
    new = admitted(note, log, witnesses, quorum)
    kept = kept_checkpoint(state, log)
    if kept is not None:
        _check_extends(kept, new, proof)
    _keep(state, note)
    return new


def accept_mirror(
    note: bytes,
    log: Verifier,
    state: Path,
    mirror: TileSource,
    start: bytes | None = None,
    entry_fault: EntryFault | None = None,
    witnesses: Sequence[Verifier] = (),
    quorum: int = 0,
) -> tuple[Checkpoint, Checkpoint | None, MirrorCheck]:
    """Accept the checkpoint in ``note`` into ``state`` once ``mirror`` (a mirror of the
    log's tiles) shows it extends the checkpoint verified before: ``start`` (a signed
    note) if given, else the one kept in ``state``, else none (then every entry is
    read). Only what follows that checkpoint is read (:func:`check_mirror`); a checkpoint
    kept in ``state`` other than ``start`` must be extended too. Returns the checkpoint
    accepted, the one checked from (None for none) and what was read; else
    :class:`Refused` naming the fault, and the state is left as it was."""
    new = admitted(note, log, witnesses, quorum)
    kept = kept_checkpoint(state, log)
    old = _opened(start, log, "the checkpoint given with --from") if start is not None else kept
    for held, which in ((old, "given with --from" if start else "kept"), (kept, "kept")):
        if held is not None:
            _check_not_behind(held, new, which)
    base = old if old is not None else Checkpoint(new.origin, 0, EMPTY_ROOT)
    also = kept if kept is not None and kept != old else None
    try:
        checked = check_mirror(mirror, base, new, entry_fault, also)
    except MirrorFault as exc:
        raise Refused(str(exc)) from None
    _keep(state, note)
    return new, old, checked


def accept_receipt(
    receipt: bytes,
    leaf: bytes,
    log: Verifier,
    state: Path,
    proof: bytes | None = None,
    witnesses: Sequence[Verifier] = (),
    quorum: int = 0,
) -> tuple[Checkpoint, bool]:
    """The checkpoint ``receipt`` proves ``leaf`` is in, once it is held to the kept state
    as :func:`accept` holds a checkpoint, and whether it was kept (being newer); else
    :class:`Refused`. An older checkpoint must be proven (``proof``, from its size) to
    lead to the kept one: a receipt proves nothing about a tree the auditor never saw."""
    try:
        checkpoint = check_receipt(receipt, leaf, log)
    except ReceiptError as exc:
        raise Refused(f"the receipt: {exc}") from None
    note = Receipt.parse(receipt).checkpoint
    admitted(note, log, witnesses, quorum)
    kept = kept_checkpoint(state, log)
    if kept is not None and checkpoint.size < kept.size:
        _check_leads_to_kept(checkpoint, kept, proof)
        return checkpoint, False
    if kept is not None:
        _check_extends(kept, checkpoint, proof)
        if checkpoint.size == kept.size:
            return checkpoint, False
    _keep(state, note)
    return checkpoint, True


def admitted(
    note: bytes, log: Verifier, witnesses: Sequence[Verifier] = (), quorum: int = 0
) -> Checkpoint:
    """The checkpoint in ``note`` if it may be kept: a note Go's parser opens, signed by
    ``log``, every signature line by a key given verifying, and cosigned by ``quorum``
    distinct witnesses of ``witnesses``; else :class:`Refused` naming the fault."""
    parsed = _openable(note)
    _check_known_lines(parsed, log, witnesses)
    new = _opened(note, log, "the checkpoint")
    twice = given_twice(witnesses)
    if twice is not None:
        raise Refused(f"the witness {twice} is given twice: each witness counts once")
    cosigners = [w.name for w in witnesses if cosigned_by(parsed, w) is not None]
    if len(cosigners) < quorum:
        raise Refused(
            f"{len(cosigners)} of the witnesses given cosigned it; {quorum} must"
            + (f" (cosigned by {', '.join(cosigners)})" if cosigners else "")
        )
    return new


def given_twice(witnesses: Sequence[Verifier]) -> str | None:
    """The name of a witness given more than once, by name or by key, if any: counted
    twice, one witness's cosignature would make a quorum of two. (A cosignature does not
    sign the witness's name, so one key under two names cosigns as both.)"""
    for index, witness in enumerate(witnesses):
        for earlier in witnesses[:index]:
            if witness.name == earlier.name or witness.public == earlier.public:
                return witness.name
    return None


def kept_checkpoint(state: Path, log: Verifier) -> Checkpoint | None:
    """The checkpoint last accepted into ``state``, if any."""
    kept_file = state / STATE_FILE
    if not kept_file.exists():
        return None
    try:
        data = kept_file.read_bytes()
    except OSError as exc:
        raise Refused(f"cannot read the checkpoint kept in {kept_file}: {exc.strerror}") from None
    return _opened(data, log, f"the checkpoint kept in {kept_file}")


def _openable(note: bytes) -> Note:
    """The note, parsed, unless Go's ``note.Open`` would refuse it as malformed (then
    :class:`Refused`, before anything is kept): signed-note's own rules, as
    :meth:`Note.parse` holds every note to them (UTF-8, no control character but a
    newline, key names without spaces or ``+``, at most 100 signature lines)."""
    try:
        return Note.parse(note)
    except NoteError as exc:
        raise Refused(f"the checkpoint: {exc}") from None


def _check_known_lines(note: Note, log: Verifier, witnesses: Sequence[Verifier]) -> None:
    """Refuse a signature line by a key given that does not verify, even beside a good
    one: whoever added it altered the note (Go's note.Open refuses it too, unless a good
    line by the same key comes before it)."""
    for line in note.signatures:
        if (line.name, line.id) == (log.name, log.id):
            if not log.verifies(note.text, line.payload):
                raise Refused(
                    f"a signature line by the log's key {log.name} does not verify: "
                    "the note is not as the log signed it"
                )
            continue
        for witness in witnesses:
            if (line.name, line.id) == (witness.name, witness.id) and cosigned_by(
                Note(note.text, (line,)), witness
            ) is None:
                raise Refused(f"a cosignature line by the witness {witness.name} does not verify")


def _opened(data: bytes, log: Verifier, what: str) -> Checkpoint:
    try:
        checkpoint, _ = open_checkpoint(data, log)
    except NoteError as exc:
        raise Refused(f"{what}: {exc}") from None
    return checkpoint


def _check_not_behind(held: Checkpoint, new: Checkpoint, which: str) -> None:
    """Refuse ``new`` if it is smaller than ``held`` (the checkpoint ``which``: kept, or
    given), or of its size with another root."""
    if new.size < held.size:
        raise Refused(
            f"the checkpoint is of size {new.size}, smaller than the {held.size} {which}: "
            "the log was rolled back"
        )
    if new.size == held.size and new.root != held.root:
        raise Refused(f"two different checkpoints of size {new.size}: the log forked")


def _check_extends(kept: Checkpoint, new: Checkpoint, proof: bytes | None) -> None:
    _check_not_behind(kept, new, "already accepted")
    if new.size == kept.size:
        return
    if proof is None:
        raise Refused(
            f"a consistency proof from size {kept.size} is needed "
            f"(sharing-audit log consistency --old {kept.size})"
        )
    _check_proof(proof, kept, new, "kept", "the checkpoint does not extend the one kept")


def _check_leads_to_kept(older: Checkpoint, kept: Checkpoint, proof: bytes | None) -> None:
    """Refuse ``older`` unless ``proof`` shows the kept checkpoint extends it."""
    if proof is None:
        raise Refused(
            f"the checkpoint is of size {older.size}, older than the {kept.size} kept: give "
            f"a consistency proof from it (sharing-audit log consistency --old {older.size}), "
            f"or ask for a receipt at size {kept.size} (sharing-audit log prove SEQ --size "
            f"{kept.size})"
        )
    fault = f"the checkpoint of size {older.size} is not in the history kept (size {kept.size})"
    _check_proof(proof, older, kept, "given", fault)


def _check_proof(
    proof: bytes, older: Checkpoint, newer: Checkpoint, which: str, fault: str
) -> None:
    """Refuse unless ``proof``, from ``older``'s size (the one ``which``: kept or given),
    shows ``newer`` extends ``older``; ``fault`` says what it means when it does not."""
    parsed, attached = ConsistencyProof.parse(proof)
    if parsed.old != older.size:
        raise Refused(f"the proof is from size {parsed.old}, not from the {older.size} {which}")
    leads_to = _size_of(attached)
    if leads_to is not None and leads_to != newer.size:
        raise Refused(
            f"the proof leads to a checkpoint of size {leads_to}, not {newer.size}: accept "
            "that one first (sharing-audit audit verify), then check against it"
        )
    try:
        verify_consistency(older.size, newer.size, older.root, newer.root, parsed.hashes)
    except ProofError as exc:
        raise Refused(f"{fault}: {exc}") from None


def _size_of(note: bytes) -> int | None:
    """The size of the checkpoint a proof names after it, if it names one that parses
    (only to explain a proof that leads elsewhere: the proof itself is what is checked)."""
    try:
        return Checkpoint.from_body(Note.parse(note).text).size if note else None
    except NoteError:
        return None


def _keep(state: Path, note: bytes) -> None:
    """Replace the kept checkpoint with ``note``, atomically; :class:`Refused` naming the
    folder when it cannot be written (the checkpoint is then not accepted)."""
    try:
        state.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".checkpoint-", dir=state)
        with os.fdopen(fd, "wb") as out:
            out.write(note)
        os.replace(temporary, state / STATE_FILE)
    except OSError as exc:
        raise Refused(f"cannot keep the checkpoint in {state}: {exc.strerror}") from None
