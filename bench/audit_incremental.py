"""Benchmark: ``audit verify --tiles`` from the checkpoint verified last against a whole
check of the same mirror (issue 33: time proportional to the new entries, memory bounded
by the tree's height).

A mirror of ``--entries`` entries (the ledger's leaf form, every field but the number
empty, so that the mirror is made in seconds), fetched at ``--entries - --new`` and again
at ``--entries``; the auditor checks it from the older checkpoint (the incremental check)
and from nothing (the whole check, the baseline, in the same run), each timed and then
run again under tracemalloc for its peak. Prints, last,
``incremental_s=A full_s=B ratio=C incremental_peak_kib=D full_peak_kib=E``: the ratio
is the incremental time over the whole check's (target: about new / entries).

    python bench/audit_incremental.py [--entries 200000] [--new 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/

from pipeline.ledger.records.chain import leaf_fault
from pipeline.transparency.auditor import accept_mirror
from pipeline.transparency.merkle import tree_root
from pipeline.transparency.mirror import MirrorFolder
from pipeline.transparency.note import Checkpoint, Signer, sign_note
from tests.mirrors import entry_leaves, mirror_of_leaves

LOG = Signer("bench.example.org/log", bytes(range(32)))


def checked(mirror: Path, new: bytes, start: bytes | None, state: Path) -> tuple[float, int]:
    """Seconds to check the mirror up to ``new`` from ``start``, and the entries read."""
    began = time.perf_counter()
    *_, read = accept_mirror(new, LOG.verifier, state, MirrorFolder(mirror), start, leaf_fault)
    return time.perf_counter() - began, read.entries


def peak_kib(mirror: Path, new: bytes, start: bytes | None, state: Path) -> float:
    tracemalloc.start()
    accept_mirror(new, LOG.verifier, state, MirrorFolder(mirror), start, leaf_fault)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--new", type=int, default=10_000)
    args = parser.parse_args()
    old_size = args.entries - args.new
    made = time.perf_counter()
    leaves = entry_leaves(args.entries)
    signed = {
        size: sign_note(Checkpoint(LOG.name, size, tree_root(leaves[:size])).body(), LOG).encode()
        for size in (old_size, args.entries)
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        mirror = mirror_of_leaves(folder / "mirror", leaves, [old_size, args.entries])
        del leaves
        print(f"mirror of {args.entries:,} entries made in {time.perf_counter() - made:.1f} s")
        new, old = signed[args.entries], signed[old_size]
        incremental_s, read = checked(mirror, new, old, folder / "state-incremental")
        full_s, full_read = checked(mirror, new, None, folder / "state-full")
        if (read, full_read) != (args.new, args.entries):
            raise SystemExit(f"read {read:,} and {full_read:,} entries, not as asked")
        incremental_peak = peak_kib(mirror, new, old, folder / "peak-incremental")
        full_peak = peak_kib(mirror, new, None, folder / "peak-full")
    last = f"the last {args.new:,} of {args.entries:,} entries"
    print(f"incremental: {last} in {incremental_s:.2f} s")
    print(f"full: all {args.entries:,} entries in {full_s:.2f} s")
    print(
        f"incremental_s={incremental_s:.2f} full_s={full_s:.2f} "
        f"ratio={incremental_s / full_s:.3f} incremental_peak_kib={incremental_peak:,.0f} "
        f"full_peak_kib={full_peak:,.0f}"
    )


if __name__ == "__main__":
    main()
