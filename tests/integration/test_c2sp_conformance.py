"""The witness, its note verifier, its cosigner and its checkpoint parser against every
MUST, MUST NOT and REQUIRED of the C2SP texts that applies to them, one case each, the
requirement quoted in the case's docstring.

Texts: C2SP/C2SP at 5ba5ee8 (2026-07-22): tlog-witness.md, signed-note.md,
tlog-cosignature.md, tlog-checkpoint.md. Not tested here, as they bind others: what a log
may sign (tlog-checkpoint "A log MUST not sign any checkpoint which is inconsistent"; the
ledger's tests), what a client does with the witness's answer (the log's publisher, and
the auditor's ``accept``), ECDSA and ML-DSA-44 (neither is used), and ``sign-subtree``
(OPTIONAL; this witness does not offer it).

Cosignatures are checked here by Ed25519 over the message as the spec writes it, not with
``cosigned_by``, so that the project's reading of the spec is not checked by itself.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient

from pipeline.transparency.merkle import (
    EMPTY_ROOT,
    consistency_ranges,
    proof_hashes,
    tree_root,
)
from pipeline.transparency.note import (
    COSIGNATURE,
    ED25519,
    Checkpoint,
    Note,
    NoteError,
    Signature,
    Signer,
    Verifier,
    cosign,
    cosigned_by,
    open_checkpoint,
    sign_note,
)
from pipeline.transparency.witness import UNSEEN
from pipeline.witness.app import create_witness
from pipeline.witness.state import held, keep, witness_engine
from tests.unit.test_transparency import leaves_of, nodes_of

pytestmark = pytest.mark.integration
LOG = Signer("example.org/sharing-audit", bytes(range(32)))
WITNESS = Signer("witness.example.org/w1", bytes(range(1, 33)), COSIGNATURE)
OTHER = Signer("example.org/sharing-audit", bytes(range(2, 34)))  # the log's name, not key
DASH = "\u2014".encode()


@pytest.fixture
def engine_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/witness.db"


@pytest.fixture
def witness(engine_url: str) -> Iterator[TestClient]:
    app = create_witness(witness_engine(engine_url), WITNESS, [LOG.verifier])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def checkpoint_text(size: int, leaves: list[bytes] | None = None, extra: bytes = b"") -> bytes:
    return (
        Checkpoint(LOG.name, size, tree_root(leaves_of(size) if leaves is None else leaves)).body()
        + extra
    )


def proof_lines(old: int, size: int, leaves: list[bytes] | None = None) -> bytes:
    leaves = leaves_of(size) if leaves is None else leaves
    hashes = proof_hashes(consistency_ranges(old, size), nodes_of(leaves)) if old else []
    return b"".join(base64.b64encode(h) + b"\n" for h in hashes)


def request(
    old: int,
    size: int,
    *,
    text: bytes | None = None,
    signers: tuple[Signer, ...] = (LOG,),
    extra: bytes = b"",
    proof: bytes | None = None,
) -> bytes:
    """An add-checkpoint body: ``old N``, the proof from ``old`` to ``size`` (or ``proof``),
    a blank line, the checkpoint signed by ``signers``, then ``extra`` signature lines."""
    text = checkpoint_text(size) if text is None else text
    lines = "".join(sign_note(text, s).signatures[0].line() for s in signers).encode()
    head = f"old {old}\n".encode() + (proof_lines(old, size) if proof is None else proof)
    return head + b"\n" + text + b"\n" + lines + extra


def post(client: TestClient, body: bytes) -> tuple[int, str]:
    answer = client.post("/add-checkpoint", content=body)
    return answer.status_code, answer.text


def status(client: TestClient, body: bytes) -> int:
    return post(client, body)[0]


def spec_cosignature(line: str, text: bytes, signer: Signer = WITNESS) -> int:
    """The timestamp of a tlog-cosignature/v1 line over ``text``, checked from the spec's
    words alone; AssertionError or InvalidSignature if it is not one."""
    assert line.startswith("\u2014 ") and line.endswith("\n")
    name, encoded = line[2:-1].split(" ")
    raw = base64.b64decode(encoded, validate=True)
    public = signer.verifier.public
    assert name == signer.name
    assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
    assert len(raw) == 4 + 8 + 64
    (timestamp,) = struct.unpack(">Q", raw[4:12])
    message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)
    return int(timestamp)


def monitored(client: TestClient, origin: str = LOG.name) -> tuple[int, bytes]:
    answer = client.get(f"/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint")
    return answer.status_code, answer.content


# -- tlog-witness: add-checkpoint -----------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_witness_add_checkpoint_must_be_a_post(witness: TestClient, method: str) -> None:
    """tlog-witness: "The request MUST be an HTTP POST." """
    assert witness.request(method, "/add-checkpoint", content=request(0, 7)).status_code == 405


@pytest.mark.parametrize(
    "body",
    [
        b"",
        sign_note(checkpoint_text(7), LOG).encode(),  # no old size line
        b"old 0\n" + sign_note(checkpoint_text(7), LOG).encode(),  # no empty line
        b"old 0\n\n",  # no checkpoint
    ],
    ids=["empty", "no-old-line", "no-empty-line", "no-checkpoint"],
)
def test_witness_request_must_be_old_size_proof_empty_line_checkpoint(
    witness: TestClient, body: bytes
) -> None:
    """tlog-witness: "The request body MUST be a sequence of an old size line, zero or more
    consistency proof lines, and an empty line, followed by a checkpoint." """
    assert status(witness, body) == 400


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b[:-1],  # the last signature line unterminated
        lambda b: b.replace(b"\n", b"\r\n"),
        lambda b: b.replace(b"old 0\n", b"old 0\r\n"),
    ],
    ids=["unterminated", "crlf", "crlf-old-line"],
)
def test_witness_each_line_must_end_in_a_newline(witness: TestClient, change: object) -> None:
    """tlog-witness: "Each line MUST terminate in a newline character (U+000A)." """
    assert status(witness, change(request(0, 7))) == 400  # type: ignore[operator]


