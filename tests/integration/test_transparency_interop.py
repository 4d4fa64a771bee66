"""What this log signs and proves, checked by an independent implementation: Go's
golang.org/x/mod/sumdb/note and tlog (Debian's golang-go and golang-golang-x-mod-dev)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_api
from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.ledger.storage.tree import consistency_proof, inclusion_proof, leaf_bytes, root_at
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.auditor import STATE_FILE, Refused, accept
from pipeline.transparency.merkle import (
    consistency_ranges,
    inclusion_ranges,
    proof_hashes,
    tree_root,
)
from pipeline.transparency.note import Checkpoint, Signer, sign_note
from pipeline.transparency.tiles import tiles_for
from pipeline.users import Role, add_user
from tests.integration.test_verifiable_log import ENV, events, ledger_with
from tests.unit.test_auditor import HOSTILE, LOG, WITNESS, bad_log_line, cosigned, signed
from tests.unit.test_transparency import leaves_of, nodes_of

GOPATH = Path("/usr/share/gocode")
SOURCE = Path(__file__).parents[1] / "interop" / "verify.go"

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # builds and runs a Go program


def go_built(source: Path, folder: Path) -> Path:
    """``source`` built with Go against Debian's golang.org/x/mod, in ``folder``; the
    test is skipped where Go or x/mod is not installed."""
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/golang.org/x/mod/sumdb/tlog").is_dir():
        pytest.skip("Go or golang.org/x/mod is not installed (golang-go, golang-golang-x-mod-dev)")
    shutil.copy(source, folder / source.name)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(folder / "cache"),
    }
    subprocess.run(
        [go, "build", "-o", source.stem, source.name], cwd=folder, env=env, check=True, timeout=300
    )
    return folder / source.stem


@pytest.fixture(scope="module")
def go_verifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield go_built(SOURCE, tmp_path_factory.mktemp("go"))


def go_says(verifier: Path, given: dict[str, Any]) -> str:
    done = subprocess.run(
        [str(verifier)], input=json.dumps(given).encode(), capture_output=True, timeout=60
    )
    return done.stdout.decode().strip()


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def signed_tree(size: int, signer: Signer) -> dict[str, Any]:
    leaves = leaves_of(size)
    node = nodes_of(leaves)
    note = sign_note(Checkpoint(signer.name, size, tree_root(leaves)).body(), signer)
    return {
        "vkey": signer.verifier.vkey(),
        "checkpoint": note.encode().decode(),
        "leaves": [b64(leaf) for leaf in leaves],
        "inclusion": [
            {"index": i, "proof": [b64(h) for h in proof_hashes(inclusion_ranges(i, size), node)]}
            for i in range(size)
        ],
        "consistency": [
            {
                "old": old,
                "old_root": b64(tree_root(leaves[:old])),
                "proof": [b64(h) for h in proof_hashes(consistency_ranges(old, size), node)],
            }
            for old in range(1, size + 1)
        ],
    }


SIGNER = Signer("example.org/sharing-audit", bytes(range(32)))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 64, 100])
def test_go_verifies_our_checkpoints_and_every_proof(go_verifier: Path, size: int) -> None:
    assert go_says(go_verifier, signed_tree(size, SIGNER)) == "ok"


def test_go_refuses_a_proof_we_changed(go_verifier: Path) -> None:
    given = signed_tree(9, SIGNER)
    hashes = given["inclusion"][4]["proof"]
    hashes[1] = b64(bytes(32))
    assert go_says(go_verifier, given).startswith("inclusion of 4 in 9")


def test_go_refuses_a_checkpoint_signed_by_another_key(go_verifier: Path) -> None:
    given = signed_tree(9, SIGNER)
    given["vkey"] = Signer(SIGNER.name, bytes(range(1, 33))).verifier.vkey()
    assert go_says(go_verifier, given).startswith("checkpoint:")


def test_go_verifies_the_ledgers_own_checkpoint_and_proofs(go_verifier: Path, db_url: str) -> None:
    ledger = ledger_with(db_url, events(30))
    signed = sign_if_grown(ledger, SIGNER)
    assert signed is not None
    size = signed.checkpoint.size
    with ledger.engine.connect() as connection:
        leaves = [leaf_bytes(connection, seq) or b"" for seq in range(1, size + 1)]
        given = {
            "vkey": SIGNER.verifier.vkey(),
            "checkpoint": signed.note.decode(),
            "leaves": [b64(leaf) for leaf in leaves],
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
    assert go_says(go_verifier, given) == "ok"


def test_go_proves_every_entry_from_the_tiles_and_bundles_the_api_serves(
    go_verifier: Path, db_url: str, policy: Policy
) -> None:
    ledger = ledger_with(db_url, events(150))
    signed = sign_if_grown(ledger, SIGNER)
    assert signed is not None and signed.checkpoint.size > 256
    key = bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"])
    client = TestClient(create_api(ledger, policy=policy, pseudonym=pseudonymiser(key)))
    headers = {"Authorization": f"Bearer {add_user(ledger, 'mirror', Role.AUDITOR)}"}
    tiles = {}
    for tile in tiles_for(signed.checkpoint.size):
        answer = client.get(f"/log/{tile.path}", headers=headers)
        assert answer.status_code == 200, answer.text
        tiles[tile.path] = b64(answer.content)
    given = {"vkey": SIGNER.verifier.vkey(), "checkpoint": signed.note.decode(), "tiles": tiles}
    assert go_says(go_verifier, given) == "ok"
    first = next(path for path in tiles if path.startswith("tile/0/"))
    tiles[first] = b64(bytes(32) + base64.b64decode(tiles[first])[32:])
    assert go_says(go_verifier, given).startswith(("tree hash", "proof of", "entry 1 "))


# -- the auditor's state: only what Go opens is kept --------------------------------------


def go_opens(verifier: Path, note: bytes) -> str:
    return go_says(verifier, {"vkey": LOG.verifier.vkey(), "checkpoint_base64": b64(note)})


def good_then_failing(note: bytes) -> bytes:
    return note + bad_log_line(note)


def failing_then_good(note: bytes) -> bytes:
    text, good = note.split(b"\n\n")
    return text + b"\n\n" + bad_log_line(note) + good


OFFERED = {
    "plain": signed(leaves_of(8)),
    "extension-line": signed(leaves_of(8), b"an extension line\n"),
    "cosigned-by-a-witness-not-given": cosigned(signed(leaves_of(8)), WITNESS),
    "failing-log-signature-after-a-good-one": good_then_failing(signed(leaves_of(8))),
    "failing-log-signature-before-a-good-one": failing_then_good(signed(leaves_of(8))),
    **{name: signed(leaves_of(8), ext) + after for name, (ext, after) in HOSTILE.items()},
}


@pytest.mark.parametrize("note", OFFERED.values(), ids=OFFERED.keys())
def test_go_opens_every_checkpoint_the_auditor_keeps(
    go_verifier: Path, tmp_path: Path, note: bytes
) -> None:
    try:
        accept(note, LOG.verifier, tmp_path)
    except Refused:
        assert not (tmp_path / STATE_FILE).exists()
        return
    assert go_opens(go_verifier, (tmp_path / STATE_FILE).read_bytes()) == "ok"


@pytest.mark.parametrize("name", [*HOSTILE, "failing-log-signature-before-a-good-one"])
def test_go_too_refuses_the_notes_the_auditor_refuses(go_verifier: Path, name: str) -> None:
    assert go_opens(go_verifier, OFFERED[name]).startswith(
        ("checkpoint: malformed note", "checkpoint: invalid signature")
    )
