"""C2SP tlog-tiles as the spec writes them: paths, which tiles a tree is served as, entry
bundles, and a tree's root rebuilt from its tiles (pipeline.transparency.tiles)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.transparency.merkle import leaf_hash, tree_root
from pipeline.transparency.tiles import (
    MAX_BUNDLED,
    BadTilePath,
    EntryTooLarge,
    Tile,
    bundle,
    parse_tile_path,
    root_from_tiles,
    tiles_for,
    unbundle,
)
from tests.unit.test_transparency import leaves_of, nodes_of


def test_an_index_is_written_in_groups_of_three_all_but_the_last_with_x() -> None:
    assert Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert Tile(2, 5, 17).path == "tile/2/005.p/17"
    assert Tile(None, 1000).path == "tile/entries/x001/000"


@pytest.mark.parametrize(
    "path",
    ["tile/0/x001/x234/067", "tile/63/000", "tile/entries/x002/000.p/255", "tile/1/999.p/1"],
)
def test_a_canonical_path_parses_to_the_tile_that_writes_it(path: str) -> None:
    assert parse_tile_path(path).path == path


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/5",  # not three digits
        "tile/0/x000/005",  # a leading zero group
        "tile/0/001/234",  # a group without x
        "tile/01/000",  # a level with a leading zero
        "tile/64/000",  # no such level
        "tile/0/000.p/256",  # a partial as wide as a full tile
        "tile/0/000.p/0",
        "tile/0/000.p/007",
        "tile/data/000",
        "tile/0/",
        "tile/0/x001/x002/x003/x004/x005/x006/x007/000",
    ],
)
def test_a_path_the_spec_does_not_allow_is_refused(path: str) -> None:
    with pytest.raises(BadTilePath):
        parse_tile_path(path)


def test_a_tree_of_70000_is_served_as_the_spec_example_says() -> None:
    by_level: dict[int | None, list[Tile]] = {}
    for tile in tiles_for(70_000):
        by_level.setdefault(tile.level, []).append(tile)
    assert [t.width for t in by_level[0]] == [256] * 273 + [112]
    assert [t.width for t in by_level[1]] == [256, 17]
    assert [t.width for t in by_level[2]] == [1]
    assert by_level[None] == [Tile(None, t.index, t.width) for t in by_level[0]]


def test_a_tree_of_256_is_one_full_tile_and_a_partial_tile_of_width_one_above() -> None:
    assert tiles_for(256) == [Tile(None, 0), Tile(0, 0), Tile(1, 0, 1)]


def test_a_tile_covers_the_leaves_its_hashes_span() -> None:
    assert Tile(0, 3, 10).leaves() == (768, 778)
    assert Tile(1, 1, 2).leaves() == (65536 + 0, 65536 + 512)


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_a_bundle_gives_back_its_entries(leaves: list[bytes]) -> None:
    assert unbundle(bundle(leaves)) == leaves


def test_a_bundle_prefixes_each_entry_with_its_length_big_endian() -> None:
    assert bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"


def test_an_entry_longer_than_a_uint16_cannot_be_bundled_and_is_named() -> None:
    with pytest.raises(EntryTooLarge) as refused:
        bundle([b"a", b"x" * (MAX_BUNDLED + 1)], first=512)
    assert refused.value.index == 513


def test_a_bundle_cut_short_is_refused() -> None:
    with pytest.raises(ValueError, match="entry 1"):
        unbundle(bundle([b"one", b"two"])[:-1])


def tiles_of(leaves: list[bytes]) -> dict[Tile, bytes]:
    node = nodes_of(leaves)
    return {
        tile: b"".join(node(n) for n in tile.nodes())
        for tile in tiles_for(len(leaves))
        if not tile.entries
    }


@pytest.mark.parametrize("size", [1, 255, 256, 257, 600, 65536 + 300])
def test_the_root_rebuilt_from_a_trees_tiles_is_its_root(size: int) -> None:
    leaves = leaves_of(size)
    assert root_from_tiles(size, tiles_of(leaves)) == tree_root(leaves)


def test_a_full_tile_changed_is_refused_by_the_tile_above() -> None:
    fetched = tiles_of(leaves_of(600))
    fetched[Tile(0, 1)] = leaf_hash(b"forged") + fetched[Tile(0, 1)][32:]
    with pytest.raises(ValueError, match="tile/0/001 does not hash"):
        root_from_tiles(600, fetched)


def test_a_partial_tile_changed_changes_the_root_rebuilt_from_it() -> None:
    leaves = leaves_of(600)
    fetched = tiles_of(leaves)
    fetched[Tile(0, 2, 88)] = leaf_hash(b"forged") + fetched[Tile(0, 2, 88)][32:]
    assert root_from_tiles(600, fetched) != tree_root(leaves)


def test_a_tile_of_the_wrong_length_is_refused() -> None:
    fetched = tiles_of(leaves_of(300))
    fetched[Tile(0, 1, 44)] = fetched[Tile(0, 1, 44)][:-1]
    with pytest.raises(ValueError, match=r"tile/0/001\.p/44"):
        root_from_tiles(300, fetched)