@pytest.mark.parametrize(
    "line",
    [
        b"old  0",
        b"old\t0",
        b"OLD 0",
        b"old0",
        b"old 00",
        b"old 07",
        b"old -0",
        b"old 0x0",
        b"old \xd9\xa0",
        b"old 0 ",
        b"old",
        b"old 99999999999999999999",
    ],
)
def test_witness_old_size_must_be_old_space_plain_ascii_decimal(
    witness: TestClient, line: bytes
) -> None:
    """tlog-witness: "The old size line MUST consist of the string `old`, a single space
    (0x20), and the tree size of the previous checkpoint encoded as an ASCII decimal with no
    leading zeroes (unless the size is zero, in which case the encoding MUST be `0`)." """
    assert status(witness, request(0, 7).replace(b"old 0", line, 1)) == 400


@pytest.mark.parametrize(
    "line",
    [
        base64.b64encode(bytes(31)),
        base64.b64encode(bytes(33)),
        b"not base64!",
        base64.urlsafe_b64encode(b"\xfb" * 32),
        base64.b64encode(bytes(32)) * 2,
        b"",
    ],
    ids=["31-bytes", "33-bytes", "not-base64", "url-safe", "two-hashes", "empty"],
)
def test_witness_each_proof_line_must_be_one_base64_hash(witness: TestClient, line: bytes) -> None:
    """tlog-witness: "Each consistency proof line MUST encode a single hash in base64." """
    assert status(witness, request(3, 7, proof=proof_lines(3, 7) + line + b"\n")) == 400


def test_witness_refuses_more_than_63_proof_lines(witness: TestClient) -> None:
    """tlog-witness: "The client MUST NOT send more than 63 consistency proof lines." """
    assert status(witness, request(3, 7, proof=(base64.b64encode(bytes(32)) + b"\n") * 64)) == 400


def test_witness_accepts_a_checkpoint_with_several_signatures(witness: TestClient) -> None:
    """tlog-witness: "The submitted checkpoint MAY include multiple signatures."; signed-note:
    verifiers "MUST accept at least up to 16 signatures." """
    body = request(
        0, 7, signers=(LOG, *[Signer(f"w{i}.example", bytes([i]) * 32) for i in range(15)])
    )
    assert body.count(DASH) == 16
    assert status(witness, body) == 200


