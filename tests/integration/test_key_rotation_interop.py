"""A key rotation changes no leaf: receipts the writer signed before it open, and every
inclusion and consistency proof the ledger serves after it verifies against the checkpoint
signed before it, with an independent implementation (Go's golang.org/x/mod/sumdb/note
and tlog, tests/interop/verify.go and receipts.go)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.ledger.privacy.rotation import rotate_key
from pipeline.ledger.storage.store import Ledger
from pipeline.pseudonym import pseudonymiser
from tests.integration.test_erasure_interop import still_proven_after
from tests.integration.test_receipts_interop import SOURCE as RECEIPTS_SOURCE
from tests.integration.test_receipts_interop import go_opens, receipts_from_a_writer
from tests.integration.test_transparency_interop import SOURCE, go_built

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
    old = pseudonymiser(bytes(range(32)))
    still_proven_after(
        proofs,
        ledger,
        lambda: rotate_key(ledger, old, os.urandom(32), by="dana", keep=lambda key: None),
    )
    assert go_opens(receipts_program, receipts) == f"ok {len(receipts)}"
