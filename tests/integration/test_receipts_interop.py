"""The log's delivery receipts, read by an independent implementation: Go's
golang.org/x/mod/sumdb/note opens each with the log's verifier key alone
(tests/interop/receipts.go), the reference vector and the receipts a ledger's writer makes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.engine import Position
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.receipting import signed_receipts
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.note import Signer
from tests.integration.test_transparency_interop import SIGNER, go_built
from tests.integration.test_verifiable_log import events
from tests.unit.test_delivery import VECTOR

SOURCE = Path(__file__).parents[1] / "interop" / "receipts.go"

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # builds and runs a Go program


@pytest.fixture(scope="module")
def go_receipts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield go_built(SOURCE, tmp_path_factory.mktemp("go-receipts"))


def go_opens(program: Path, receipts: list[bytes], signer: Signer = SIGNER) -> str:
    given = {"vkey": signer.verifier.vkey(), "receipts": [r.decode() for r in receipts]}
    done = subprocess.run(
        [str(program)], input=json.dumps(given).encode(), capture_output=True, timeout=60
    )
    return done.stdout.decode().strip()


def receipts_from_a_writer(url: str) -> list[bytes]:
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    writer = LedgerWriter(ledger, load_pack(), pseudonymiser(bytes(range(32))))
    raws = [*events(20), b"not json", events(20)[0]]
    outcomes = writer.write(
        [(raw, Position("sharing.referral", 2, i)) for i, raw in enumerate(raws)]
    )
    return [r for r in signed_receipts(outcomes, SIGNER, 1_767_225_600) if r is not None]


def test_go_opens_the_reference_receipt(go_receipts: Path) -> None:
    assert go_opens(go_receipts, [VECTOR]) == "ok 1"


def test_go_opens_every_receipt_the_writer_makes(go_receipts: Path, sqlite_url: str) -> None:
    receipts = receipts_from_a_writer(sqlite_url)
    assert len(receipts) > 20
    assert go_opens(go_receipts, receipts) == f"ok {len(receipts)}"


def test_go_refuses_a_receipt_whose_seq_was_edited(go_receipts: Path) -> None:
    assert go_opens(go_receipts, [VECTOR.replace(b"\nseq 6\n", b"\nseq 7\n")]).startswith(
        "receipt 0:"
    )


def test_go_refuses_a_receipt_under_another_key(go_receipts: Path) -> None:
    other = Signer(SIGNER.name, bytes(range(1, 33)))
    assert go_opens(go_receipts, [VECTOR], other).startswith("receipt 0:")