def test_witness_must_verify_the_checkpoint_signature_against_the_logs_key(
    witness: TestClient,
) -> None:
    """tlog-witness: "The witness MUST verify the checkpoint signature against the public
    key(s) it trusts for the checkpoint origin" """
    assert status(witness, request(0, 7, signers=(OTHER,))) == 403


def test_witness_must_verify_against_each_key_it_trusts_for_the_origin(engine_url: str) -> None:
    """tlog-witness: "The witness MUST verify the checkpoint signature against the public
    key(s) it trusts for the checkpoint origin": two keys of one log (a key rotated), a
    checkpoint signed by either is cosigned, one bearing a failing signature by either not."""
    app = create_witness(witness_engine(engine_url), WITNESS, [LOG.verifier, OTHER.verifier])
    with TestClient(app) as client:
        assert status(client, request(0, 7, signers=(LOG,))) == 200
        assert status(client, request(7, 9, signers=(OTHER,))) == 200
        bad = Signature(OTHER.name, OTHER.verifier.id, bytes(64)).line().encode()
        assert status(client, request(9, 11, signers=(LOG,), extra=bad)) == 403


@pytest.mark.parametrize(
    "unknown",
    [
        Signer(LOG.name, bytes(range(5, 37))),  # the log's name, another key (another id)
        Signer("someone.example/else", bytes(range(32))),  # another name
    ],
    ids=["same-name", "other-name"],
)
def test_witness_must_ignore_signatures_from_unknown_keys(
    witness: TestClient, unknown: Signer
) -> None:
    """tlog-witness: "it MUST ignore signatures from unknown keys." """
    assert status(witness, request(0, 7, signers=(unknown, LOG))) == 200


def test_witness_must_ignore_a_signature_sharing_the_logs_id_under_another_name(
    witness: TestClient,
) -> None:
    """signed-note: "Verifiers MUST ignore signatures from unknown keys, even if they share
    a name or ID (but not both) with a known key." """
    stranger = Signature("someone.example/else", LOG.verifier.id, bytes(64)).line().encode()
    assert status(witness, request(0, 7, extra=stranger)) == 200


def test_witness_must_answer_404_to_an_unknown_origin(witness: TestClient) -> None:
    """tlog-witness: "If the checkpoint origin is unknown, the witness MUST respond with a
    "404 Not Found" HTTP status code." """
    stranger = Signer("other.example/log", bytes(range(32)))
    text = Checkpoint(stranger.name, 7, tree_root(leaves_of(7))).body()
    assert status(witness, request(0, 7, text=text, signers=(stranger,))) == 404


def test_witness_must_answer_403_when_no_trusted_signature_is_present(
    witness: TestClient,
) -> None:
    """tlog-witness: "The witness MUST respond with a "403 Forbidden" HTTP status code if
    either no signature from a trusted key for the origin is present" """
    stranger = Signer("someone.example/else", bytes(range(32)))
    assert status(witness, request(0, 7, signers=(stranger,))) == 403


@pytest.mark.parametrize("first", [True, False], ids=["bad-first", "bad-last"])
def test_witness_must_answer_403_when_a_trusted_keys_signature_fails(
    witness: TestClient, first: bool
) -> None:
    """tlog-witness: 403 also if "a signature line's key name and ID match a trusted key but
    the signature itself fails to verify (such a note is malformed per signed-note)." """
    bad = Signature(LOG.name, LOG.verifier.id, bytes(64)).line().encode()
    good = request(0, 7)
    body = good.replace(b"\n\n" + DASH, b"\n\n" + bad + DASH, 1) if first else good + bad
    assert status(witness, body) == 403


def test_witness_must_answer_400_to_an_old_size_beyond_the_checkpoint(
    witness: TestClient,
) -> None:
    """tlog-witness: "The old size MUST be equal to or lower than the checkpoint size.
    Otherwise, the witness MUST respond with a "400 Bad Request" HTTP status code." """
    assert status(witness, request(8, 7, proof=b"")) == 400


