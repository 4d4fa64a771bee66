"""A key rotation changes no leaf: receipts the writer signed before it open, and every
inclusion and consistency proof the ledger serves after it verifies against the checkpoint
signed before it, with an independent implementation (Go's golang.org/x/mod/sumdb/note
and tlog, tests/interop/verify.go and receipts.go)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.ledger.checkpoints import sign_if_grown
from pipeline.ledger.rotation import rotate_key
from pipeline.ledger.store import Ledger
from pipeline.pseudonym import pseudonymiser
from tests.integration.test_erasure_interop import _proven
from tests.integration.test_receipts_interop import SOURCE as RECEIPTS_SOURCE
from tests.integration.test_receipts_interop import go_opens, receipts_from_a_writer
from tests.integration.test_transparency_interop import SIGNER, SOURCE, go_built, go_says

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # builds and runs Go programs


@pytest.fixture(scope="module")
def go_programs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    yield (
        go_built(SOURCE, tmp_path_factory.mktemp("go-proofs")),
        go_built(RECEIPTS_SOURCE, tmp_path_factory.mktemp("go-receipts")),
    )


def test_receipts_and_proofs_issued_before_a_rotation_verify_after_it(
    go_programs: tuple[Path, Path], db_url: str
) -> None:
    proofs, receipts_program = go_programs
    receipts = receipts_from_a_writer(db_url)  # written with the key bytes(range(32))
    ledger = Ledger.open(db_url)
    before = sign_if_grown(ledger, SIGNER)
    assert before is not None
    size = before.checkpoint.size
    with ledger.engine.connect() as connection:
        served_before = _proven(connection, before.note, size)
    rotate_key(
        ledger, pseudonymiser(bytes(range(32))), os.urandom(32), by="dana", keep=lambda key: None
    )
    after = sign_if_grown(ledger, SIGNER)
    assert after is not None and after.checkpoint.size == size + 1
    with ledger.engine.connect() as connection:
        served_after = _proven(connection, before.note, size)
        grown = _proven(connection, after.note, size + 1)
    assert served_after == served_before  # not one leaf, node or proof changed
    assert go_says(proofs, served_after) == "ok"
    assert go_says(proofs, grown) == "ok"  # the later tree extends the earlier one
    assert go_opens(receipts_program, receipts) == f"ok {len(receipts)}"
