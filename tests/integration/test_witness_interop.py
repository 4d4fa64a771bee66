"""What the witness cosigns, keeps and serves, read by an independent implementation:
Go's golang.org/x/mod/sumdb/note opens the log's checkpoint with the witness's
cosignature, the cosignature checked by a verifier written from C2SP tlog-cosignature
(tests/interop/cosigned.go: Go's note package knows no cosignature keys)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import consistency_proof
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.note import COSIGNATURE, Checkpoint, Note, Signer, cosigned_by
from pipeline.witness.app import create_witness
from pipeline.witness.state import witness_engine
from tests.integration.test_transparency_interop import SIGNER, go_built
from tests.integration.test_verifiable_log import events, ledger_with, record

SOURCE = Path(__file__).parents[1] / "interop" / "cosigned.go"
WITNESS = Signer("witness.example.org/w1", bytes(range(1, 33)), COSIGNATURE)

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # builds and runs a Go program


@pytest.fixture(scope="module")
def go_cosigned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield go_built(SOURCE, tmp_path_factory.mktemp("go-cosigned"))


def go_opens(program: Path, note: bytes, witness: Signer = WITNESS) -> str:
    given = {
        "log_vkey": SIGNER.verifier.vkey(),
        "witness_vkey": witness.verifier.vkey(),
        "note": note.decode(),
    }
    done = subprocess.run(
        [str(program)], input=json.dumps(given).encode(), capture_output=True, timeout=60
    )
    return done.stdout.decode().strip()


@pytest.fixture
def cosigned(tmp_path: Path) -> Iterator[tuple[Ledger, TestClient, bytes]]:
    """A ledger's checkpoint as the log signs it, the witness that cosigned it, and the
    checkpoint with the cosignature line the witness answered."""
    ledger = ledger_with(f"sqlite:///{tmp_path}/log.db", events(20))
    signed = sign_if_grown(ledger, SIGNER)
    assert signed is not None
    engine = witness_engine(f"sqlite:///{tmp_path}/witness.db")
    with TestClient(create_witness(engine, WITNESS, [SIGNER.verifier])) as client:
        answer = client.post("/add-checkpoint", content=ConsistencyProof(0, ()).encode(signed.note))
        assert answer.status_code == 200, answer.text
        yield ledger, client, signed.note + answer.content


def test_go_opens_the_logs_checkpoint_with_the_witness_cosignature(
    go_cosigned: Path, cosigned: tuple[Ledger, TestClient, bytes]
) -> None:
    note = cosigned[2]
    timestamp = cosigned_by(Note.parse(note), WITNESS.verifier)
    assert timestamp is not None
    assert go_opens(go_cosigned, note) == f"ok {timestamp}"


def test_go_opens_what_the_witness_serves_to_monitors(
    go_cosigned: Path, cosigned: tuple[Ledger, TestClient, bytes]
) -> None:
    ledger, client, _ = cosigned
    record(ledger, events(5, seed=12), first=1000)
    signed = sign_if_grown(ledger, SIGNER)
    assert signed is not None
    old = Checkpoint.from_body(Note.parse(cosigned[2]).text).size
    with ledger.engine.connect() as connection:
        proof = consistency_proof(connection, old, signed.checkpoint.size)
    grown = client.post(
        "/add-checkpoint", content=ConsistencyProof(old, tuple(proof)).encode(signed.note)
    )
    assert grown.status_code == 200, grown.text
    digest = hashlib.sha256(SIGNER.name.encode()).hexdigest()
    kept = client.get(f"/{digest}/checkpoint").content
    assert kept == signed.note + grown.content
    assert go_opens(go_cosigned, kept).startswith("ok ")


def test_go_refuses_a_cosignature_whose_time_was_changed(
    go_cosigned: Path, cosigned: tuple[Ledger, TestClient, bytes]
) -> None:
    note = cosigned[2]
    text, _, line = note.rstrip(b"\n").rpartition(b"\n")
    dash_name, _, encoded = line.rpartition(b" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[11] ^= 0x01  # the last byte of the time
    changed = text + b"\n" + dash_name + b" " + base64.b64encode(bytes(raw)) + b"\n"
    assert go_opens(go_cosigned, changed).startswith("note: invalid signature for key")


def test_go_does_not_take_a_cosignature_for_another_witness_key(
    go_cosigned: Path, cosigned: tuple[Ledger, TestClient, bytes]
) -> None:
    other = Signer(WITNESS.name, bytes(range(7, 39)), COSIGNATURE)
    assert go_opens(go_cosigned, cosigned[2], other).startswith("note: verified signatures")