@pytest.mark.parametrize("cosigned", [0, 7])
def test_witness_must_answer_409_with_the_size_it_holds_as_text_x_tlog_size(
    witness: TestClient, cosigned: int
) -> None:
    """tlog-witness: "The witness MUST check that the old size matches the size of the latest
    checkpoint it cosigned for the checkpoint's origin (or zero if it never cosigned a
    checkpoint for that origin). If it doesn't match, the witness MUST respond with a "409
    Conflict" HTTP status code. The response body MUST consist of the tree size of the
    latest cosigned checkpoint in decimal, followed by a newline (U+000A). The response MUST
    have a `Content-Type` of `text/x.tlog.size`." """
    if cosigned:
        assert status(witness, request(0, cosigned)) == 200
    answer = witness.post("/add-checkpoint", content=request(3, 20))
    assert answer.status_code == 409
    assert answer.content == f"{cosigned}\n".encode()
    assert answer.headers["content-type"] == "text/x.tlog.size"


def test_witness_must_answer_422_to_a_size_zero_checkpoint_without_the_empty_root(
    witness: TestClient,
) -> None:
    """tlog-witness: "A checkpoint of size zero MUST have the root hash of the empty tree
    [...] Otherwise, the witness MUST respond with a "422 Unprocessable Entity" HTTP status
    code." """
    bogus = Checkpoint(LOG.name, 0, tree_root(leaves_of(1))).body()
    assert status(witness, request(0, 0, text=bogus)) == 422
    assert status(witness, request(0, 0)) == 200  # the empty tree's own root: cosigned


def test_witness_must_answer_422_to_a_proof_from_old_size_zero(witness: TestClient) -> None:
    """tlog-witness: "If the old size is zero, the consistency proof MUST be empty [...] If
    the proof is not empty when the old size is zero [...] the witness MUST respond with a
    "422 Unprocessable Entity" HTTP status code." """
    assert status(witness, request(0, 7, proof=proof_lines(3, 7))) == 422


def test_witness_must_answer_422_to_a_proof_that_does_not_verify(witness: TestClient) -> None:
    """tlog-witness: "if a Merkle Consistency Proof doesn't verify, the witness MUST respond
    with a "422 Unprocessable Entity" HTTP status code." """
    assert status(witness, request(0, 3)) == 200
    rewritten = [b"rewritten", *leaves_of(7)[1:]]
    text = checkpoint_text(7, rewritten)
    assert status(witness, request(3, 7, text=text, proof=proof_lines(3, 7, rewritten))) == 422
    assert status(witness, request(3, 7, proof=proof_lines(3, 7)[:-46] + b"\n")) in (422, 400)


def test_witness_must_answer_422_to_another_root_at_the_same_size(witness: TestClient) -> None:
    """tlog-witness: "If the old size matches the checkpoint size, the witness MUST check
    that the root hashes are also identical. If they don't match, the witness MUST respond
    with a "422 Unprocessable Entity" HTTP status code." """
    assert status(witness, request(0, 7)) == 200
    assert status(witness, request(7, 7)) == 200
    text = checkpoint_text(7, [b"forked", *leaves_of(7)[1:]])
    assert status(witness, request(7, 7, text=text)) == 422


def test_witness_must_not_cosign_a_checkpoint_that_fails_a_check(witness: TestClient) -> None:
    """tlog-witness: the witness "MUST NOT cosign the checkpoint" that fails one of the
    consistency checks: what it holds, and serves, is unchanged."""
    assert status(witness, request(0, 7)) == 200
    before = monitored(witness)
    text = checkpoint_text(9, [b"rewritten", *leaves_of(9)[1:]])
    code, said = post(witness, request(7, 9, text=text, proof=proof_lines(7, 9)))
    assert code == 422 and DASH.decode() not in said
    assert monitored(witness) == before
    assert status(witness, request(7, 9)) == 200


def test_witness_must_update_its_record_and_answer_200_when_all_checks_pass(
    witness: TestClient,
) -> None:
    """tlog-witness: "If all the checks above pass, the witness MUST update its record of
    the latest cosigned checkpoint and respond with a "200 Success" HTTP status code." """
    assert status(witness, request(0, 7)) == 200
    assert status(witness, request(7, 20)) == 200
    assert witness.post("/add-checkpoint", content=request(7, 21)).text == "20\n"


