"""An erasure changes no leaf: the checkpoint signed before it, every inclusion and
consistency proof the ledger serves after it, and the delivery receipts the log signed
before it, verify with an independent implementation (Go's golang.org/x/mod/sumdb/note
and tlog, tests/interop/verify.go and receipts.go)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from pipeline.engine import Position
from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.ledger.privacy.erasure import erase
from pipeline.ledger.reading.queries import entries
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import consistency_proof, inclusion_proof, leaf_bytes, root_at
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.receipting import signed_receipts
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.delivery import open_receipt
from pipeline.transparency.merkle import leaf_hash
from tests.integration.test_receipts_interop import SOURCE as RECEIPTS_SOURCE
from tests.integration.test_receipts_interop import go_opens
from tests.integration.test_transparency_interop import SIGNER, SOURCE, b64, go_built, go_says
from tests.integration.test_verifiable_log import ENV, events, ledger_with

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # builds and runs a Go program


@pytest.fixture(scope="module")
def go_verifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield go_built(SOURCE, tmp_path_factory.mktemp("go"))


@pytest.fixture(scope="module")
def go_receipts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield go_built(RECEIPTS_SOURCE, tmp_path_factory.mktemp("go-receipts"))


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


def test_receipts_signed_before_an_erasure_name_leaves_proven_in_the_checkpoint_after_it(
    go_verifier: Path, go_receipts: Path, db_url: str
) -> None:
    """A sender holds the receipts the log signed for its records (each naming its entry's
    seq and leaf hash); then a pupil those records name is erased. Go still opens every
    receipt under the log's key, and proves each receipt's entry, its leaf as the ledger
    serves it now hashing to the leaf the receipt names, in the checkpoint signed after."""
    ledger = Ledger.open(db_url)
    schema.upgrade(ledger.engine)
    key = pseudonymiser(bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"]))
    outcomes = LedgerWriter(ledger, load_pack(), key).write(
        [(raw, Position("sharing.census", 0, n)) for n, raw in enumerate(events(30))]
    )
    held = [r for r in signed_receipts(outcomes, SIGNER, 1_767_225_600) if r is not None]
    receipts = [open_receipt(note, SIGNER.verifier) for note in held]
    pupil = next(key for outcome in outcomes for key in outcome.pupils)
    erase(ledger, pupil, by="dpo", reason="the parent asked", rule="request")
    after = sign_if_grown(ledger, SIGNER)
    assert after is not None
    with ledger.engine.connect() as connection:
        named = {e.seq for e in entries(connection) if pupil in e.pupil_keys}
        served = _proven(connection, after.note, after.checkpoint.size)
    assert named & {r.seq for r in receipts}  # some receipts are of the erased pupil's entries
    assert go_opens(go_receipts, held) == f"ok {len(held)}"
    leaves = [base64.b64decode(leaf) for leaf in served["leaves"]]
    assert [leaf_hash(leaves[r.seq - 1]) for r in receipts] == [r.leaf for r in receipts]
    served["inclusion"] = [served["inclusion"][r.seq - 1] for r in receipts]
    assert go_says(go_verifier, served) == "ok"
