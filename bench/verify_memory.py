"""Benchmark: ``ledger verify``'s memory as the ledger grows (issue 33: memory bounded by
the tree's height, not the ledger's size).

Two SQLite ledgers, one ``--entries`` long and one four times longer, each verified in
one process under tracemalloc. The baseline, measured in the same run, is what holding a
32-byte leaf hash per entry (as verify did before its tree check streamed) costs at the
larger size. Prints, last, ``growth_ratio=A marginal_ratio=B``: the peak at the larger
size over the peak at the smaller (target: close to 1), and the bytes each further entry
adds to the peak over the baseline's 32 (target: well under 1; the old check's was 1 or
more, its leaf hashes alone 305 MiB at ten million entries).

    python bench/verify_memory.py [--entries 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledger import append_rate, fresh_ledger

from pipeline.ledger.integrity.verification import verify


def peak_of_verify(entries: int, folder: Path) -> tuple[int, float, bool]:
    """Peak bytes traced while verifying a ledger of ``entries``, the seconds it took,
    and whether it verified."""
    url = f"sqlite:///{folder}/verify-{entries}.db"
    ledger = fresh_ledger(url)
    append_rate(ledger, entries, 1, pupils=50_000, seed=entries)
    with ledger.engine.connect() as connection:
        tracemalloc.start()
        started = time.perf_counter()
        result = verify(connection)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    ledger.engine.dispose()
    return peak, seconds, result.ok and result.count == entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        small, small_s, small_ok = peak_of_verify(args.entries, folder)
        large, large_s, large_ok = peak_of_verify(4 * args.entries, folder)
    if not (small_ok and large_ok):
        raise SystemExit("a ledger did not verify")
    marginal = max(large - small, 0) / (3 * args.entries)
    print(f"verify_peak_kib_{args.entries}={small / 1024:,.0f} ({small_s:.1f} s)")
    print(f"verify_peak_kib_{4 * args.entries}={large / 1024:,.0f} ({large_s:.1f} s)")
    print(f"marginal_bytes_per_entry={marginal:.2f} (baseline: 32, a leaf hash kept per entry)")
    print(f"growth_ratio={large / small:.2f} marginal_ratio={marginal / 32:.3f}")


if __name__ == "__main__":
    main()