def test_witness_answer_must_be_cosignature_lines_on_the_checkpoint(witness: TestClient) -> None:
    """tlog-witness: "The response body MUST be a sequence of one or more note signature
    lines, each starting with the `—` character (U+2014) and ending with a newline character
    (U+000A). The signatures MUST be cosignatures from the witness key(s) on the
    checkpoint." """
    code, said = post(witness, request(0, 7))
    assert code == 200 and said.endswith("\n")
    lines = said.splitlines(keepends=True)
    assert lines and all(line.startswith("\u2014 ") for line in lines)
    for line in lines:
        spec_cosignature(line, checkpoint_text(7))


def test_witness_cosignature_must_not_omit_the_timestamp(witness: TestClient) -> None:
    """tlog-witness: "The cosignature MUST NOT omit the timestamp, i.e. the timestamp MUST
    NOT be zero." """
    assert spec_cosignature(post(witness, request(0, 7))[1], checkpoint_text(7)) > 0


def test_witness_must_persist_the_new_checkpoint_before_responding(engine_url: str) -> None:
    """tlog-witness: "The witness MUST persist the new checkpoint before responding." A
    witness started afresh on the same state holds what the first one cosigned."""
    first = create_witness(witness_engine(engine_url), WITNESS, [LOG.verifier])
    with TestClient(first) as client:
        assert status(client, request(0, 7)) == 200
    again = create_witness(witness_engine(engine_url), WITNESS, [LOG.verifier])
    with TestClient(again) as client:
        assert client.post("/add-checkpoint", content=request(0, 9)).text == "7\n"


def test_witness_checks_and_persists_atomically(engine_url: str) -> None:
    """tlog-witness: "checking the old size against the latest checkpoint and persisting
    the new checkpoint must be performed atomically": of two requests decided on the same
    state, only the first is kept, the later one refused (no rollback)."""
    engine = witness_engine(engine_url)
    assert keep(engine, UNSEEN, Checkpoint(LOG.name, 20, tree_root(leaves_of(20))), b"b")
    assert not keep(engine, UNSEEN, Checkpoint(LOG.name, 7, tree_root(leaves_of(7))), b"a")
    assert held(engine)[LOG.name].size == 20


# -- tlog-witness: monitor retrieval -----------------------------------------------------


def test_monitor_checkpoint_must_be_a_get(witness: TestClient) -> None:
    """tlog-witness: "The request MUST be an HTTP GET." """
    assert status(witness, request(0, 7)) == 200
    path = f"/{hashlib.sha256(LOG.name.encode()).hexdigest()}/checkpoint"
    assert witness.post(path, content=b"").status_code == 405


def test_monitor_checkpoint_is_found_by_the_lowercase_hex_sha256_of_the_origin(
    witness: TestClient,
) -> None:
    """tlog-witness: "The origin hash is the SHA-256 hash of the log's origin, hex encoded,
    in lowercase." """
    assert status(witness, request(0, 7)) == 200
    digest = hashlib.sha256(LOG.name.encode()).hexdigest()
    assert witness.get(f"/{digest}/checkpoint").status_code == 200
    assert witness.get(f"/{digest.upper()}/checkpoint").status_code == 404


def test_monitor_checkpoint_must_carry_the_cosignature_returned_and_the_logs_signature(
    witness: TestClient,
) -> None:
    """tlog-witness: "The response body MUST be a checkpoint for the log identified by the
    origin, and it MUST include the cosignature(s) from the witness's key(s) that were
    returned from add-checkpoint and the cosignature from the log key(s) that the witness
    verified." """
    junk = Signature("junk.example/x", bytes(4), bytes(64)).line().encode()
    body = request(0, 7, extra=junk)
    code, said = post(witness, body)
    assert code == 200
    got, served = monitored(witness)
    assert got == 200
    log_line = sign_note(checkpoint_text(7), LOG).signatures[0].line().encode()
    assert served == checkpoint_text(7) + b"\n" + log_line + said.encode()
    checkpoint, _ = open_checkpoint(served, LOG.verifier)
    assert checkpoint.size == 7


def test_monitor_checkpoint_must_be_404_for_a_log_never_cosigned(witness: TestClient) -> None:
    """tlog-witness: "If the witness has never cosigned a checkpoint for that log, it MUST
    respond with a "404 Not Found" HTTP status code instead." """
    assert monitored(witness)[0] == 404
    assert status(witness, request(0, 7, signers=(OTHER,))) == 403
    assert monitored(witness)[0] == 404


