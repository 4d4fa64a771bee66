"""What an auditor runs, offline, to verify the log without trusting whoever runs it.

The auditor keeps the last checkpoint they accepted in a folder of their own (the state).
A new checkpoint is accepted only if the log's key signed it, enough of the witnesses
they trust cosigned it, and a consistency proof shows it extends the one kept: a smaller
checkpoint (a rollback), another root at the same size (a fork) or a proof that does not
lead to the kept root (a rewritten history) is refused, and the state is left as it was.

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

from pipeline.transparency.merkle import Hash, ProofError, verify_consistency
from pipeline.transparency.note import (
    Checkpoint,
    Note,
    NoteError,
    Verifier,
    cosigned_by,
    open_checkpoint,
)

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
        if not lines[0].startswith("old ") or not lines[0][4:].isdigit():
            raise Refused("the proof does not start with 'old N'")
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
        return cls(int(lines[0][4:]), tuple(hashes)), checkpoint


def accept(
    note: bytes,
    log: Verifier,
    state: Path,
    proof: bytes | None = None,
    witnesses: Sequence[Verifier] = (),
    quorum: int = 0,
) -> Checkpoint:
    """Accept the checkpoint in ``note`` into ``state``, or raise :class:`Refused`."""
    new = _opened(note, log, "the checkpoint")
    cosigners = [w.name for w in witnesses if cosigned_by(Note.parse(note), w) is not None]
    if len(cosigners) < quorum:
        raise Refused(
            f"{len(cosigners)} of the witnesses given cosigned it; {quorum} must"
            + (f" (cosigned by {', '.join(cosigners)})" if cosigners else "")
        )
    kept_file = state / STATE_FILE
    if kept_file.exists():
        kept = _opened(kept_file.read_bytes(), log, f"the checkpoint kept in {kept_file}")
        _check_extends(kept, new, proof)
    _keep(state, note)
    return new


def _opened(data: bytes, log: Verifier, what: str) -> Checkpoint:
    try:
        checkpoint, _ = open_checkpoint(data, log)
    except NoteError as exc:
        raise Refused(f"{what}: {exc}") from None
    return checkpoint


def _check_extends(kept: Checkpoint, new: Checkpoint, proof: bytes | None) -> None:
    if new.size < kept.size:
        raise Refused(
            f"the checkpoint is of size {new.size}, smaller than the {kept.size} already "
            "accepted: the log was rolled back"
        )
    if new.size == kept.size:
        if new.root != kept.root:
            raise Refused(f"two different checkpoints of size {new.size}: the log forked")
        return
    if proof is None:
        raise Refused(
            f"a consistency proof from size {kept.size} is needed "
            f"(sharing-audit log consistency --old {kept.size})"
        )
    parsed, _ = ConsistencyProof.parse(proof)
    if parsed.old != kept.size:
        raise Refused(f"the proof is from size {parsed.old}, not from the {kept.size} kept")
    try:
        verify_consistency(kept.size, new.size, kept.root, new.root, parsed.hashes)
    except ProofError as exc:
        raise Refused(f"the checkpoint does not extend the one kept: {exc}") from None


def _keep(state: Path, note: bytes) -> None:
    state.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".checkpoint-", dir=state)
    with os.fdopen(fd, "wb") as out:
        out.write(note)
    os.replace(temporary, state / STATE_FILE)
