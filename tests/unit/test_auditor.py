"""The auditor's kept state: a checkpoint or a receipt is held to the last checkpoint the
auditor accepted, cosignatures count once per witness, and the state only ever keeps a
note that Go's note package would open (pipeline.transparency.auditor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.transparency.auditor import (
    STATE_FILE,
    ConsistencyProof,
    Refused,
    accept,
    accept_receipt,
)
from pipeline.transparency.merkle import (
    consistency_ranges,
    inclusion_ranges,
    proof_hashes,
    tree_root,
)
from pipeline.transparency.note import (
    COSIGNATURE,
    DASH,
    Checkpoint,
    Note,
    Signer,
    cosign,
    sign_note,
)
from pipeline.transparency.receipt import receipt_for
from tests.unit.test_transparency import leaves_of, nodes_of

ORIGIN = "example.org/sharing-audit"
LOG = Signer(ORIGIN, bytes(range(32)))
WITNESS = Signer("witness.example.org/w1", bytes(range(1, 33)), COSIGNATURE)
OTHER_WITNESS = Signer("witness.example.org/w2", bytes(range(2, 34)), COSIGNATURE)


def forked(n: int, at: int = 2) -> list[bytes]:
    """``n`` leaves, the one at ``at`` not the true one."""
    leaves = leaves_of(n)
    leaves[at] = b"rewritten"
    return leaves


def signed(leaves: list[bytes], extension: bytes = b"") -> bytes:
    body = Checkpoint(ORIGIN, len(leaves), tree_root(leaves)).body() + extension
    return sign_note(body, LOG).encode()


def consistency(leaves: list[bytes], old: int) -> bytes:
    hashes = proof_hashes(consistency_ranges(old, len(leaves)), nodes_of(leaves))
    return ConsistencyProof(old, tuple(hashes)).encode(signed(leaves))


def receipt(leaves: list[bytes], index: int, note: bytes | None = None) -> bytes:
    proof = proof_hashes(inclusion_ranges(index, len(leaves)), nodes_of(leaves))
    return receipt_for(index, proof, note if note is not None else signed(leaves))


def cosigned(note: bytes, *witnesses: Signer) -> bytes:
    lines = (cosign(Note.parse(note), w, 1767225600).line() for w in witnesses)
    return note + "".join(lines).encode()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """An auditor's state holding the true checkpoint of size 8."""
    accept(signed(leaves_of(8)), LOG.verifier, tmp_path)
    return tmp_path


# -- receipts against the kept state -------------------------------------------------------


def test_a_receipt_from_a_fork_of_the_kept_size_is_refused(state: Path) -> None:
    fork = forked(8)
    with pytest.raises(Refused, match="forked"):
        accept_receipt(receipt(fork, 5), fork[5], LOG.verifier, state)


def test_a_receipt_at_the_kept_size_and_root_is_included(state: Path) -> None:
    kept = (state / STATE_FILE).read_bytes()
    checkpoint, newer = accept_receipt(receipt(leaves_of(8), 5), b"entry-5", LOG.verifier, state)
    assert (checkpoint.size, newer) == (8, False)
    assert (state / STATE_FILE).read_bytes() == kept


def test_a_receipt_from_a_larger_tree_needs_a_proof_from_the_kept_size(state: Path) -> None:
    with pytest.raises(Refused, match="consistency proof from size 8 is needed"):
        accept_receipt(receipt(leaves_of(12), 10), b"entry-10", LOG.verifier, state)


def test_a_receipt_from_a_larger_tree_that_extends_the_kept_one_is_kept(state: Path) -> None:
    leaves = leaves_of(12)
    checkpoint, newer = accept_receipt(
        receipt(leaves, 10), leaves[10], LOG.verifier, state, consistency(leaves, 8)
    )
    assert (checkpoint.size, newer) == (12, True)
    assert (state / STATE_FILE).read_bytes() == signed(leaves)


def test_a_receipt_from_a_larger_fork_is_refused_whatever_its_proof(state: Path) -> None:
    fork = forked(12)
    with pytest.raises(Refused, match="does not extend the one kept"):
        accept_receipt(receipt(fork, 10), fork[10], LOG.verifier, state, consistency(fork, 8))


def test_a_receipt_from_an_older_tree_needs_a_proof_that_it_leads_to_the_kept_one(
    state: Path,
) -> None:
    with pytest.raises(Refused, match="older than the 8 kept"):
        accept_receipt(receipt(leaves_of(5), 3), b"entry-3", LOG.verifier, state)


def test_a_receipt_from_an_older_tree_that_leads_to_the_kept_one_is_included(
    state: Path,
) -> None:
    kept = (state / STATE_FILE).read_bytes()
    checkpoint, newer = accept_receipt(
        receipt(leaves_of(5), 3), b"entry-3", LOG.verifier, state, consistency(leaves_of(8), 5)
    )
    assert (checkpoint.size, newer) == (5, False)
    assert (state / STATE_FILE).read_bytes() == kept


def test_a_proof_to_a_checkpoint_newer_than_the_kept_one_says_to_accept_that_first(
    state: Path,
) -> None:
    with pytest.raises(Refused, match="leads to a checkpoint of size 12, not 8: accept"):
        accept_receipt(
            receipt(leaves_of(5), 3), b"entry-3", LOG.verifier, state, consistency(leaves_of(12), 5)
        )


def test_a_receipt_from_an_older_fork_is_refused(state: Path) -> None:
    fork = forked(5)
    with pytest.raises(Refused, match="not in the history kept"):
        accept_receipt(receipt(fork, 3), fork[3], LOG.verifier, state, consistency(leaves_of(8), 5))