# -- signed-note: what every note verifier here must do ------------------------------------

SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYj"
    "OBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()


def test_note_the_specs_example_vkey_verifies_the_specs_example_note() -> None:
    """signed-note: "The following verifier key [...] verifies the following signed note";
    "The key name and ID MUST match those used in the signatures." """
    verifier = Verifier.parse(SPEC_VKEY)
    assert verifier.kind == ED25519 and Note.parse(SPEC_NOTE).signed_by(verifier)


def test_note_text_must_be_ignored_unless_signed_by_a_trusted_key() -> None:
    """signed-note: "The text MUST be ignored unless the note is signed by a trusted key and
    the signature has been verified." """
    with pytest.raises(NoteError, match="not signed by the log's key"):
        open_checkpoint(sign_note(checkpoint_text(7), OTHER).encode(), LOG.verifier)


@pytest.mark.parametrize("where", ["text", "signature-name"])
def test_note_must_be_valid_utf8(where: str) -> None:
    """signed-note: "Signed notes MUST be valid UTF-8" """
    note = sign_note(checkpoint_text(7, extra=b"caf\xc3\xa9\n"), LOG).encode()
    broken = (
        note.replace(b"caf\xc3\xa9", b"caf\xe9")
        if where == "text"
        else note + DASH + b" \xff\xfe " + base64.b64encode(bytes(68)) + b"\n"
    )
    with pytest.raises(NoteError, match="UTF-8"):
        Note.parse(broken)


@pytest.mark.parametrize("control", [c for c in range(0x20) if c != 0x0A])
def test_note_must_not_contain_ascii_control_characters_but_newline(control: int) -> None:
    """signed-note: Signed notes "MUST NOT contain any ASCII control characters (those below
    U+0020) other than newline." """
    note = sign_note(checkpoint_text(7, extra=b"ext" + bytes([control]) + b"\n"), LOG).encode()
    with pytest.raises(NoteError, match="control character"):
        Note.parse(note)


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\u00a0b", "a\u2003b", "a\u3000b"])
def test_note_key_names_must_be_non_empty_without_spaces_or_plus(name: str) -> None:
    """signed-note: "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or
    plus (U+002B) characters." """
    line = f"\u2014 {name} {base64.b64encode(bytes(68)).decode()}\n".encode()
    with pytest.raises(NoteError):
        Note.parse(sign_note(checkpoint_text(7), LOG).encode() + line)
    with pytest.raises(NoteError):
        Verifier.parse(f"{name}+00000000+{base64.b64encode(bytes(33)).decode()}")


def test_note_verifiers_must_accept_16_signatures() -> None:
    """signed-note: Verifiers "MUST accept at least up to 16 signatures." """
    others = [Signer(f"w{i}.example", bytes([i]) * 32) for i in range(15)]
    lines = b"".join(sign_note(checkpoint_text(7), s).signatures[0].line().encode() for s in others)
    note = sign_note(checkpoint_text(7), LOG).encode() + lines
    assert len(Note.parse(note).signatures) == 16
    assert open_checkpoint(note, LOG.verifier)[0].size == 7


@pytest.mark.parametrize(
    "stranger",
    [
        Signature(LOG.name, b"\x00\x00\x00\x00", bytes(64)),
        Signature("someone.example/else", LOG.verifier.id, bytes(64)),
    ],
    ids=["shares-the-name", "shares-the-id"],
)
def test_note_verifiers_must_ignore_unknown_keys_sharing_a_name_or_an_id(
    stranger: Signature,
) -> None:
    """signed-note: "Verifiers MUST ignore signatures from unknown keys, even if they share
    a name or ID (but not both) with a known key." """
    note = sign_note(checkpoint_text(7), LOG).encode() + stranger.line().encode()
    assert open_checkpoint(note, LOG.verifier)[0].size == 7


def test_note_a_known_keys_failing_signature_must_be_verified_and_rejects_the_note() -> None:
    """signed-note: "If the key name and ID match a known key, verifiers MUST verify the
    signature. If a signature from a known key fails to verify, clients SHOULD reject the
    whole note." """
    bad = Signature(LOG.name, LOG.verifier.id, bytes(64)).line().encode()
    with pytest.raises(NoteError):
        open_checkpoint(sign_note(checkpoint_text(7), LOG).encode() + bad, LOG.verifier)


