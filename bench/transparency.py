"""Benchmark: the verifiable log on SQLite and PostgreSQL, on a ledger of a million entries.

    python bench/transparency.py [--entries 1000000] [--samples 1000] [--db sqlite|postgresql|both]

For each database, on one ledger filled through ``Ledger.append`` (the tree kept as it
goes):

- inclusion and consistency proofs: p50 and p95 of building one (``sharing-audit log
  prove`` and ``log consistency`` do the same reads), for entries and old sizes drawn at
  random; each proof is also checked, untimed, against the signed checkpoint;
- signing: the seconds to sign a checkpoint after 10,000 more entries are appended;
- ``ledger verify`` (chain, tree, checkpoints) in entries per second, as the command
  runs it (its ranges on one process per core, ``--jobs`` unset) and in one process,
  each against the floor measured in the same run: reading the same rows through the
  driver's own cursor and hashing their bytes with hashlib, in one process, nothing
  else. ``verify_ratio`` is the command's; the one-process ratio is printed beside it.

Targets (the verifiable log issue): proof p95 under 5 ms; verify at least 0.7 of the
floor. The last line reads ``proof_p95_ms=P consistency_p95_ms=C verify_ratio=R``, each
the worse of the two databases.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/

from ledger import append_rate, fresh_ledger, read_alone_rate
from scratch import scratch_postgres

from pipeline.ledger.integrity.verification import default_jobs, verify
from pipeline.ledger.log.checkpoints import sign_if_grown
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import consistency_proof, inclusion_proof, leaf_bytes, root_at
from pipeline.transparency.merkle import leaf_hash, verify_consistency, verify_inclusion
from pipeline.transparency.note import Signer

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SIGNER = Signer("bench.example/sharing-audit", bytes(range(32)))
PUPILS = 40_000


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def proof_ms(ledger: Ledger, size: int, samples: int) -> tuple[list[float], list[float]]:
    """Milliseconds to build inclusion proofs of random entries, and consistency proofs
    from random older sizes, to the tree of ``size``; a sample of each checked."""
    rng = random.Random(5)
    inclusion, consistency = [], []
    with ledger.engine.connect() as connection:
        root = root_at(connection, size)
        for n in range(samples):
            index = rng.randrange(size)
            start = time.perf_counter()
            proof = inclusion_proof(connection, index, size)
            inclusion.append((time.perf_counter() - start) * 1000)
            if n < 20:
                leaf = leaf_bytes(connection, index + 1) or b""
                verify_inclusion(index, size, leaf_hash(leaf), proof, root)
        for n in range(samples):
            old = rng.randrange(1, size)
            start = time.perf_counter()
            proof = consistency_proof(connection, old, size)
            consistency.append((time.perf_counter() - start) * 1000)
            if n < 20:
                verify_consistency(old, size, root_at(connection, old), root, proof)
    return inclusion, consistency


def floor_rate(ledger: Ledger) -> float:
    """Rows per second: read through the driver's cursor and their bytes hashed, nothing
    else (the least any verify that reads every entry must do)."""
    return read_alone_rate(
        ledger, lambda row: hashlib.sha256("\x00".join(map(str, row)).encode()).digest()
    )


def run(name: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    print(f"== {name}", flush=True)
    ledger = fresh_ledger(url)
    rate = append_rate(ledger, args.entries, 1, PUPILS, 1)
    print(f"{name}: {args.entries:,} entries appended at {rate:,.0f}/s (tree kept)", flush=True)
    sign_if_grown(ledger, SIGNER)
    append_rate(ledger, 10_000, args.entries + 1, PUPILS, 2)
    start = time.perf_counter()
    signed = sign_if_grown(ledger, SIGNER)
    sign_s = time.perf_counter() - start
    assert signed is not None
    size = signed.checkpoint.size
    print(f"{name}_sign_after_10000_s={sign_s:.3f}")
    inclusion, consistency = proof_ms(ledger, size, args.samples)
    (i50, i95), (c50, c95) = percentiles(inclusion), percentiles(consistency)
    print(f"{name}_inclusion_proof_p50_ms={i50:.2f} p95_ms={i95:.2f}")
    print(f"{name}_consistency_proof_p50_ms={c50:.2f} p95_ms={c95:.2f}")
    floor = floor_rate(ledger)
    jobs = default_jobs()
    one_process = verify_rate(ledger, 1)
    command = verify_rate(ledger, jobs)
    print(f"{name}_floor_read_and_hash_rows_per_s={floor:,.0f} (one process)")
    print(
        f"{name}_verify_one_process_entries_per_s={one_process:,.0f} "
        f"ratio={one_process / floor:.2f}"
    )
    print(
        f"{name}_verify_entries_per_s={command:,.0f} (chain, tree and checkpoints; "
        f"--jobs {jobs}, as ledger verify runs)"
    )
    print(f"{name}_verify_ratio={command / floor:.2f}", flush=True)
    ledger.engine.dispose()
    return {"proof": i95, "consistency": c95, "verify": command / floor}


def verify_rate(ledger: Ledger, jobs: int) -> float:
    """Entries per second of ``ledger verify``'s check with ``jobs`` processes."""
    with ledger.engine.connect() as connection:
        start = time.perf_counter()
        result = verify(connection, log=SIGNER.verifier, jobs=jobs)
        rate = result.count / (time.perf_counter() - start)
    assert result.ok, result
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    results = []
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-transparency-") as folder:
            results.append(run("sqlite", f"sqlite:///{folder}/ledger.db", args))
    if args.db in ("postgresql", "both"):
        with scratch_postgres(PG_ADMIN) as url:
            results.append(run("postgresql", url, args))
    proof = max(r["proof"] for r in results)
    consistency = max(r["consistency"] for r in results)
    ratio = min(r["verify"] for r in results)
    met = "met" if proof < 5 and consistency < 5 else "NOT met"
    print(
        f"target: proof p95 < 5 ms -> {met}; verify >= 0.7 of the floor -> "
        f"{'met' if ratio >= 0.7 else 'NOT met'}"
    )
    print(f"proof_p95_ms={proof:.2f} consistency_p95_ms={consistency:.2f} verify_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
