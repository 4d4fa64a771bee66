"""An erasure changes no leaf: the checkpoint signed before it, and every inclusion and
consistency proof the ledger serves after it, verify with an independent implementation
(Go's golang.org/x/mod/sumdb/note and tlog, tests/interop/verify.go)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from pipeline.ledger.checkpoints import sign_if_grown
from pipeline.ledger.erasure import erase
from pipeline.ledger.queries import entries
from pipeline.ledger.store import Ledger
from pipeline.ledger.tree import consistency_proof, inclusion_proof, leaf_bytes, root_at
from tests.integration.test_transparency_interop import SIGNER, SOURCE, b64, go_built, go_says
from tests.integration.test_verifiable_log import events, ledger_with

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # builds and runs a Go program


@pytest.fixture(scope="module")
def go_verifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield go_built(SOURCE, tmp_path_factory.mktemp("go"))


def _proven(connection: Connection, note: bytes, size: int) -> dict[str, Any]:
    """What the ledger serves now for a tree of ``size`` leaves, with the checkpoint
    ``note`` signed for that size."""
    return {
        "vkey": SIGNER.verifier.vkey(),
        "checkpoint": note.decode(),
        "leaves": [b64(leaf_bytes(connection, seq) or b"") for seq in range(1, size + 1)],
        "inclusion": [
            {"index": i, "proof": [b64(h) for h in inclusion_proof(connection, i, size)]}
            for i in range(size)
        ],
        "consistency": [
            {
                "old": old,
                "old_root": b64(root_at(connection, old)),
                "proof": [b64(h) for h in consistency_proof(connection, old, size)],
            }
            for old in range(1, size + 1)
        ],
    }


def still_proven_after(go_verifier: Path, ledger: Ledger, change: Callable[[], object]) -> None:
    """Sign a checkpoint, make ``change``, sign again: every proof the ledger then serves
    for the earlier tree is the one it served before, and Go verifies it, and the later
    tree extends the earlier one by the change's one entry."""
    before = sign_if_grown(ledger, SIGNER)
    assert before is not None
    size = before.checkpoint.size
    with ledger.engine.connect() as connection:
        served_before = _proven(connection, before.note, size)
    change()
    after = sign_if_grown(ledger, SIGNER)
    assert after is not None and after.checkpoint.size == size + 1
    with ledger.engine.connect() as connection:
        served_after = _proven(connection, before.note, size)
        grown = _proven(connection, after.note, size + 1)
    assert served_after == served_before  # not one leaf, node or proof changed
    assert go_says(go_verifier, served_after) == "ok"
    assert go_says(go_verifier, grown) == "ok"  # the later tree extends the earlier one


def test_proofs_served_after_an_erasure_verify_against_the_checkpoint_before_it(
    go_verifier: Path, db_url: str
) -> None:
    ledger = ledger_with(db_url, events(30))
    with ledger.engine.connect() as connection:
        pupil = next(key for entry in entries(connection) for key in entry.pupil_keys)
    still_proven_after(
        go_verifier,
        ledger,
        lambda: erase(ledger, pupil, by="dpo", reason="the parent asked", rule="request"),
    )