def test_note_without_a_verified_known_signature_must_be_rejected() -> None:
    """signed-note: "If no signature from a known key verifies successfully, clients MUST
    reject the note." """
    stranger = Signer("someone.example/else", bytes(range(32)))
    with pytest.raises(NoteError):
        open_checkpoint(sign_note(checkpoint_text(7), stranger).encode(), LOG.verifier)


@pytest.mark.parametrize(
    "data",
    [
        checkpoint_text(7),  # no blank line, no signature
        checkpoint_text(7) + b"\n",  # a blank line, no signature line
        sign_note(checkpoint_text(7), LOG).encode()[:-1],  # the last line unterminated
        sign_note(checkpoint_text(7), LOG).encode().replace(DASH, b"-"),
        sign_note(checkpoint_text(7), LOG).encode().replace(DASH, "\u2013".encode()),
        sign_note(checkpoint_text(7), LOG).encode().replace(DASH + b" ", DASH + b"  "),
        sign_note(checkpoint_text(7), LOG).encode().replace(b"=\n", b"\n"),  # not padded
        sign_note(checkpoint_text(7), LOG).encode() + DASH + b" a.example/k AAAA\n",  # 3 bytes
    ],
    ids=[
        "unsigned",
        "no-lines",
        "unterminated",
        "hyphen",
        "en-dash",
        "two-spaces",
        "unpadded-base64",
        "short-signature",
    ],
)
def test_note_must_be_text_blank_line_and_well_formed_signature_lines(data: bytes) -> None:
    """signed-note: "A signed note consists of a text ending in newline (U+000A), followed
    by a blank line (only a newline), followed by one or more signature lines of this form:
    em dash (U+2014), space (U+0020), key name, space, base64-encoded signature, newline.";
    "Signatures are the base64 encoding of 4+n bytes." """
    with pytest.raises(NoteError):
        Note.parse(data)


def test_note_one_key_must_have_a_different_id_for_each_signature_type() -> None:
    """signed-note: "if it is [reused for different signature types], a different key ID
    MUST be used for each signature type." """
    public = LOG.verifier.public
    assert Verifier(LOG.name, public, ED25519).id != Verifier(LOG.name, public, COSIGNATURE).id


# -- tlog-checkpoint: the parser -----------------------------------------------------------


def test_checkpoint_origin_must_be_non_empty() -> None:
    """tlog-checkpoint: "The origin MUST be non-empty" """
    with pytest.raises(NoteError, match="origin"):
        Checkpoint.from_body(b"\n7\n" + base64.b64encode(EMPTY_ROOT) + b"\n")


def test_checkpoint_origin_must_not_be_assumed_a_url() -> None:
    """tlog-checkpoint: "clients MUST NOT assume that the origin is following this format"
    (a schema-less URL without spaces or plus)."""
    body = b"My School's log + more\n0\n" + base64.b64encode(EMPTY_ROOT) + b"\n"
    assert Checkpoint.from_body(body).origin == "My School's log + more"


@pytest.mark.parametrize(
    "size",
    [
        b"07",
        b"00",
        b"+7",
        b"-0",
        b" 7",
        b"7 ",
        "\u0667".encode(),
        "\u2077".encode(),
        b"",
        b"9" * 20,
        b"9" * 5000,
    ],
)
def test_checkpoint_size_must_be_a_plain_ascii_decimal(size: bytes) -> None:
    """tlog-checkpoint: "The second line is the tree size, the ASCII decimal representation
    of the number of leaves in the tree, with no leading zeroes (unless the tree is empty,
    in which case the tree size is `0`)." """
    with pytest.raises(NoteError, match="size"):
        Checkpoint.from_body(
            LOG.name.encode() + b"\n" + size + b"\n" + base64.b64encode(EMPTY_ROOT) + b"\n"
        )


def test_checkpoint_size_zero_is_written_0() -> None:
    """tlog-checkpoint: "(unless the tree is empty, in which case the tree size is `0`)" """
    assert Checkpoint.from_body(checkpoint_text(0)).size == 0


