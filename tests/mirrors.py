"""Mirrors of the log's tiles, as a mirror fetching them from ``/log/`` would keep them:
made from leaves (any log) or from a ledger (what the log serves), for the auditor's
checks of a mirror (``audit verify --tiles``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import Connection

from pipeline.ledger.records.chain import ENTRY_FIELDS, entry_leaf
from pipeline.ledger.storage.tree import leaves, tile_hashes
from pipeline.transparency.merkle import Hash, hashes_root, leaf_hash
from pipeline.transparency.mirror import MirrorFolder
from pipeline.transparency.tiles import TILE_WIDTH, Tile, bundle, tiles_for


def entry_leaves(n: int, first: int = 0) -> list[bytes]:
    """``n`` leaves of entries as the ledger writes them (seq ``first + 1`` on), every
    field but the number empty: a log as large as wanted, made in no time."""
    empty = dict.fromkeys(ENTRY_FIELDS)
    return [entry_leaf({**empty, "seq": first + i + 1, "kind": "decision"}) for i in range(n)]


def write_tile(folder: Path, tile: Tile, data: bytes) -> None:
    path = folder / tile.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def mirror_of_leaves(folder: Path, leaves_: Sequence[bytes], sizes: Iterable[int]) -> Path:
    """``folder`` holding the tiles of a log of ``leaves_`` as fetched at each of
    ``sizes`` in turn: the full tiles, and the partial ones of each size."""
    levels: list[list[Hash]] = [[leaf_hash(leaf) for leaf in leaves_]]
    while len(levels[-1]) >= TILE_WIDTH:
        below = levels[-1]
        levels.append(
            [hashes_root(below[i : i + TILE_WIDTH]) for i in range(0, len(below), TILE_WIDTH)]
        )
        if len(below) % TILE_WIDTH:
            levels[-1].pop()  # an incomplete subtree is no node of a tile
    for size in sizes:
        for tile in tiles_for(size):
            if tile.entries:
                start, end = tile.leaves()
                write_tile(folder, tile, bundle(leaves_[start:end]))
            else:
                hashes = levels[tile.level or 0][tile.first : tile.first + tile.width]
                write_tile(folder, tile, b"".join(hashes))
    return folder


def mirror_of_ledger(folder: Path, connection: Connection, sizes: Iterable[int]) -> Path:
    """``folder`` holding the tiles the ledger serves at each of ``sizes`` in turn."""
    for size in sizes:
        for tile in tiles_for(size):
            if tile.entries:
                start, end = tile.leaves()
                write_tile(folder, tile, bundle(leaves(connection, start, end), start))
            else:
                write_tile(folder, tile, tile_hashes(connection, tile))
    return folder


class CountingMirror:
    """A mirror folder that remembers every tile read from it, in order."""

    def __init__(self, root: Path) -> None:
        self.folder = MirrorFolder(root)
        self.tiles_read: list[Tile] = []

    def read(self, tile: Tile) -> bytes:
        self.tiles_read.append(tile)
        return self.folder.read(tile)
