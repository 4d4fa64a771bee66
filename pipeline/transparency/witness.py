"""A witness's decision on a checkpoint a log submits (C2SP tlog-witness, add-checkpoint):
cosign it only if the log's key signed it and it extends the last checkpoint the witness
cosigned for that log. Pure: the caller holds the state and serves HTTP.

The answers, as the spec gives them: 200 with the cosignature line; 400 a malformed
request or an old size larger than the checkpoint's; 403 no signature by the log's key, or
one bearing its name and key id that fails; 404 a log the witness does not know; 409 an old
size other than the one the witness holds (its body that size, for the log to retry); 422
a size-0 checkpoint whose root is not the empty tree's, a proof that does not prove the
checkpoint extends the one held, or another root at the same size.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.merkle import EMPTY_ROOT, Hash, ProofError, verify_consistency
from pipeline.transparency.note import (
    Checkpoint,
    Note,
    NoteError,
    Signature,
    Signer,
    Verifier,
    cosign,
    parse_decimal,
)

SIZE_TYPE = "text/x.tlog.size"
#: What a request may hold, from tlog-witness and signed-note: an old size line, at most
#: 63 proof lines, a blank line, a checkpoint's text (an origin, its size and root, and room
#: for extension lines) and the 16 signature lines every verifier must accept, each up to an
#: ML-DSA-44 cosignature (4 + 8 + 2420 bytes) under a 255-byte key name.
MAX_PROOF_LINES = 63
MAX_TEXT = 1024
MAX_SIGNATURE_LINE = len("\u2014 ".encode()) + 255 + 1 + 4 * ((4 + 8 + 2420 + 2) // 3) + 1
MAX_REQUEST = (
    len("old 9223372036854775807\n")
    + MAX_PROOF_LINES * len("A" * 44 + "\n")
    + 1
    + MAX_TEXT
    + 16 * MAX_SIGNATURE_LINE
)


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
    kept: bytes = b""  # on 200, the note to keep and serve: the log's signature, its own


def parse_request(data: bytes) -> tuple[ConsistencyProof, Note]:
    """An add-checkpoint body as tlog-witness writes it, strictly: ``old N`` (a plain
    decimal), at most 63 base64 hashes, a blank line, a signed note; else
    :class:`NoteError` naming the line at fault."""
    head, blank, rest = data.partition(b"\n\n")
    if not blank:
        raise NoteError("no blank line between the old size and proof and the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise NoteError("the old size and proof lines are not ASCII") from None
    if not lines[0].startswith("old "):
        raise NoteError("the request does not start with 'old N'")
    old = parse_decimal(lines[0][4:], "the old size")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise NoteError(f"the proof has {len(lines) - 1} lines; at most {MAX_PROOF_LINES}")
    proof = tuple(_proof_hash(line, n) for n, line in enumerate(lines[1:], start=2))
    return ConsistencyProof(old, proof), Note.parse(rest)


def _proof_hash(line: str, number: int) -> Hash:
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise NoteError(f"line {number} of the request is not a base64 SHA-256 hash")
    return raw


def signed_by_log(note: Note, keys: Sequence[Verifier]) -> tuple[Signature, ...]:
    """The note's signature lines by the log's ``keys`` (one per key), if one of them
    signed it and no line bearing a key's name and id fails; else none."""
    made = {key: [s for s in note.signatures if key.made(s)] for key in keys}
    if not any(made.values()) or not all(note.signed_by(k) for k, lines in made.items() if lines):
        return ()
    return tuple(lines[0] for lines in made.values() if lines)


def add_checkpoint(
    request: bytes,
    logs: Mapping[str, Sequence[Verifier]],
    held: Mapping[str, Held],
    witness: Signer,
    now: int,
) -> Answer:
    """The witness's answer to an add-checkpoint ``request``, ``logs`` the keys it trusts
    for each origin (more than one while a log rotates its key); on 200 the caller keeps
    ``cosigned`` as what it holds for that log (checking again, atomically, that it still
    held what this answer was decided on)."""
    try:
        proof, note = parse_request(request)
        if len(note.text) > MAX_TEXT:
            raise NoteError(f"the checkpoint's text is over {MAX_TEXT} bytes")
        checkpoint = Checkpoint.from_body(note.text)
    except NoteError as exc:
        return Answer(400, f"malformed request: {exc}\n")
    keys = logs.get(checkpoint.origin)
    if not keys:
        return Answer(404, f"unknown log {checkpoint.origin!r}\n")
    verified = signed_by_log(note, keys)
    if not verified:
        return Answer(403, "the checkpoint is not signed by the log's key, or a signature fails\n")
    if proof.old > checkpoint.size:
        return Answer(400, f"old size {proof.old} is larger than the checkpoint's\n")
    last = held.get(checkpoint.origin, UNSEEN)
    if proof.old != last.size:
        return Answer(409, f"{last.size}\n", SIZE_TYPE)
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        return Answer(422, "a checkpoint of size 0 must have the empty tree's root\n")
    old_root = last.root if last.size else EMPTY_ROOT  # a size-0 row kept before this check
    try:
        verify_consistency(last.size, checkpoint.size, old_root, checkpoint.root, proof.hashes)
    except ProofError as exc:
        return Answer(422, f"the checkpoint does not extend the one cosigned: {exc}\n")
    line = cosign(note, witness, now).line()
    kept = Note(note.text, verified).encode()
    return Answer(200, line, cosigned=checkpoint, kept=kept + line.encode())