def test_checkpoint_extension_lines_must_be_non_empty() -> None:
    """tlog-checkpoint: "Extension lines, if any, MUST be non-empty." """
    assert Checkpoint.from_body(checkpoint_text(7, extra=b"ext one\next two\n")).size == 7
    with pytest.raises(NoteError, match="extension"):
        Checkpoint.from_body(checkpoint_text(7, extra=b"\next\n"))


# -- tlog-cosignature: the witness as cosigner, and the cosignature verifier ---------------


def test_cosignature_key_id_must_be_sha256_of_name_newline_0x04_and_key(
    witness: TestClient,
) -> None:
    """tlog-cosignature: "The key ID for Ed25519 cosignatures MUST be computed as
    SHA-256(<name> || "\\n" || 0x04 || 32-byte Ed25519 cosigner public key)[:4]" """
    expected = hashlib.sha256(WITNESS.name.encode() + b"\n\x04" + WITNESS.verifier.public)
    assert WITNESS.verifier.id == expected.digest()[:4]
    line = post(witness, request(0, 7))[1]
    assert base64.b64decode(line.split(" ")[2])[:4] == expected.digest()[:4]


def test_cosignature_must_be_a_timestamped_signature(witness: TestClient) -> None:
    """tlog-cosignature: "The signature MUST be a `timestamped_signature` structure": a
    big-endian u64 timestamp, then the 64-byte Ed25519 signature."""
    raw = base64.b64decode(post(witness, request(0, 7))[1].split(" ")[2])
    assert len(raw) == 4 + 8 + 64


def test_cosignature_timestamp_must_not_exceed_2_63_minus_1() -> None:
    """tlog-cosignature: "`timestamp` [...] MUST NOT exceed 2^63 - 1": the cosigner will not
    make one, and the verifier will not take one."""
    note = sign_note(checkpoint_text(7), LOG)
    with pytest.raises(NoteError):
        cosign(note, WITNESS, 2**63)
    timestamp = 2**63
    message = f"cosignature/v1\ntime {timestamp}\n".encode() + note.text
    payload = struct.pack(">Q", timestamp) + WITNESS.sign(message)
    forged = Signature(WITNESS.name, WITNESS.verifier.id, payload).line().encode()
    assert cosigned_by(Note.parse(note.encode() + forged), WITNESS.verifier) is None
    largest = cosign(note, WITNESS, 2**63 - 1).line().encode()
    assert cosigned_by(Note.parse(note.encode() + largest), WITNESS.verifier) == 2**63 - 1


def test_cosignature_message_must_be_header_time_line_and_the_whole_note_body(
    witness: TestClient,
) -> None:
    """tlog-cosignature: "The signed message MUST be two newline (U+000A) terminated lines
    (one header line and one timestamp line) followed by the whole note body of the
    cosigned checkpoint"; "The header line MUST be the fixed string `cosignature/v1`"; "The
    timestamp line MUST consist of the string `time`, a single space (0x20), and
    `timestamped_signature.timestamp` encoded as an ASCII decimal with no leading zeroes." """
    spec_cosignature(post(witness, request(0, 7))[1], checkpoint_text(7))


def test_cosignature_must_cover_extension_lines(witness: TestClient) -> None:
    """tlog-cosignature: "Extension lines MAY be included in the checkpoint by the log, and
    if present MUST be included in the cosigned message." """
    text = checkpoint_text(7, extra=b"an extension line\n")
    spec_cosignature(post(witness, request(0, 7, text=text))[1], text)


def test_cosignature_verifier_rejects_a_failing_line_under_the_witness_key() -> None:
    """signed-note, for cosignatures too: "If the key name and ID match a known key,
    verifiers MUST verify the signature." """
    note = sign_note(checkpoint_text(7), LOG)
    good = cosign(note, WITNESS, 1767225600).line().encode()
    bad = Signature(WITNESS.name, WITNESS.verifier.id, bytes(72)).line().encode()
    assert cosigned_by(Note.parse(note.encode() + good), WITNESS.verifier) == 1767225600
    assert cosigned_by(Note.parse(note.encode() + good + bad), WITNESS.verifier) is None
