"""The verifiable log's pure core: the C2SP example vectors reproduce exactly, and proofs
verify, and nothing else does (pipeline.transparency)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.transparency.merkle import (
    EMPTY_ROOT,
    Hash,
    Node,
    ProofError,
    consistency_ranges,
    frontier,
    grown,
    inclusion_ranges,
    leaf_hash,
    proof_hashes,
    root_from,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from pipeline.transparency.note import (
    COSIGNATURE,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    cosign,
    cosigned_by,
    open_checkpoint,
    sign_note,
)
from pipeline.transparency.receipt import ReceiptError, check_receipt, receipt_for

ORIGIN = "example.org/sharing-audit"
LOG = Signer(ORIGIN, bytes(range(32)))
WITNESS = Signer("witness.example.org/w1", bytes(range(1, 33)), COSIGNATURE)
VECTOR_CHECKPOINT = (
    "example.org/sharing-audit\n7\nkTlgHMHKirKnoMLBNMBIRfKxulSag9bIRc/NpDnMWF0=\n\n"
    "\u2014 example.org/sharing-audit xpKwp5BOVqHDKGvmBWuPusuc7g2TN+eW38+t0gHo1Xrx"
    "wUqFJ2NFnXhfvaSkBpdaZRXvXNWpsiTlahGOKWDBhH00swo=\n"
).encode()


def b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def leaves_of(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


def nodes_of(leaves: list[bytes]) -> Callable[[Node], Hash]:
    """Perfect subtrees' hashes as the ledger would store them, computed from scratch."""

    def node(at: Node) -> Hash:
        level, index = at
        return tree_root(leaves[index << level : (index + 1) << level])

    return node


# -- the reference's vectors --------------------------------------------------------------


def test_the_empty_tree_has_the_rfc_root() -> None:
    assert base64.b64encode(EMPTY_ROOT) == b"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert tree_root([]) == EMPTY_ROOT


def test_the_example_checkpoint_is_signed_byte_for_byte() -> None:
    root = root_from(nodes_of(leaves_of(7)), 7)
    note = sign_note(Checkpoint(ORIGIN, 7, root).body(), LOG)
    assert note.encode() == VECTOR_CHECKPOINT


def test_the_example_verifier_keys_are_printed_exactly() -> None:
    assert LOG.verifier.vkey() == (
        "example.org/sharing-audit+c692b0a7+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
    )
    assert WITNESS.verifier.vkey() == (
        "witness.example.org/w1+943db5a3+BHm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk"
    )


def test_the_example_proofs_reproduce() -> None:
    node = nodes_of(leaves_of(7))
    assert b64(proof_hashes(inclusion_ranges(5, 7), node)) == [
        "GUu1otW9EOXRqm/V1CmAs1bK8dpiPNmYfEv6L4F3Htc=",
        "DP2ldv9LKeozw6/a7tG9Y362VLKKBDAvyrX9fbB4Acw=",
        "JWueiCXl03CkrgBdCQHqKRl34pJ/XPjj5yZg3QlRnts=",
    ]
    assert b64(proof_hashes(consistency_ranges(3, 7), node)) == [
        "BJ19zbVrz+vTEzBMmDnxlqPUtu873AsIKY+TrIGR8Kg=",
        "J0ebarMh0u5HdFL2i6UndI6GPK/o+9HfK/idFXDRtpc=",
        "LyelCCwdQq+kiKw1Cp/EOQwIT1T3Hs3/hZ6Y24QptHk=",
        "5CnFtcyqlSPDcpfxhGdm+QMTfoIZXFGZ5r5XEw0QBsg=",
    ]


def test_the_example_cosignature_reproduces_and_verifies() -> None:
    note = Note.parse(VECTOR_CHECKPOINT)
    line = cosign(note, WITNESS, 1767225600).line()
    assert line == (
        "\u2014 witness.example.org/w1 lD21owAAAABpVbkAvXZseDxK6HtWILGKkr+fzVO/Jl2WboqTz2F+"
        "k3GoAL7+DMT+O2NupKNSOKYMeWr3THyNxK64NdJ26Xuk9lmQCA==\n"
    )
    cosigned = Note.parse(VECTOR_CHECKPOINT + line.encode())
    assert cosigned_by(cosigned, Verifier.parse(WITNESS.verifier.vkey())) == 1767225600


