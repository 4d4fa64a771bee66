"""Benchmark: backing a ledger up, restoring it, and verifying what was restored.

    python bench/backup.py [--entries 100000] [--only sqlite|postgresql]

For each database, a ledger of about ``--entries`` entries is built as ``bench/storage.py``
builds it (a simulated trust's year through the worker's writer, with audited searches).
Then, each timed once, as an operator runs them (``deploy/README.md``, "Sizing"):

- PostgreSQL: ``pg_dump --format=custom`` of the ledger's database to a file;
  ``pg_restore`` of that file into a new, empty database; ``sharing-audit ledger verify``
  of the restored ledger (a restore is trusted only once verified).
- SQLite: the online backup (``sqlite3``'s backup API, what ``.backup`` does, safe while
  the worker writes) to a file; a restore is that file put back, so the restore timed is
  a copy of it; ``ledger verify`` of the copy.

The baseline, in the same run, is copying a file of the backup's size on the same disk:
``<db>_backup_vs_copy`` is how many times longer the backup took than moving its bytes.
Per database it prints ``<db>_backup_s``, ``<db>_restore_s``, ``<db>_verify_s``, the backup's
bytes, and each as seconds per million entries, which ``deploy/README.md`` scales on
paper (the verify's includes a command's start-up, a few seconds: scale from a run of
100,000 entries or more). The last line reads ``backup_s_per_million=sqlite:A,postgresql:B``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(ROOT))

from scale import child  # noqa: E402
from scratch import scratch_postgres  # noqa: E402
from storage import PG_ADMIN, build, records  # noqa: E402

from pipeline.ledger.storage.store import Ledger  # noqa: E402


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def entries_of(url: str) -> int:
    ledger = Ledger.open(url)
    try:
        with ledger.engine.connect() as connection:
            return Ledger.head(connection)[0]  # seqs run from 1 without a gap
    finally:
        ledger.engine.dispose()


def verify_seconds(url: str) -> float:
    """``sharing-audit ledger verify`` of ``url``, as an operator runs it after a restore
    (the bench stops if it does not verify)."""
    return child(["ledger", "verify", "--db", url], dict(os.environ))[0]


def copy_seconds(source: Path, folder: Path) -> float:
    """The baseline: a file of the backup's bytes copied on the same disk, synced."""
    target = folder / "baseline.copy"

    def copy() -> None:
        shutil.copyfile(source, target)
        with target.open("rb") as written:
            os.fsync(written.fileno())

    took = timed(copy)
    target.unlink()
    return took


def libpq(url: str) -> str:
    """The URL as pg_dump and pg_restore take it (no SQLAlchemy driver name)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def measure_postgres(
    events: list[bytes], args: argparse.Namespace, folder: Path
) -> dict[str, float]:
    dump = folder / "ledger.dump"
    with scratch_postgres(args.pg) as url:
        build(url, events, args.batch, args.read_every)
        entries = entries_of(url)
        backup = timed(
            lambda: subprocess.run(
                ["pg_dump", "--format=custom", f"--file={dump}", libpq(url)], check=True
            )
        )
    with scratch_postgres(args.pg) as restored:
        restore = timed(
            lambda: subprocess.run(
                ["pg_restore", "--no-owner", f"--dbname={libpq(restored)}", str(dump)], check=True
            )
        )
        verify = verify_seconds(restored)
    return figures("postgresql", entries, backup, restore, verify, dump, folder)


def measure_sqlite(events: list[bytes], args: argparse.Namespace, folder: Path) -> dict[str, float]:
    path, backup_path = folder / "ledger.db", folder / "ledger.backup.db"
    build(f"sqlite:///{path}", events, args.batch, args.read_every)
    entries = entries_of(f"sqlite:///{path}")

    def online_backup() -> None:
        source, target = sqlite3.connect(path), sqlite3.connect(backup_path)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()

    backup = timed(online_backup)
    restored = folder / "restored.db"
    restore = timed(lambda: shutil.copyfile(backup_path, restored))
    verify = verify_seconds(f"sqlite:///{restored}")
    return figures("sqlite", entries, backup, restore, verify, backup_path, folder)


def figures(
    name: str, entries: int, backup: float, restore: float, verify: float, file: Path, folder: Path
) -> dict[str, float]:
    size = file.stat().st_size
    baseline = copy_seconds(file, folder)
    per_million = 1_000_000 / max(entries, 1)
    print(
        f"{name}: {entries:,} entries; backup {backup:.2f} s ({size / 2**20:.1f} MiB), "
        f"restore {restore:.2f} s, verify of the restored ledger {verify:.2f} s; "
        f"a plain copy of the backup's bytes {baseline:.2f} s"
    )
    print(
        f"{name}_backup_s={backup:.2f} {name}_restore_s={restore:.2f} "
        f"{name}_verify_s={verify:.2f} {name}_backup_bytes={size} "
        f"{name}_backup_vs_copy={backup / max(baseline, 1e-9):.1f}"
    )
    print(
        f"{name} per million entries: backup {backup * per_million:.0f} s, restore "
        f"{restore * per_million:.0f} s, verify {verify * per_million:.0f} s, "
        f"{size * per_million / 2**30:.2f} GiB",
        flush=True,
    )
    return {"backup_per_million": backup * per_million}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="events simulated")
    parser.add_argument("--batch", type=int, default=1000, help="events a writer batch")
    parser.add_argument("--read-every", type=int, default=20, help="events per pupil search")
    parser.add_argument("--pg", default=PG_ADMIN, help="admin URL: scratch databases")
    parser.add_argument("--sqlite", default=None, help="folder for the SQLite files")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="one database only")
    args = parser.parse_args()
    for tool in ("pg_dump", "pg_restore"):
        if args.only != "sqlite" and shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: postgresql-client)")
    events = records(args.entries)
    found: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=args.sqlite) as scratch:
        folder = Path(scratch)
        if args.only in (None, "sqlite"):
            found["sqlite"] = measure_sqlite(events, args, folder)
        if args.only in (None, "postgresql"):
            found["postgresql"] = measure_postgres(events, args, folder)
    print(
        "backup_s_per_million="
        + ",".join(f"{db}:{f['backup_per_million']:.0f}" for db, f in found.items())
    )


if __name__ == "__main__":
    os.environ.setdefault("SHARING_AUDIT_LOG_LEVEL", "WARNING")
    main()
