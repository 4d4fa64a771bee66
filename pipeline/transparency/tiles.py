"""C2SP tlog-tiles: the tree as tiles of 256 hashes and the entries as bundles of 256, at
fixed paths, so that a mirror can hold a full copy of the log and compute any proof
itself, checking each tile against a checkpoint it verified.

A tile at level L, index N holds the hashes of the perfect subtrees of 256**L leaves
numbered N*256 to N*256 + W - 1 (W = 256 for a full tile, 1 to 255 for a partial one); the
entry bundle at index N holds the leaves the level-0 tile at N hashes, each prefixed by
its length as a big-endian uint16. Paths: ``tile/<L>/<N>[.p/<W>]`` and
``tile/entries/<N>[.p/<W>]``, with N written in zero-padded groups of three digits, all but
the last prefixed by ``x`` (1234067 is ``x001/x234/067``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.transparency.merkle import Hash, Node, hashes_root, root_from

#: Levels of the Merkle tree a tile spans, and so the hashes in a full tile.
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
#: The largest entry an entry bundle can hold (its length prefix is a uint16).
MAX_BUNDLED = 0xFFFF
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
#: Index groups allowed in a path: indexes below 10**21, far beyond any ledger.
_MAX_GROUPS = 7


class BadTilePath(ValueError):
    """A tile path that is not one the spec allows; the message says what is wrong."""


class EntryTooLarge(ValueError):
    """An entry longer than an entry bundle can hold: ``index`` is its leaf index."""

    def __init__(self, index: int, length: int) -> None:
        super().__init__(
            f"leaf {index} is {length:,} bytes, more than the {MAX_BUNDLED:,} "
            "an entry bundle's length prefix can say"
        )
        self.index = index
        self.length = length


@dataclass(frozen=True, slots=True)
class Tile:
    """A hash tile (``level`` 0 to 63) or, with ``level`` None, an entry bundle."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def entries(self) -> bool:
        return self.level is None

    @property
    def path(self) -> str:
        """The tile's path under the log's prefix."""
        groups = f"{self.index:d}"
        groups = "0" * (-len(groups) % 3) + groups
        parts = [groups[i : i + 3] for i in range(0, len(groups), 3)]
        number = "/".join([*("x" + p for p in parts[:-1]), parts[-1]])
        partial = "" if self.width == TILE_WIDTH else f".p/{self.width}"
        return f"tile/{'entries' if self.level is None else self.level}/{number}{partial}"

    @property
    def hashed_level(self) -> int:
        """The Merkle level of the subtrees whose hashes the tile holds (0 for bundles)."""
        return 0 if self.level is None else self.level * TILE_HEIGHT

    @property
    def first(self) -> int:
        """The index, at :attr:`hashed_level`, of the tile's first subtree."""
        return self.index * TILE_WIDTH

    def nodes(self) -> list[Node]:
        """The perfect subtrees whose hashes the tile holds, in order."""
        return [(self.hashed_level, self.first + i) for i in range(self.width)]

    def leaves(self) -> tuple[int, int]:
        """The leaf indexes the tile covers, as ``[start, end)``: a tree of ``end`` leaves
        or more holds it whole."""
        span = 1 << self.hashed_level
        return self.first * span, (self.first + self.width) * span


def parse_tile_path(path: str) -> Tile:
    """The tile at ``path`` (with or without the leading ``tile/``); :class:`BadTilePath`
    naming the part that is wrong. Only the canonical spelling of each path is accepted,
    so that one tile has one address."""
    parts = path.removeprefix("tile/").split("/")
    level_text, rest = parts[0], parts[1:]
    if level_text == "entries":
        level = None
    elif _LEVEL.fullmatch(level_text) and int(level_text) <= 63:
        level = int(level_text)
    else:
        raise BadTilePath(f"the level {level_text!r} is not 'entries' or 0 to 63")
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise BadTilePath(f"the partial width {rest[-1]!r} is not 1 to 255")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2].removesuffix(".p")]
    if not rest or len(rest) > _MAX_GROUPS:
        raise BadTilePath("the index is missing or too long")
    if any(not re.fullmatch(r"x[0-9]{3}", g) for g in rest[:-1]) or not re.fullmatch(
        r"[0-9]{3}", rest[-1]
    ):
        raise BadTilePath("the index is not in three-digit groups, all but the last with 'x'")
    tile = Tile(level, int("".join(g.removeprefix("x") for g in rest)), width)
    if tile.path != "tile/" + path.removeprefix("tile/"):
        raise BadTilePath(f"the index is not written as {tile.path!r} writes it")
    return tile


def tiles_for(size: int) -> list[Tile]:
    """Every tile and entry bundle a tree of ``size`` leaves is served as (partial ones of
    this size), lowest level first: what a mirror fetches to hold the whole tree."""
    found = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        at_level = size >> (TILE_HEIGHT * level)
        full, width = divmod(at_level, TILE_WIDTH)
        made = [Tile(level, n) for n in range(full)]
        if width:
            made.append(Tile(level, full, width))
        if level == 0:
            found += [Tile(None, t.index, t.width) for t in made]
        found += made
        level += 1
    return found


def root_from_tiles(size: int, fetched: Mapping[Tile, bytes]) -> Hash:
    """The root of the tree of ``size`` leaves from its hash tiles (those :func:`tiles_for`
    names), each full tile checked against its hash in the tile above: how a mirror checks
    every tile it holds against a checkpoint it verified. KeyError if a tile is missing,
    ValueError naming one of the wrong length or not matching the tile above."""

    def hashes_of(level: int, n: int) -> list[Hash]:
        tile = Tile(level, n, min(TILE_WIDTH, (size >> (TILE_HEIGHT * level)) - n * TILE_WIDTH))
        data = fetched[tile]
        if len(data) != 32 * tile.width:
            raise ValueError(f"tile {tile.path} is {len(data)} bytes, not {32 * tile.width}")
        return [data[i : i + 32] for i in range(0, len(data), 32)]

    def hash_at(level: int, j: int) -> Hash:
        return hashes_of(level, j // TILE_WIDTH)[j % TILE_WIDTH]

    for tile in tiles_for(size):
        if tile.level is None or tile.width < TILE_WIDTH:
            continue
        if hashes_root(hashes_of(tile.level, tile.index)) != hash_at(tile.level + 1, tile.index):
            raise ValueError(f"tile {tile.path} does not hash to its hash in the tile above")

    def node(wanted: Node) -> Hash:
        level, sub = divmod(wanted[0], TILE_HEIGHT)
        first = wanted[1] << sub
        return hashes_root([hash_at(level, j) for j in range(first, first + (1 << sub))])

    return root_from(node, size)


def bundle(leaves: Sequence[bytes], first: int = 0) -> bytes:
    """An entry bundle of ``leaves`` (the first at leaf index ``first``), or
    :class:`EntryTooLarge` naming the first too long for it."""
    out = bytearray()
    for i, leaf in enumerate(leaves):
        if len(leaf) > MAX_BUNDLED:
            raise EntryTooLarge(first + i, len(leaf))
        out += len(leaf).to_bytes(2, "big") + leaf
    return bytes(out)


def unbundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle; ValueError if it is cut short."""
    leaves: list[bytes] = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise ValueError(f"the bundle ends inside a length prefix at byte {at}")
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise ValueError(f"the bundle ends inside entry {len(leaves)}")
        leaves.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    return leaves
