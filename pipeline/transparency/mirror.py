"""Checking a mirror of the log's tiles (C2SP tlog-tiles) from a checkpoint already
verified (``sharing-audit audit verify --tiles DIR``; issue 33).

An auditor who mirrors the log returns each month with a new signed checkpoint. Only what
came after the checkpoint they verified last time is read: the tiles on its right edge
(at most one per tile level, from which the old tree's frontier is rebuilt and checked
against the old root), the entry bundles and hash tiles of the new entries (each entry
hashed to its level-0 hash, each node the new entries complete at a tile level compared
with the mirror's), and the few hash tiles an RFC 6962 consistency proof from the old
tree is made of. The new tree is grown from the old frontier, so it extends the old tree
by construction when its root is the new checkpoint's; the proof made from the mirror's
tiles is then checked too, as any client of the mirror would. Memory is a tile per
level and one bundle, whatever the log's size; time is proportional to the new entries.

Nothing here opens a database, a broker or the web: the mirror is a folder of files (or
anything that reads a tile), and whatever it holds is untrusted until checked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.plural import counted
from pipeline.transparency.merkle import (
    Hash,
    Node,
    ProofError,
    consistency_ranges,
    frontier,
    grown,
    hashes_root,
    leaf_hash,
    proof_hashes,
    range_hash,
    verify_consistency,
)
from pipeline.transparency.note import Checkpoint
from pipeline.transparency.tiles import MAX_BUNDLED, TILE_HEIGHT, TILE_WIDTH, Tile, unbundle

#: The most bytes a hash tile or an entry bundle can be: a file larger is not read whole.
_MAX_TILE = 32 * TILE_WIDTH
_MAX_BUNDLE = (2 + MAX_BUNDLED) * TILE_WIDTH

#: Why a leaf is not the entry at its index (None when it is): the ledger's own rule for
#: its entries, given by whoever knows them (:func:`pipeline.ledger.records.chain.leaf_fault`).
EntryFault = Callable[[int, bytes], str | None]


class MirrorFault(Exception):
    """The mirror does not hold the log the checkpoints sign; the message names where."""


class TileSource(Protocol):
    """Where a mirror's tiles are read from: a tile's bytes, or :class:`MirrorFault`
    naming the tile when it cannot be read."""

    def read(self, tile: Tile) -> bytes: ...


@dataclass(frozen=True, slots=True)
class MirrorFolder:
    """A mirror kept as files at the tiles' paths under ``root`` (``tile/0/000``, ...),
    as a mirror fetching them from the log's ``/log/`` would write them. A path that
    leads outside ``root`` (a link), a file larger than any tile, or a folder where a
    tile should be, is a fault of the mirror, named, never followed."""

    root: Path

    def read(self, tile: Tile) -> bytes:
        path = self.root / tile.path
        where = f"{tile.path} in the mirror {self.root}"
        try:
            resolved = path.resolve(strict=True)
            if not resolved.is_relative_to(self.root.resolve(strict=True)):
                raise MirrorFault(f"{where} leads outside the mirror (to {resolved})")
            if not stat.S_ISREG(resolved.stat().st_mode):  # a folder, or a pipe never ending
                raise MirrorFault(f"{where} is not a file")
            with resolved.open("rb") as file:
                # As much as the file holds, no more than a tile can: read(n) would take
                # n bytes of memory first, whatever the file holds.
                held = os.fstat(file.fileno()).st_size
                data = file.read(min(held, _limit(tile)) + 1)
        except FileNotFoundError:
            raise MirrorFault(f"the mirror {self.root} has no {tile.path}") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise MirrorFault(f"cannot read {where}: {reason}") from None
        if len(data) > _limit(tile):
            raise MirrorFault(f"{where} is larger than any tile can be ({_limit(tile):,} bytes)")
        return data


def _limit(tile: Tile) -> int:
    return _MAX_BUNDLE if tile.entries else _MAX_TILE


@dataclass(frozen=True, slots=True)
class MirrorCheck:
    """What checking the mirror read: the entries after the old checkpoint, in how many
    entry bundles, and how many hash tiles (counted, not listed: a list would grow with
    the entries)."""

    old: int
    new: int
    bundles: int
    hash_tiles: int

    @property
    def entries(self) -> int:
        return self.new - self.old


def check_mirror(
    source: TileSource,
    old: Checkpoint,
    new: Checkpoint,
    entry_fault: EntryFault | None = None,
    kept: Checkpoint | None = None,
) -> MirrorCheck:
    """Check that the mirror in ``source`` holds the tree ``new`` signs, grown from the
    one ``old`` signs (verified before, ``old.size`` at most ``new.size``): the old
    tree's frontier from its tiles has ``old``'s root; each entry after it is in its
    bundle, hashes to its level-0 hash and (given ``entry_fault``) is the entry its index
    holds; every node they complete at a tile level is the mirror's; the grown tree has
    ``new``'s root; and a consistency proof from ``old`` made of the mirror's tiles leads
    to both roots; and so does one from ``kept`` (another checkpoint the auditor holds,
    at most ``new.size`` too), if given. :class:`MirrorFault` naming the first fault."""
    if max(old.size, kept.size if kept else 0) > new.size:
        raise ValueError(f"a tree of {new.size} cannot extend a larger one")
    tiles = _Tiles(source, new.size)
    edge = {node: tiles.node(node) for node in frontier(old.size)}
    if range_hash([edge[node] for node in frontier(old.size)]) != old.root:
        raise MirrorFault(
            f"the mirror's tree at size {old.size} does not have the root of the checkpoint "
            f"of size {old.size} verified before: the log's history up to it was rewritten "
            "(a fork), or the mirror's copy of it was"
        )
    if new.size > old.size:
        edge = _grown_from(tiles, old.size, edge, entry_fault)
    if range_hash([edge[node] for node in frontier(new.size)]) != new.root:
        raise MirrorFault(
            f"the tree the mirror's {new.size - old.size} entries after size {old.size} grow "
            f"does not have the root of the checkpoint of size {new.size}: the mirror does "
            "not hold the log's entries"
        )
    _tiles_consistent(tiles, old, new)
    if kept is not None:
        _tiles_consistent(tiles, kept, new)
    return MirrorCheck(old.size, new.size, tiles.bundles, tiles.hash_tiles)


def _tiles_consistent(tiles: _Tiles, older: Checkpoint, newer: Checkpoint) -> None:
    """Check the RFC 6962 consistency proof from ``older`` to ``newer`` that the mirror's
    tiles make (as Go's ``tlog.ProveTree`` over them would), or :class:`MirrorFault`."""
    try:
        proof = proof_hashes(consistency_ranges(older.size, newer.size), tiles.node)
        verify_consistency(older.size, newer.size, older.root, newer.root, proof)
    except ProofError as exc:
        raise MirrorFault(
            f"the mirror's tiles do not prove the checkpoint of size {newer.size} extends the "
            f"one of size {older.size}: {exc}"
        ) from None


def _grown_from(
    tiles: _Tiles, size: int, edge: dict[Node, Hash], entry_fault: EntryFault | None
) -> dict[Node, Hash]:
    """The frontier of the tree grown from ``edge`` (the frontier at ``size``) by the
    mirror's entries up to ``tiles.size``, each bundle's entries checked as they come."""
    for index in range(size // TILE_WIDTH, -(-tiles.size // TILE_WIDTH)):
        first = index * TILE_WIDTH
        hashes = tiles.entry_hashes(index, size - first, entry_fault)
        made = grown(size, edge, hashes)
        known = {**edge, **dict(made)}
        size += len(hashes)
        edge = {node: known[node] for node in frontier(size)}
        for (level, at), digest in made:
            if level and level % TILE_HEIGHT == 0 and tiles.hash_at(level, at) != digest:
                where = tiles.path_of(level, at)
                raise MirrorFault(
                    f"{where} holds another hash for level {level}, index {at} than the "
                    f"entries under it make (leaves {at << level} to {((at + 1) << level) - 1})"
                )
    return edge


class _Tiles:
    """The mirror's tiles of a tree of ``size`` leaves, each read once while it is the
    one wanted at its level (a tile per level is held, no more), its length checked."""

    def __init__(self, source: TileSource, size: int) -> None:
        self.source = source
        self.size = size
        self.bundles = 0
        self.hash_tiles = 0
        self._held: dict[int | None, tuple[int, list[Hash]]] = {}

    def tile(self, level: int | None, index: int) -> Tile:
        """The tile at ``level`` (None for entry bundles) and ``index`` of this tree:
        full, or as wide as the tree makes it."""
        at_level = self.size >> (TILE_HEIGHT * (level or 0))
        return Tile(level, index, min(TILE_WIDTH, at_level - index * TILE_WIDTH))

    def path_of(self, level: int, index: int) -> str:
        return self.tile(level // TILE_HEIGHT, (index << level % TILE_HEIGHT) // TILE_WIDTH).path

    def _data(self, tile: Tile) -> bytes:
        if tile.entries:
            self.bundles += 1
        else:
            self.hash_tiles += 1
        return self.source.read(tile)

    def hashes(self, level: int, index: int) -> list[Hash]:
        """The hashes of the hash tile at tile level ``level``, index ``index``."""
        held = self._held.get(level)
        if held is not None and held[0] == index:
            return held[1]
        tile = self.tile(level, index)
        data = self._data(tile)
        if len(data) != 32 * tile.width:
            raise MirrorFault(
                f"{tile.path} is {len(data):,} bytes, not the {32 * tile.width:,} of "
                f"{tile.width} hashes"
            )
        hashes = [data[i : i + 32] for i in range(0, len(data), 32)]
        self._held[level] = (index, hashes)
        return hashes

    def hash_at(self, level: int, index: int) -> Hash:
        """The hash of the node at Merkle ``level`` (a multiple of the tile height)."""
        return self.hashes(level // TILE_HEIGHT, index // TILE_WIDTH)[index % TILE_WIDTH]

    def node(self, node: Node) -> Hash:
        """The hash of any perfect subtree, from the hashes of the tile below it."""
        level, index = node
        tile_level, sub = divmod(level, TILE_HEIGHT)
        first = index << sub
        hashes = self.hashes(tile_level, first // TILE_WIDTH)
        at = first % TILE_WIDTH
        return hashes_root(hashes[at : at + (1 << sub)])

    def entry_hashes(self, index: int, skip: int, entry_fault: EntryFault | None) -> list[Hash]:
        """The leaf hashes of the entries of bundle ``index`` after its first ``skip``
        (those the old tree holds), each checked against the level-0 tile."""
        tile = self.tile(None, index)
        data = self._data(tile)
        try:
            leaves = unbundle(data)
        except ValueError as exc:
            raise MirrorFault(f"{tile.path} is not an entry bundle: {exc}") from None
        if len(leaves) != tile.width:
            held = counted(len(leaves), "entry", "entries")
            raise MirrorFault(f"{tile.path} holds {held}, not {tile.width}")
        expected = self.hashes(0, index)
        first = index * TILE_WIDTH
        out = []
        for k in range(max(skip, 0), tile.width):
            digest = leaf_hash(leaves[k])
            if digest != expected[k]:
                raise MirrorFault(
                    f"entry {first + k + 1} in {tile.path} does not hash to its hash in "
                    f"{self.tile(0, index).path}: one of them was changed"
                )
            fault = entry_fault(first + k, leaves[k]) if entry_fault is not None else None
            if fault is not None:
                raise MirrorFault(f"entry {first + k + 1} in {tile.path}: {fault}")
            out.append(digest)
        return out
