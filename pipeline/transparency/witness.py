"""A witness's decision on a checkpoint a log submits (C2SP tlog-witness, add-checkpoint):
cosign it only if the log's key signed it and it extends the last checkpoint the witness
cosigned for that log. Pure: the caller holds the state and serves HTTP.

The answers, as the spec gives them: 200 with the cosignature line; 400 a malformed
request or an old size larger than the checkpoint's; 403 a signature the log's key did not
make; 404 a log the witness does not know; 409 an old size other than the one the witness
holds (its body that size, for the log to retry); 422 a proof that does not prove the
checkpoint extends the one held, or another root at the same size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.transparency.auditor import ConsistencyProof, Refused
from pipeline.transparency.merkle import EMPTY_ROOT, Hash, ProofError, verify_consistency
from pipeline.transparency.note import (
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    cosign,
)

SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True, slots=True)
class Held:
    """What the witness last cosigned for a log: the tree's size and root."""

    size: int
    root: Hash


UNSEEN = Held(0, EMPTY_ROOT)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    cosigned: Checkpoint | None = None  # what the witness now holds, on 200


def add_checkpoint(
    request: bytes,
    logs: Mapping[str, Verifier],
    held: Mapping[str, Held],
    witness: Signer,
    now: int,
) -> Answer:
    """The witness's answer to an add-checkpoint ``request``; on 200 the caller keeps
    ``cosigned`` as what it holds for that log (checking again, atomically, that it still
    held what this answer was decided on)."""
    try:
        proof, data = ConsistencyProof.parse(request)
        note = Note.parse(data)
        checkpoint = Checkpoint.from_body(note.text)
    except (Refused, NoteError) as exc:
        return Answer(400, f"malformed request: {exc}\n")
    log = logs.get(checkpoint.origin)
    if log is None:
        return Answer(404, f"unknown log {checkpoint.origin!r}\n")
    if not note.signed_by(log):
        return Answer(403, "the checkpoint is not signed by the log's key\n")
    if proof.old > checkpoint.size:
        return Answer(400, f"old size {proof.old} is larger than the checkpoint's\n")
    last = held.get(checkpoint.origin, UNSEEN)
    if proof.old != last.size:
        return Answer(409, f"{last.size}\n", SIZE_TYPE)
    try:
        verify_consistency(last.size, checkpoint.size, last.root, checkpoint.root, proof.hashes)
    except ProofError as exc:
        return Answer(422, f"the checkpoint does not extend the one cosigned: {exc}\n")
    return Answer(200, cosign(note, witness, now).line(), cosigned=checkpoint)
