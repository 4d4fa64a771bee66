"""A witness refuses what does not extend what it cosigned (C2SP tlog-witness), and the
log's operator, even holding the signing key, cannot get a rewritten history cosigned
(sharing-audit witness serve, sharing-audit log publish)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.incidents.desk import incidents
from pipeline.ledger.store import OUTBOX, Ledger
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.merkle import consistency_ranges, proof_hashes, tree_root
from pipeline.transparency.note import (
    COSIGNATURE,
    Checkpoint,
    Note,
    Signer,
    Verifier,
    cosigned_by,
    sign_note,
)
from pipeline.users import Role, add_user
from pipeline.witness.app import create_witness
from pipeline.witness.state import witness_engine
from schemas.alerts import WITNESS_REFUSAL, Alert
from tests.integration.serving import served
from tests.integration.test_verifiable_log import (
    ENV,
    count,
    events,
    ledger_with,
    record,
    rewritten,
)
from tests.unit.test_transparency import leaves_of, nodes_of

pytestmark = pytest.mark.integration
runner = CliRunner()
LOG = Signer("example.org/sharing-audit", bytes(range(32)))
WITNESS = Signer("witness.example.org/w1", bytes(range(1, 33)), COSIGNATURE)
KEY = bytes.fromhex(ENV["SHARING_AUDIT_PSEUDONYM_KEY"])


def request(old: int, size: int, signer: Signer = LOG, leaves: list[bytes] | None = None) -> bytes:
    leaves = leaves if leaves is not None else leaves_of(size)
    proof = proof_hashes(consistency_ranges(old, size), nodes_of(leaves))
    note = sign_note(Checkpoint(signer.name, size, tree_root(leaves)).body(), signer).encode()
    return ConsistencyProof(old, tuple(proof)).encode(note)


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[TestClient]:
    engine = witness_engine(f"sqlite:///{tmp_path}/witness.db")
    with TestClient(create_witness(engine, WITNESS, [LOG.verifier])) as client:
        yield client


def add(client: TestClient, body: bytes) -> tuple[int, str]:
    answer = client.post("/add-checkpoint", content=body)
    return answer.status_code, answer.text


def test_a_first_checkpoint_is_cosigned_and_the_cosignature_verifies(witness: TestClient) -> None:
    body = request(0, 7)
    status, line = add(witness, body)
    assert status == 200
    note = Note.parse(body.partition(b"\n\n")[2] + line.encode())
    assert cosigned_by(note, Verifier.parse(WITNESS.verifier.vkey())) is not None


def test_a_checkpoint_that_extends_the_one_cosigned_is_cosigned(witness: TestClient) -> None:
    assert add(witness, request(0, 7))[0] == 200
    assert add(witness, request(7, 20))[0] == 200


def test_an_old_size_other_than_the_one_held_is_answered_409_with_that_size(
    witness: TestClient,
) -> None:
    assert add(witness, request(0, 7))[0] == 200
    answer = witness.post("/add-checkpoint", content=request(5, 20))
    assert answer.status_code == 409
    assert answer.text == "7\n" and answer.headers["content-type"].startswith("text/x.tlog.size")


def test_a_history_that_does_not_extend_the_one_cosigned_is_refused_422(
    witness: TestClient,
) -> None:
    assert add(witness, request(0, 7))[0] == 200
    other = [b"rewritten", *leaves_of(20)[1:]]
    assert add(witness, request(7, 20, leaves=other))[0] == 422


def test_another_root_at_the_same_size_is_refused_422(witness: TestClient) -> None:
    assert add(witness, request(0, 7))[0] == 200
    other = [b"rewritten", *leaves_of(7)[1:]]
    assert add(witness, request(7, 7, leaves=other))[0] == 422


def test_an_unknown_log_is_404_and_a_forged_signature_403(witness: TestClient) -> None:
    assert add(witness, request(0, 7, Signer("other.example/log", bytes(32))))[0] == 404
    assert add(witness, request(0, 7, Signer(LOG.name, bytes(32))))[0] == 403


def test_an_old_size_beyond_the_checkpoint_is_400_and_garbage_too(witness: TestClient) -> None:
    body = request(0, 7).replace(b"old 0", b"old 9", 1)
    assert add(witness, body)[0] == 400
    assert add(witness, b"not a request")[0] == 400
    assert add(witness, b"old 0\n" + base64.b64encode(b"x" * 31) + b"\n\n")[0] == 400


# -- the operator who rewrites history, against a witness over HTTP -----------------------


def publish(url: str, witness_url: str, vkey: str) -> tuple[int, str]:
    env = {
        **ENV,
        "SHARING_AUDIT_WITNESSES": orjson.dumps([{"url": witness_url, "vkey": vkey}]).decode(),
    }
    done = runner.invoke(app, ["log", "publish", "--db", url], env=env)
    return done.exit_code, done.output


@pytest.fixture
def witnessed(tmp_path: Path) -> Iterator[tuple[str, str, list[bytes], int]]:
    """A witness over HTTP that has cosigned a true history; its URL, its key, the events
    and the size cosigned."""
    raws = events(30)
    url = f"sqlite:///{tmp_path}/true.db"
    ledger = ledger_with(url, raws)
    log_vkey = runner.invoke(app, ["log", "vkey", "--db", url], env=ENV).stdout.strip()
    engine = witness_engine(f"sqlite:///{tmp_path}/witness.db")
    with served(create_witness(engine, WITNESS, [Verifier.parse(log_vkey)])) as witness_url:
        vkey = WITNESS.verifier.vkey()
        status, said = publish(url, witness_url, vkey)
        assert status == 0 and "cosigned" in said, said
        yield witness_url, vkey, raws, count(ledger)


def test_the_true_history_grown_is_cosigned_again(
    witnessed: tuple[str, str, list[bytes], int], tmp_path: Path
) -> None:
    witness_url, vkey, _raws, _ = witnessed
    url = f"sqlite:///{tmp_path}/true.db"

    record(Ledger.open(url), events(5, seed=12), first=1000)
    status, said = publish(url, witness_url, vkey)
    assert status == 0, said


def test_a_rewritten_history_is_refused_and_publish_names_the_witness(
    witnessed: tuple[str, str, list[bytes], int], tmp_path: Path
) -> None:
    witness_url, vkey, raws, _ = witnessed
    forged = rewritten(raws, tmp_path, events(5, seed=11))
    status, said = publish(forged, witness_url, vkey)
    assert status == 1
    assert "witness.example.org/w1: REFUSED" in said and "HTTP 422" in said


def test_a_rollback_is_refused(
    witnessed: tuple[str, str, list[bytes], int], tmp_path: Path
) -> None:
    witness_url, vkey, raws, _ = witnessed
    smaller = f"sqlite:///{tmp_path}/smaller.db"
    ledger_with(smaller, raws[:10])
    status, said = publish(smaller, witness_url, vkey)
    assert status == 1 and "REFUSED" in said and "HTTP 409" in said


def test_a_fork_at_the_same_size_is_refused(
    witnessed: tuple[str, str, list[bytes], int], tmp_path: Path
) -> None:
    witness_url, vkey, raws, _ = witnessed
    forked = rewritten(raws, tmp_path, [])
    status, said = publish(forked, witness_url, vkey)
    assert status == 1 and "REFUSED" in said and "HTTP 422" in said


def test_a_refusal_is_a_high_severity_alert_and_an_incident_raised_once_while_it_lasts(
    witnessed: tuple[str, str, list[bytes], int], tmp_path: Path
) -> None:
    witness_url, vkey, raws, _ = witnessed
    forged = rewritten(raws, tmp_path, events(5, seed=11))
    assert publish(forged, witness_url, vkey)[0] == 1
    record(Ledger.open(forged), events(3, seed=13), first=2000)
    assert publish(forged, witness_url, vkey)[0] == 1  # refused again: no second alert
    ledger = Ledger.open(forged)
    with ledger.engine.connect() as connection:
        bodies = [orjson.loads(body) for (body,) in connection.execute(select(OUTBOX.c.body))]
        (incident,) = [
            i for i in incidents(connection).values() if i.cause.rule == "log.witness_refused"
        ]
    refusals = [body for body in bodies if body["kind"] == WITNESS_REFUSAL]
    assert len(refusals) == 1
    alert = Alert.model_validate({**refusals[0], "seq": incident.entries[0]})
    assert alert.severity == "high" and alert.decision == "breach" and alert.pupil_keys == []
    assert (
        "witness.example.org/w1" in alert.reasons[0] and "rewritten or forked" in alert.reasons[0]
    )
    assert incident.breach and incident.severity == "high"
    verified = runner.invoke(app, ["ledger", "verify", "--db", forged], env=ENV)
    assert verified.exit_code == 0, verified.output
    desk = TestClient(create_api(ledger, policy=load_pack(), pseudonym=pseudonymiser(KEY)))
    headers = {"Authorization": f"Bearer {add_user(ledger, 'dpo', Role.DPO)}"}
    listed = desk.get("/incidents", headers=headers)
    assert "log.witness_refused" in listed.text
    shown = desk.get(f"/incidents/{incident.entries[0]}", headers=headers)
    assert shown.status_code == 200 and "rewritten or forked" in shown.text
