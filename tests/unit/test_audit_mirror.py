"""Checking a mirror of the log's tiles from a checkpoint already verified (issue 33):
only the right edge of the old tree and what follows it is read, and a mirror or a log
that is not what the checkpoints sign is refused, naming where
(pipeline.transparency.mirror, pipeline.transparency.auditor.accept_mirror)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.ledger.records.chain import leaf_fault
from pipeline.transparency.auditor import STATE_FILE, Refused, accept_mirror
from pipeline.transparency.merkle import tree_root
from pipeline.transparency.mirror import MirrorCheck, MirrorFolder
from pipeline.transparency.note import Checkpoint, Signer, sign_note
from pipeline.transparency.tiles import TILE_WIDTH, Tile, bundle
from tests.mirrors import CountingMirror, entry_leaves, mirror_of_leaves, write_tile
from tests.unit.test_auditor import LOG, ORIGIN, WITNESS

OLD, NEW = 2600, 3000  # the old tree ends inside a tile; the new one four bundles on


def signed(leaves: list[bytes], signer: Signer = LOG) -> bytes:
    body = Checkpoint(ORIGIN, len(leaves), tree_root(leaves)).body()
    return sign_note(body, signer).encode()


def checked(
    folder: Path, leaves: list[bytes], old: int, state: Path
) -> tuple[Checkpoint, Checkpoint | None, MirrorCheck]:
    """The mirror in ``folder`` checked from the checkpoint of ``leaves[:old]``."""
    start = signed(leaves[:old])
    return accept_mirror(
        signed(leaves), LOG.verifier, state, MirrorFolder(folder), start, leaf_fault
    )


@pytest.fixture
def log_leaves() -> list[bytes]:
    return entry_leaves(NEW)


@pytest.fixture
def mirror(tmp_path: Path, log_leaves: list[bytes]) -> Path:
    """A mirror kept since the log was of size OLD, now of size NEW."""
    return mirror_of_leaves(tmp_path / "mirror", log_leaves, [OLD, NEW])


def refusal(folder: Path, leaves: list[bytes], old: int, state: Path) -> str:
    with pytest.raises(Refused) as refused:
        checked(folder, leaves, old, state)
    return str(refused.value)


# -- what is read ----------------------------------------------------------------------------


def test_a_grown_mirror_is_accepted_from_the_old_checkpoint_and_the_new_one_kept(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    new, old, read = checked(mirror, log_leaves, OLD, tmp_path / "state")
    assert old is not None
    assert (new.size, old.size, read.entries) == (NEW, OLD, NEW - OLD)
    assert (tmp_path / "state" / STATE_FILE).read_bytes() == signed(log_leaves)


def test_only_the_bundles_from_the_old_right_edge_on_are_read(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    counting = CountingMirror(mirror)
    *_, read = accept_mirror(
        signed(log_leaves), LOG.verifier, tmp_path, counting, signed(log_leaves[:OLD]), leaf_fault
    )
    bundles = [t.index for t in counting.tiles_read if t.entries]
    level_0 = sorted({t.index for t in counting.tiles_read if t.level == 0})
    new_tiles = list(range(OLD // TILE_WIDTH, -(-NEW // TILE_WIDTH)))  # 10 (partial) to 11
    assert bundles == new_tiles and level_0 == new_tiles  # each bundle once
    assert (read.bundles, read.hash_tiles) == (len(bundles), len(counting.tiles_read) - 2)


def test_a_large_old_tree_costs_no_more_reads_than_a_small_one(tmp_path: Path) -> None:
    """Time proportional to the new entries: 400 new entries after 70,000 read the same
    bundles' worth as 400 after 2,600, and a hash tile per level or two more."""
    reads = {}
    for old in (2_600, 70_000):
        leaves = entry_leaves(old + 400)
        folder = mirror_of_leaves(tmp_path / str(old), leaves, [old, old + 400])
        counting = CountingMirror(folder)
        accept_mirror(
            signed(leaves),
            LOG.verifier,
            tmp_path / f"state-{old}",
            counting,
            signed(leaves[:old]),
            leaf_fault,
        )
        bundles = [t for t in counting.tiles_read if t.entries]
        assert min(t.index for t in bundles) == old // TILE_WIDTH
        reads[old] = (len(bundles), len(counting.tiles_read) - len(bundles))
    assert reads[70_000][0] == reads[2_600][0]
    assert reads[70_000][1] <= reads[2_600][1] + 4