# -- notes --------------------------------------------------------------------------------


def test_a_checkpoint_opens_only_under_the_logs_key() -> None:
    checkpoint, _ = open_checkpoint(VECTOR_CHECKPOINT, Verifier.parse(LOG.verifier.vkey()))
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 7)
    other = Signer(ORIGIN, bytes(range(2, 34))).verifier
    with pytest.raises(NoteError, match="not signed by the log's key"):
        open_checkpoint(VECTOR_CHECKPOINT, other)


@pytest.mark.parametrize("position", range(0, len(VECTOR_CHECKPOINT) - 1, 7))
def test_a_checkpoint_changed_anywhere_does_not_open(position: int) -> None:
    changed = bytearray(VECTOR_CHECKPOINT)
    changed[position] ^= 0x01
    with pytest.raises(NoteError):
        open_checkpoint(bytes(changed), LOG.verifier)


def test_a_verifier_key_whose_id_does_not_match_is_refused() -> None:
    name, _, key = LOG.verifier.vkey().split("+", 2)
    with pytest.raises(NoteError, match="id does not match"):
        Verifier.parse(f"{name}+00000000+{key}")


def test_a_checkpoint_with_a_leading_zero_in_its_size_is_malformed() -> None:
    with pytest.raises(NoteError):
        Checkpoint.from_body(f"{ORIGIN}\n07\n{'A' * 43}=\n".encode())


# -- proofs, for every tree up to 1,000 leaves --------------------------------------------

sizes = st.integers(min_value=1, max_value=1000)


@settings(max_examples=150, deadline=None)
@given(size=sizes, data=st.data())
def test_every_inclusion_proof_verifies(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size)
    index = data.draw(st.integers(0, size - 1))
    proof = proof_hashes(inclusion_ranges(index, size), nodes_of(leaves))
    verify_inclusion(index, size, leaf_hash(leaves[index]), proof, tree_root(leaves))


@settings(max_examples=150, deadline=None)
@given(size=sizes, data=st.data())
def test_every_consistency_proof_verifies(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size)
    old = data.draw(st.integers(0, size))
    proof = proof_hashes(consistency_ranges(old, size), nodes_of(leaves))
    verify_consistency(old, size, tree_root(leaves[:old]), tree_root(leaves), proof)


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(size=st.integers(2, 1000), data=st.data())
def test_a_single_bit_changed_in_an_inclusion_proof_is_refused(
    size: int, data: st.DataObject
) -> None:
    leaves = leaves_of(size)
    index = data.draw(st.integers(0, size - 1))
    proof = proof_hashes(inclusion_ranges(index, size), nodes_of(leaves))
    leaf, root = leaf_hash(leaves[index]), tree_root(leaves)
    what = data.draw(st.sampled_from(["proof", "leaf", "root", "index"]))
    bit = data.draw(st.integers(0, 255))
    if what == "proof":
        at = data.draw(st.integers(0, len(proof) - 1))
        proof[at] = _flip(proof[at], bit)
    elif what == "leaf":
        leaf = _flip(leaf, bit)
    elif what == "root":
        root = _flip(root, bit)
    else:
        index ^= 1 << data.draw(st.integers(0, size.bit_length()))
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, proof, root)


@settings(max_examples=150, deadline=None)
@given(size=st.integers(2, 1000), data=st.data())
def test_a_single_bit_changed_in_a_consistency_proof_is_refused(
    size: int, data: st.DataObject
) -> None:
    leaves = leaves_of(size)
    old = data.draw(st.integers(1, size - 1))
    proof = proof_hashes(consistency_ranges(old, size), nodes_of(leaves))
    old_root, new_root = tree_root(leaves[:old]), tree_root(leaves)
    what = data.draw(st.sampled_from(["proof", "old_root", "new_root"]))
    bit = data.draw(st.integers(0, 255))
    if what == "proof":
        at = data.draw(st.integers(0, len(proof) - 1))
        proof[at] = _flip(proof[at], bit)
    elif what == "old_root":
        old_root = _flip(old_root, bit)
    else:
        new_root = _flip(new_root, bit)
    with pytest.raises(ProofError):
        verify_consistency(old, size, old_root, new_root, proof)