def test_a_first_receipt_starts_the_state(tmp_path: Path) -> None:
    _, newer = accept_receipt(receipt(leaves_of(8), 1), b"entry-1", LOG.verifier, tmp_path)
    assert newer and (tmp_path / STATE_FILE).read_bytes() == signed(leaves_of(8))


def test_a_receipt_needs_the_quorum_of_cosignatures_a_checkpoint_needs(tmp_path: Path) -> None:
    leaves = leaves_of(8)
    bare = receipt(leaves, 1)
    with pytest.raises(Refused, match="0 of the witnesses given cosigned it; 1 must"):
        accept_receipt(bare, leaves[1], LOG.verifier, tmp_path, None, [WITNESS.verifier], 1)
    good = receipt(leaves, 1, cosigned(signed(leaves), WITNESS))
    accept_receipt(good, leaves[1], LOG.verifier, tmp_path, None, [WITNESS.verifier], 1)


def test_a_state_that_is_not_a_folder_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder\n")
    with pytest.raises(Refused, match=f"cannot keep the checkpoint in {tmp_path / 'file'}"):
        accept(signed(leaves_of(8)), LOG.verifier, tmp_path / "file")


# -- cosignatures count once per witness ---------------------------------------------------


def test_one_witness_given_twice_does_not_make_a_quorum_of_two(tmp_path: Path) -> None:
    note = cosigned(signed(leaves_of(8)), WITNESS)
    with pytest.raises(Refused, match="given twice"):
        accept(note, LOG.verifier, tmp_path, None, [WITNESS.verifier, WITNESS.verifier], 2)
    assert not (tmp_path / STATE_FILE).exists()


def test_one_witness_key_under_two_names_does_not_make_a_quorum_of_two(tmp_path: Path) -> None:
    renamed = Signer("witness.example.org/alias", WITNESS.private, COSIGNATURE)
    note = cosigned(signed(leaves_of(8)), WITNESS, renamed)  # one key's signature, twice
    with pytest.raises(Refused, match="given twice"):
        accept(note, LOG.verifier, tmp_path, None, [WITNESS.verifier, renamed.verifier], 2)
    assert not (tmp_path / STATE_FILE).exists()


def test_two_witnesses_make_a_quorum_of_two(tmp_path: Path) -> None:
    note = cosigned(signed(leaves_of(8)), WITNESS, OTHER_WITNESS)
    both = [WITNESS.verifier, OTHER_WITNESS.verifier]
    assert accept(note, LOG.verifier, tmp_path, None, both, 2).size == 8


# -- only what Go's note.Open opens is kept ------------------------------------------------


def bad_log_line(note: bytes) -> bytes:
    """A signature line by the log's key (its name and id) whose signature is wrong."""
    line = Note.parse(note).signatures[0]
    return type(line)(line.name, line.id, bytes(64)).line().encode()


@pytest.mark.parametrize("bad_first", [False, True], ids=["after", "before"])
def test_a_failing_signature_by_the_logs_key_beside_a_good_one_is_refused(
    tmp_path: Path, bad_first: bool
) -> None:
    note = signed(leaves_of(8))
    text, good = note.split(b"\n\n")
    lines = [bad_log_line(note), good] if bad_first else [good, bad_log_line(note)]
    with pytest.raises(Refused, match=r"by the log's key .* does not verify"):
        accept(text + b"\n\n" + b"".join(lines), LOG.verifier, tmp_path)
    assert not (tmp_path / STATE_FILE).exists()


def test_a_failing_cosignature_by_a_given_witness_is_refused(tmp_path: Path) -> None:
    note = signed(leaves_of(8))
    other = sign_note(Checkpoint(ORIGIN, 9, bytes(32)).body(), LOG)
    line = cosign(other, WITNESS, 1767225600).line().encode()  # for another checkpoint
    with pytest.raises(Refused, match=r"witness .*w1 does not verify"):
        accept(
            cosigned(note, OTHER_WITNESS) + line,
            LOG.verifier,
            tmp_path,
            None,
            [WITNESS.verifier, OTHER_WITNESS.verifier],
            1,
        )


HOSTILE = {
    "tab-in-an-extension-line": (b"extension\tline\n", b""),
    "nul-in-an-extension-line": (b"extension\x00\n", b""),
    "carriage-return": (b"extension\r\n", b""),
    "escape": (b"\x1b[31mred\n", b""),
    "invalid-utf8-in-an-unknown-signer": (b"", DASH.encode() + b" other\xff AAAAAAAA\n"),
    "plus-in-a-signers-name": (b"", f"{DASH} a+b AAAAAAAA\n".encode()),
    "101-signature-lines": (b"", f"{DASH} other AAAAAAAA\n".encode() * 100),
}


@pytest.mark.parametrize("extension,after", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_note_gos_parser_refuses_is_never_kept(
    tmp_path: Path, extension: bytes, after: bytes
) -> None:
    note = signed(leaves_of(8), extension) + after
    with pytest.raises(Refused):
        accept(note, LOG.verifier, tmp_path)
    assert not (tmp_path / STATE_FILE).exists()


def test_a_control_character_is_named_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(Refused, match=r"line 4 of the note holds the control character '\\t'"):
        accept(signed(leaves_of(8), b"a\tb\n"), LOG.verifier, tmp_path)


@pytest.mark.parametrize("old", ["0116", "\u0663", "\u00b2", "9" * 5000, "+7", " 7", ""])
def test_a_proofs_old_size_not_in_plain_decimal_is_refused(old: str) -> None:
    with pytest.raises(Refused, match="old"):
        ConsistencyProof.parse(f"old {old}\n\n".encode())