def test_with_nothing_verified_before_every_entry_is_read(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    counting = CountingMirror(mirror)
    _, old, read = accept_mirror(signed(log_leaves), LOG.verifier, tmp_path, counting)
    assert old is None and read.entries == NEW
    assert len([t for t in counting.tiles_read if t.entries]) == -(-NEW // TILE_WIDTH)


def test_the_kept_checkpoint_is_where_the_next_check_starts(
    tmp_path: Path, log_leaves: list[bytes]
) -> None:
    folder = mirror_of_leaves(tmp_path / "mirror", log_leaves, [OLD])
    state = tmp_path / "state"
    accept_mirror(signed(log_leaves[:OLD]), LOG.verifier, state, MirrorFolder(folder))
    mirror_of_leaves(folder, log_leaves, [NEW])
    _, old, read = accept_mirror(
        signed(log_leaves), LOG.verifier, state, MirrorFolder(folder), None, leaf_fault
    )
    assert old is not None and old.size == OLD and read.entries == NEW - OLD


# -- a log that is not what was verified -------------------------------------------------------


def test_a_mirror_of_a_log_whose_old_part_was_rewritten_is_refused_as_a_fork(
    tmp_path: Path, log_leaves: list[bytes]
) -> None:
    rewritten = [*log_leaves]
    rewritten[5] = entry_leaves(1, first=5)[0].replace(b'"decision"', b'"erasure"')
    folder = mirror_of_leaves(tmp_path / "mirror", rewritten, [NEW])
    with pytest.raises(Refused) as refused:
        accept_mirror(
            signed(rewritten),
            LOG.verifier,
            tmp_path,
            MirrorFolder(folder),
            signed(log_leaves[:OLD]),
            leaf_fault,
        )
    assert f"tree at size {OLD} does not have the root of the checkpoint" in str(refused.value)
    assert "a fork" in str(refused.value)
    assert not (tmp_path / STATE_FILE).exists()


def test_a_new_entry_the_log_numbered_out_of_its_chain_is_named(tmp_path: Path) -> None:
    """The log dropped entry 2,701 and signed what remained: the tiles agree with the
    checkpoint, but the chain does not continue."""
    leaves = entry_leaves(2_700) + entry_leaves(NEW - 2_700, first=2_701)
    folder = mirror_of_leaves(tmp_path / "mirror", leaves, [NEW])
    said = refusal(folder, leaves, OLD, tmp_path / "state")
    assert "entry 2701 in tile/entries/010" in said and "holds seq 2702" in said
    assert "the chain is broken" in said


def test_a_first_new_entry_not_following_the_old_last_is_named(tmp_path: Path) -> None:
    leaves = entry_leaves(OLD) + entry_leaves(NEW - OLD, first=OLD + 1)
    folder = mirror_of_leaves(tmp_path / "mirror", leaves, [NEW])
    said = refusal(folder, leaves, OLD, tmp_path / "state")
    assert f"entry {OLD + 1} in" in said and f"follows seq {OLD}" in said


def test_a_new_entry_edited_in_the_mirror_is_named_with_its_bundle(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    edited = [*log_leaves]
    edited[2_800] = edited[2_800].replace(b'"decision"', b'"decisiom"')
    write_tile(mirror, Tile(None, 10), bundle(edited[2_560:2_816]))
    said = refusal(mirror, log_leaves, OLD, tmp_path / "state")
    assert "entry 2801 in tile/entries/010 does not hash to its hash in tile/0/010" in said


def test_a_hash_tile_above_the_new_entries_changed_is_named(tmp_path: Path) -> None:
    leaves = entry_leaves(70_000)
    folder = mirror_of_leaves(tmp_path / "mirror", leaves, [69_000, 70_000])
    level_1 = folder / "tile/1/001.p/17"  # 70,000 >> 8 = 273: index 1, width 17
    level_1.write_bytes(level_1.read_bytes()[:-32] + bytes(32))
    said = refusal(folder, leaves, 69_000, tmp_path / "state")
    assert "tile/1/001.p/17 holds another hash for level 8, index 272" in said


def test_a_checkpoint_from_before_the_one_given_is_a_rollback(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    with pytest.raises(Refused) as refused:
        accept_mirror(
            signed(log_leaves[:OLD]),
            LOG.verifier,
            tmp_path,
            MirrorFolder(mirror),
            signed(log_leaves),
        )
    assert f"smaller than the {NEW} given with --from: the log was rolled back" in str(
        refused.value
    )


def test_a_checkpoint_from_before_the_one_kept_is_a_rollback_whatever_is_given(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    accept_mirror(signed(log_leaves), LOG.verifier, tmp_path, MirrorFolder(mirror))
    with pytest.raises(Refused) as refused:
        checked(mirror, log_leaves[:2_800], 2_000, tmp_path)
    assert f"smaller than the {NEW} kept: the log was rolled back" in str(refused.value)


def test_a_kept_checkpoint_the_new_one_does_not_extend_is_refused(
    tmp_path: Path, log_leaves: list[bytes]
) -> None:
    """Checked from an older checkpoint given, the new one must still extend the one
    kept: a fork the auditor already saw the other side of."""
    forked = entry_leaves(2_800)
    forked[2_700] = forked[2_700].replace(b'"decision"', b'"erasure"')
    other = MirrorFolder(mirror_of_leaves(tmp_path / "forked", forked, [2_800]))
    accept_mirror(signed(forked), LOG.verifier, tmp_path / "state", other)
    folder = mirror_of_leaves(tmp_path / "mirror", log_leaves, [NEW])
    said = refusal(folder, log_leaves, OLD, tmp_path / "state")
    assert f"do not prove the checkpoint of size {NEW} extends the one of size 2800" in said


def test_a_checkpoint_signed_by_another_key_is_refused(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    other = Signer(ORIGIN, bytes(range(5, 37)))
    with pytest.raises(Refused, match="not signed by the log's key"):
        accept_mirror(signed(log_leaves, other), LOG.verifier, tmp_path, MirrorFolder(mirror))
    with pytest.raises(Refused, match="the checkpoint given with --from: not signed"):
        accept_mirror(
            signed(log_leaves),
            LOG.verifier,
            tmp_path,
            MirrorFolder(mirror),
            signed(log_leaves[:OLD], other),
        )


# -- a poisoned mirror folder ------------------------------------------------------------------


def test_a_tile_leading_outside_the_mirror_is_refused_not_followed(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"x" * 32 * 184)
    tile = mirror / "tile/0/011.p/184"
    tile.unlink()
    os.symlink(outside, tile)
    said = refusal(mirror, log_leaves, OLD, tmp_path / "state")
    assert f"tile/0/011.p/184 in the mirror {mirror} leads outside the mirror" in said


def test_a_folder_of_tiles_leading_outside_the_mirror_is_refused(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    elsewhere = mirror_of_leaves(tmp_path / "elsewhere", log_leaves, [NEW])
    (mirror / "tile/entries").rename(tmp_path / "moved")
    os.symlink(elsewhere / "tile/entries", mirror / "tile/entries")
    said = refusal(mirror, log_leaves, OLD, tmp_path / "state")
    assert "tile/entries/010 in the mirror" in said and "leads outside the mirror" in said


@pytest.mark.parametrize(
    ("path", "data", "fault"),
    [
        ("tile/0/010", b"\x00" * 100, "tile/0/010 is 100 bytes, not the 8,192 of 256 hashes"),
        ("tile/0/010", b"\x00" * 9_000, "is larger than any tile can be (8,192 bytes)"),
        ("tile/entries/010", b"\x00\x05ab", "not an entry bundle: the bundle ends inside entry 0"),
        ("tile/entries/011.p/184", b"\x00\x00", "holds 1 entry, not 184"),
    ],
    ids=["hash-tile-short", "hash-tile-huge", "bundle-cut-short", "bundle-too-few"],
)
def test_a_tile_of_the_wrong_size_is_named(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path, path: str, data: bytes, fault: str
) -> None:
    write_tile(mirror, Tile(0, 0), b"")  # a tile never read may be anything
    (mirror / path).write_bytes(data)
    assert fault in refusal(mirror, log_leaves, OLD, tmp_path / "state")


def test_a_missing_tile_is_named(mirror: Path, log_leaves: list[bytes], tmp_path: Path) -> None:
    (mirror / "tile/entries/011.p/184").unlink()
    said = refusal(mirror, log_leaves, OLD, tmp_path / "state")
    assert f"the mirror {mirror} has no tile/entries/011.p/184" in said


@pytest.mark.parametrize("make", [Path.mkdir, os.mkfifo], ids=["folder", "pipe"])
def test_a_tile_that_is_no_file_is_named_not_read(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path, make: Callable[[Path], None]
) -> None:
    (mirror / "tile/entries/011.p/184").unlink()
    make(mirror / "tile/entries/011.p/184")
    said = refusal(mirror, log_leaves, OLD, tmp_path / "state")
    assert f"tile/entries/011.p/184 in the mirror {mirror} is not a file" in said


def test_the_witnesses_asked_for_must_have_cosigned_as_without_a_mirror(
    mirror: Path, log_leaves: list[bytes], tmp_path: Path
) -> None:
    with pytest.raises(Refused, match="0 of the witnesses given cosigned it; 1 must"):
        accept_mirror(
            signed(log_leaves),
            LOG.verifier,
            tmp_path,
            MirrorFolder(mirror),
            witnesses=[WITNESS.verifier],
            quorum=1,
        )
    assert not (tmp_path / STATE_FILE).exists()
