"""Inclusion proofs for the entries a report or an export hands out, all against one
named checkpoint, so that whoever receives them can check each entry is in the log the
auditors verify (``sharing-audit audit receipt``), without trusting the sender.

The tree's nodes are fetched once for the whole report: neighbouring entries' proofs
share most of their hashes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from pipeline.ledger.log.checkpoints import Signed
from pipeline.ledger.log.witnessing import current
from pipeline.ledger.storage.tree import inclusion_proofs
from pipeline.transparency.merkle import Hash, Node

HOW_TO_CHECK = (
    "Each entry's proof is against the checkpoint given. To check one: take the entry's "
    "leaf (sharing-audit log leaf SEQ), its receipt (sharing-audit log prove SEQ --size "
    "SIZE, or the proof here with the checkpoint), and run sharing-audit audit receipt "
    "RECEIPT LEAF --vkey LOG.vkey --state YOUR-FOLDER with the log's verifier key and "
    "your own folder of the last checkpoint you accepted (sharing-audit audit verify), "
    "which the checkpoint must agree with."
)


class Proofs:
    """Inclusion proofs against ``signed``, sharing the nodes they are made of."""

    def __init__(self, signed: Signed) -> None:
        self.signed = signed
        self._nodes: dict[Node, Hash] = {}

    @property
    def size(self) -> int:
        return self.signed.checkpoint.size

    def inclusions(
        self, connection: Connection, seqs: Sequence[int]
    ) -> dict[int, dict[str, Any] | None]:
        """Each of ``seqs``'s inclusion in the checkpoint (its size, the leaf's index and
        the proof), None for an entry after it; the nodes of all of them read at once."""
        within = [seq for seq in dict.fromkeys(seqs) if 1 <= seq <= self.size]
        proofs = inclusion_proofs(connection, [seq - 1 for seq in within], self.size, self._nodes)
        found = {
            seq: {
                "checkpoint_size": self.size,
                "index": seq - 1,
                "proof": [base64.b64encode(h).decode() for h in proof],
            }
            for seq, proof in zip(within, proofs, strict=True)
        }
        return {seq: found.get(seq) for seq in seqs}

    def named(self) -> dict[str, Any]:
        """The checkpoint the proofs are against, as it is given out."""
        return {"checkpoint": self.signed.with_cosignatures().decode(), "size": self.size}


def proofs_for(connection: Connection, quorum: int = 0) -> Proofs | None:
    """Proofs against the checkpoint served as current, or None if the log has signed
    none (a ledger whose worker has no log key)."""
    signed = current(connection, quorum)
    return None if signed is None else Proofs(signed)