# A size is never taken alone: it is signed, with its root, in a checkpoint. Proofs for
# trees of one shape (leaf 0 of 5 and of 7, say) are the same hashes, so a size changed
# beside an unchanged root can pass the RFC's algorithms (Go's tlog accepts it too); what
# refuses it is the signature over the size and root together.


@settings(max_examples=150, deadline=None)
@given(size=st.integers(2, 1000), data=st.data())
def test_a_single_bit_changed_in_a_signed_size_is_refused(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size)
    index = data.draw(st.integers(0, size - 1))
    checkpoint = sign_note(Checkpoint(ORIGIN, size, tree_root(leaves)).body(), LOG).encode()
    proof = proof_hashes(inclusion_ranges(index, size), nodes_of(leaves))
    changed = size ^ (1 << data.draw(st.integers(0, size.bit_length())))
    forged = checkpoint.replace(f"\n{size}\n".encode(), f"\n{changed}\n".encode(), 1)
    check_receipt(receipt_for(index, proof, checkpoint), leaves[index], LOG.verifier)
    with pytest.raises(ReceiptError):
        check_receipt(receipt_for(index, proof, forged), leaves[index], LOG.verifier)


@settings(max_examples=150, deadline=None)
@given(size=st.integers(2, 1000), data=st.data())
def test_a_consistency_proof_for_another_old_size_is_refused(
    size: int, data: st.DataObject
) -> None:
    leaves = leaves_of(size)
    old = data.draw(st.integers(1, size - 1))
    other = data.draw(st.integers(1, size - 1).filter(lambda n: n != old))
    proof = proof_hashes(consistency_ranges(old, size), nodes_of(leaves))
    with pytest.raises(ProofError):
        verify_consistency(other, size, tree_root(leaves[:other]), tree_root(leaves), proof)


def test_from_the_empty_tree_only_the_empty_proof_is_accepted() -> None:
    leaves = leaves_of(5)
    verify_consistency(0, 5, EMPTY_ROOT, tree_root(leaves), [])
    with pytest.raises(ProofError):
        verify_consistency(0, 5, EMPTY_ROOT, tree_root(leaves), [tree_root(leaves)])
    with pytest.raises(ProofError):
        verify_consistency(0, 5, tree_root(leaves[:1]), tree_root(leaves), [])


def test_two_roots_for_one_size_are_a_fork() -> None:
    with pytest.raises(ProofError, match="forked"):
        verify_consistency(5, 5, tree_root(leaves_of(5)), tree_root(leaves_of(6)[1:]), [])


def test_a_smaller_tree_never_extends_a_larger_one() -> None:
    with pytest.raises(ProofError):
        verify_consistency(6, 5, tree_root(leaves_of(6)), tree_root(leaves_of(5)), [])


def test_an_empty_proof_between_different_sizes_is_refused() -> None:
    with pytest.raises(ProofError):
        verify_consistency(4, 8, tree_root(leaves_of(4)), tree_root(leaves_of(8)), [])


# -- receipts ------------------------------------------------------------------------------


def test_a_receipt_proves_its_entry_and_no_other() -> None:
    leaves = leaves_of(7)
    proof = proof_hashes(inclusion_ranges(5, 7), nodes_of(leaves))
    receipt = receipt_for(5, proof, VECTOR_CHECKPOINT)
    assert receipt.startswith(b"c2sp.org/tlog-proof@v1\nindex 5\n")
    assert check_receipt(receipt, leaves[5], LOG.verifier).size == 7
    with pytest.raises(ReceiptError):
        check_receipt(receipt, leaves[4], LOG.verifier)
    with pytest.raises(ReceiptError):
        check_receipt(receipt.replace(b"index 5", b"index 4"), leaves[4], LOG.verifier)


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(st.integers(1, 40), min_size=1, max_size=12))
def test_a_tree_grown_in_any_chunks_holds_every_subtree_of_the_tree_built_at_once(
    chunks: list[int],
) -> None:
    leaves = leaves_of(sum(chunks))
    stored: dict[Node, Hash] = {}
    size = 0
    for chunk in chunks:
        edge = {n: stored[n] for n in frontier(size)}
        stored.update(grown(size, edge, [leaf_hash(x) for x in leaves[size : size + chunk]]))
        size += chunk
    node = nodes_of(leaves)
    complete = {(lv, i) for lv in range(size.bit_length()) for i in range(size >> lv)}
    assert set(stored) == complete
    assert all(stored[n] == node(n) for n in complete)
