"""A witness refuses what does not extend what it cosigned (C2SP tlog-witness), and the
log's operator, even holding the signing key, cannot get a rewritten history cosigned
(sharing-audit witness serve, sharing-audit log publish)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.api.app import create_api
from pipeline.cli.main import app
from pipeline.incidents.desk import incidents
from pipeline.ledger.storage.store import OUTBOX, Ledger
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.merkle import consistency_ranges, proof_hashes, tree_root
from pipeline.transparency.note import (
    COSIGNATURE,
    MAX_SIGNATURES,
    Checkpoint,
    Note,
    Signature,
    Signer,
    Verifier,
    cosigned_by,
    open_checkpoint,
    sign_note,
)
from pipeline.users import Role, add_user
from pipeline.witness.app import MAX_REQUEST, create_witness
from pipeline.witness.state import HELD, witness_engine
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


# -- a witness that cannot be jammed or exhausted (issue 29) ------------------------------


@pytest.fixture
def lenient(tmp_path: Path) -> Iterator[TestClient]:
    """The witness, its server errors answered as a client sees them (500) not raised."""
    engine = witness_engine(f"sqlite:///{tmp_path}/witness.db")
    app = create_witness(engine, WITNESS, [LOG.verifier])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def signed_request(old: bytes, text: bytes, extra: bytes = b"", proof: bytes = b"") -> bytes:
    """A request whose old size line and checkpoint text are given verbatim, the text signed
    by the log, then ``extra`` signature lines."""
    return b"old " + old + b"\n" + proof + b"\n" + sign_note(text, LOG).encode() + extra


def body_of(size: int, leaves: list[bytes] | None = None) -> bytes:
    return Checkpoint(LOG.name, size, tree_root(leaves or leaves_of(size))).body()


def asgi_post(app: object, headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[int, int]:
    """POST /add-checkpoint straight to the ASGI app, the body 64 KiB chunks offered one at
    a time (``chunks`` of them); the status answered and the bytes the app took."""
    taken = 0
    sent: list[int] = []

    async def receive() -> dict[str, object]:
        nonlocal taken
        if taken >= chunks * 65536:
            return {"type": "http.disconnect"}
        taken += 65536
        return {"type": "http.request", "body": b"x" * 65536, "more_body": taken < chunks * 65536}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            sent.append(int(message["status"]))  # type: ignore[call-overload]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/add-checkpoint",
        "raw_path": b"/add-checkpoint",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    return sent[0], taken


def test_a_body_declared_larger_than_the_bound_is_refused_413_unread(tmp_path: Path) -> None:
    app = create_witness(witness_engine(f"sqlite:///{tmp_path}/w.db"), WITNESS, [LOG.verifier])
    status, taken = asgi_post(app, [(b"content-length", b"400000000")], chunks=6000)
    assert status == 413 and taken == 0


@pytest.mark.parametrize(
    "header",
    [(b"transfer-encoding", b"chunked"), (b"content-length", "\u00b2".encode("latin-1"))],
    ids=["chunked", "superscript-length"],
)
def test_a_body_of_no_declared_length_is_refused_413_once_past_the_bound(
    tmp_path: Path, header: tuple[bytes, bytes]
) -> None:
    app = create_witness(witness_engine(f"sqlite:///{tmp_path}/w.db"), WITNESS, [LOG.verifier])
    status, taken = asgi_post(app, [header], chunks=6000)
    assert status == 413 and taken <= MAX_REQUEST + 65536


def test_a_witness_served_for_real_answers_413_to_a_400_mb_declaration_at_once(
    tmp_path: Path,
) -> None:
    engine = witness_engine(f"sqlite:///{tmp_path}/witness.db")
    with served(create_witness(engine, WITNESS, [LOG.verifier])) as url:
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
            sock.sendall(
                b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 400000000\r\n\r\n"
                + b"old 0\n\n"
            )
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_size_zero_checkpoint_with_another_root_than_the_empty_trees_is_refused_422(
    witness: TestClient,
) -> None:
    bogus = Checkpoint(LOG.name, 0, tree_root(leaves_of(3))).body()
    assert add(witness, signed_request(b"0", bogus))[0] == 422


def test_a_size_zero_checkpoint_refused_leaves_the_empty_tree_and_growth_cosignable(
    witness: TestClient,
) -> None:
    bogus = Checkpoint(LOG.name, 0, tree_root(leaves_of(3))).body()
    add(witness, signed_request(b"0", bogus))
    assert add(witness, request(0, 0))[0] == 200
    assert add(witness, request(0, 7))[0] == 200


def test_a_size_zero_row_held_with_another_root_does_not_jam_the_log(
    tmp_path: Path,
) -> None:
    """State written by a witness before the fix: growth from it is still cosigned."""
    engine = witness_engine(f"sqlite:///{tmp_path}/witness.db")
    with engine.begin() as connection:
        connection.execute(
            HELD.insert().values(
                origin=LOG.name, size=0, root=bytes(32), checkpoint="x", updated_at="t"
            )
        )
    with TestClient(create_witness(engine, WITNESS, [LOG.verifier])) as client:
        assert add(client, request(0, 7))[0] == 200


def test_a_failing_signature_by_the_logs_key_beside_a_good_one_is_refused_403(
    witness: TestClient,
) -> None:
    bad = Signature(LOG.name, LOG.verifier.id, bytes(64)).line().encode()
    assert add(witness, request(0, 7) + bad)[0] == 403


@pytest.mark.parametrize("control", [b"\x00", b"\t", b"\r", b"\x1b", b"\x1f"])
def test_a_note_with_a_control_character_is_refused_400(
    witness: TestClient, control: bytes
) -> None:
    text = body_of(7) + b"extension" + control + b"line\n"
    assert add(witness, signed_request(b"0", text))[0] == 400


@pytest.mark.parametrize(
    ("held", "old"),
    [
        (0, b"00"),
        (116, b"0116"),
        (3, "\u0663".encode()),  # ARABIC-INDIC DIGIT THREE
        (2, "\u00b2".encode()),  # SUPERSCRIPT TWO
        (7, b"+7"),
        (7, b" 7"),
        (7, b"7 "),
        (0, b"9" * 5000),
        (0, b"9" * 21),
        (0, b""),
    ],
)
def test_an_old_size_not_in_plain_decimal_is_refused_400(
    lenient: TestClient, held: int, old: bytes
) -> None:
    if held:
        assert add(lenient, request(0, held))[0] == 200
    assert add(lenient, signed_request(old, body_of(held + 1)))[0] == 400


@pytest.mark.parametrize(
    "size", [b"07", "\u0667".encode(), "\u2077".encode(), b"+7", b"9" * 5000, b"9" * 20]
)
def test_a_checkpoint_size_not_in_plain_decimal_is_refused_400(
    lenient: TestClient, size: bytes
) -> None:
    text = LOG.name.encode() + b"\n" + size + b"\n" + base64.b64encode(bytes(32)) + b"\n"
    assert add(lenient, signed_request(b"0", text))[0] == 400


def test_a_signature_line_not_in_utf8_is_refused_400(lenient: TestClient) -> None:
    junk = b"\xe2\x80\x94 \xff\xfe " + base64.b64encode(bytes(68)) + b"\n"
    assert add(lenient, request(0, 7) + junk)[0] == 400


def test_the_witness_keeps_only_the_logs_signature_and_its_own_cosignature(
    tmp_path: Path,
) -> None:
    engine = witness_engine(f"sqlite:///{tmp_path}/witness.db")
    junk = b"".join(
        Signature(f"junk.example/{i}", bytes(4), bytes(64)).line().encode() for i in range(10)
    )
    body = request(0, 7)
    with TestClient(create_witness(engine, WITNESS, [LOG.verifier])) as client:
        status, line = add(client, body + junk)
    assert status == 200
    with engine.connect() as connection:
        (kept,) = connection.execute(select(HELD.c.checkpoint)).scalars()
    assert kept.encode() == body.partition(b"\n\n")[2] + line.encode()


def test_a_note_with_more_signature_lines_than_the_bound_is_refused(witness: TestClient) -> None:
    junk = b"".join(
        Signature(f"j/{i}", bytes(4), bytes(1)).line().encode() for i in range(MAX_SIGNATURES)
    )
    assert add(witness, request(0, 7) + junk)[0] in (400, 413)


def test_a_409_carries_exactly_the_tlog_size_content_type(witness: TestClient) -> None:
    assert add(witness, request(0, 7))[0] == 200
    answer = witness.post("/add-checkpoint", content=request(5, 20))
    assert answer.status_code == 409 and answer.headers["content-type"] == "text/x.tlog.size"


def monitored(client: TestClient, origin: str) -> tuple[int, bytes]:
    answer = client.get(f"/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint")
    return answer.status_code, answer.content


def test_a_monitor_gets_404_for_a_log_never_cosigned(witness: TestClient) -> None:
    assert monitored(witness, LOG.name)[0] == 404
    assert monitored(witness, "other.example/log")[0] == 404


def test_a_monitor_gets_the_latest_checkpoint_cosigned_with_both_signatures(
    witness: TestClient,
) -> None:
    assert add(witness, request(0, 7))[0] == 200
    assert add(witness, request(7, 20))[0] == 200
    status, served_note = monitored(witness, LOG.name)
    assert status == 200
    checkpoint, note = open_checkpoint(served_note, LOG.verifier)
    assert checkpoint.size == 20 and cosigned_by(note, WITNESS.verifier) is not None
