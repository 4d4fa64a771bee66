"""Inclusion receipts (C2SP tlog-proof v1): an entry's index, its inclusion proof, and the
signed checkpoint the proof leads to, in one text an auditor can check offline.

Pure: a receipt is checked with nothing but the log's verifier key and the entry's leaf
bytes, which the checker hashes itself.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.transparency.merkle import Hash, ProofError, leaf_hash, verify_inclusion
from pipeline.transparency.note import Checkpoint, NoteError, Verifier, open_checkpoint

HEADER = "c2sp.org/tlog-proof@v1"
_INDEX = re.compile(r"^index (0|[1-9][0-9]*)$")


class ReceiptError(Exception):
    """A receipt that is malformed or does not prove what it is offered for."""


@dataclass(frozen=True, slots=True)
class Receipt:
    index: int
    proof: tuple[Hash, ...]
    checkpoint: bytes  # the signed note, as the log (and its witnesses) signed it
    extra: bytes | None = None

    def encode(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode() for h in self.proof]
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint

    @classmethod
    def parse(cls, data: bytes) -> Receipt:
        head, sep, checkpoint = data.partition(b"\n\n")
        if not sep:
            raise ReceiptError("a receipt is its proof, a blank line, and a checkpoint")
        lines = head.decode("utf-8", "replace").split("\n")
        if lines[0] != HEADER:
            raise ReceiptError(f"a receipt starts with {HEADER}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = _hash_or_bytes(rest.pop(0)[6:], exact=False)
        if not rest or not (found := _INDEX.match(rest[0])):
            raise ReceiptError("the receipt's index line is missing or malformed")
        proof = tuple(_hash_or_bytes(line, exact=True) for line in rest[1:])
        return cls(int(found.group(1)), proof, checkpoint, extra)


def _hash_or_bytes(text: str, exact: bool) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError("a line of the receipt is not standard base64") from None
    if exact and len(raw) != 32:
        raise ReceiptError("a proof hash is not 32 bytes")
    return raw


def check_receipt(data: bytes, leaf: bytes, log: Verifier) -> Checkpoint:
    """The checkpoint a receipt proves ``leaf`` (the entry's bytes) is included in, once
    its signature and the proof are checked; :class:`ReceiptError` naming the fault."""
    receipt = Receipt.parse(data)
    try:
        checkpoint, _ = open_checkpoint(receipt.checkpoint, log)
        verify_inclusion(
            receipt.index, checkpoint.size, leaf_hash(leaf), receipt.proof, checkpoint.root
        )
    except (NoteError, ProofError) as exc:
        raise ReceiptError(str(exc)) from None
    return checkpoint


def receipt_for(index: int, proof: Sequence[Hash], checkpoint: bytes) -> bytes:
    return Receipt(index, tuple(proof), checkpoint).encode()
