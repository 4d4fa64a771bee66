"""Benchmark: where a ledger's bytes go, per table and per index, SQLite and PostgreSQL.

    python bench/storage.py [--entries 100000] [--before REV] [--only sqlite|postgresql]

For each database, a fresh ledger of about ``--entries`` entries is built through the
real append path: a simulated trust's year of events (referrals, transfers, census
returns naming every pupil of a school, lifecycle facts, re-evaluations they cause, as
``pipeline.simulate`` makes them) decided and appended by the worker's writer
(``agents.writer``) in batches of ``--batch``, with one audited pupil search
(``pipeline.ledger.reading.reads.search``, its read entry recorded) for every ``--read-every``
events. Then it prints, after a ``VACUUM`` (PostgreSQL) or a WAL checkpoint (SQLite):

- per table: its rows, its own bytes (PostgreSQL: the heap, ``pg_relation_size``; its
  TOAST, ``pg_total_relation_size`` of the TOAST table; its indexes, ``pg_indexes_size``;
  SQLite: the pages of its btree in the ``dbstat`` virtual table), and bytes per entry;
- per index: its bytes and bytes per entry;
- ``<db>_bytes_per_entry=B``: every ledger table's bytes (PostgreSQL:
  ``pg_total_relation_size`` summed; SQLite: the file's pages) over the entries.

``--before REV`` measures the same in the same run on commit ``REV`` (``git archive``
into a scratch folder, this script copied beside its code, run there in a process of its
own), and prints ``<db>_before_bytes_per_entry=B`` and ``<db>_ratio_vs_before=R`` (now
over then: the issue's target is at most 0.5 on PostgreSQL). The last line reads
``bytes_per_entry=sqlite:A,postgresql:B``.

Sizes are exact, not timed: they move only with the random choices, which are seeded.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parents[1]
# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(ROOT))

from scratch import scratch_postgres  # noqa: E402

from agents import writer  # noqa: E402
from pipeline.engine import Position  # noqa: E402
from pipeline.ledger.reading.queries import Filters  # noqa: E402
from pipeline.ledger.reading.reads import Requester, search  # noqa: E402
from pipeline.ledger.storage.schema import prepare  # noqa: E402
from pipeline.ledger.storage.store import PUPIL, Ledger  # noqa: E402
from pipeline.packs import load_pack  # noqa: E402
from pipeline.simulate import simulate  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DPO = Requester("bench-dpo", "dpo", "page")
#: Tables the migrations' own bookkeeping keeps, not the ledger's.
NOT_LEDGER = ("alembic_version",)


def records(count: int) -> list[bytes]:
    """A simulated trust's year, about ``count`` events (2.3 per pupil)."""
    lines = simulate(max(500, int(count / 2.3)), violation_rate=0.05, seed=1)
    return [orjson.dumps(line.event) for line in lines[:count]]


def build(url: str, events: list[bytes], batch: int, read_every: int) -> None:
    """The events decided and appended by the worker's writer, with audited searches."""
    ledger = Ledger.open(url)
    prepare(ledger.engine)
    writer.start(writer.WriterSpec(url, load_pack(), b"\xb3" * 32, log_level="WARNING"))
    rng = random.Random(3)
    positioned = [(raw, Position("sharing.events", 0, n)) for n, raw in enumerate(events)]
    shown = 0
    for first in range(0, len(positioned), batch):
        result = writer.write(positioned[first : first + batch])
        assert not isinstance(result, writer.Failed), result
        done = min(first + batch, len(positioned))
        with ledger.engine.connect() as connection:
            recent = select(PUPIL.c.pupil_key).order_by(PUPIL.c.seq.desc()).limit(200)
            keys = list(connection.execute(recent).scalars())
        for _ in range(done // read_every - shown):
            search(ledger, DPO, Filters(pupil_key=rng.choice(keys)), 50)
        shown = done // read_every
        if first // batch % 10 == 0:
            print(f"  {done:,} of {len(events):,} events", file=sys.stderr, flush=True)
    ledger.engine.dispose()


def postgres_sizes(url: str) -> tuple[int, list[tuple[str, int, int, int, int]], list[tuple]]:
    """Entries; per table (name, rows, heap, toast, indexes); per index (name, table, bytes)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
        entries = connection.execute(text("SELECT count(*) FROM ledger_entry")).scalar_one()
        tables = []
        for name, oid, toast in connection.execute(
            text(
                "SELECT c.relname, c.oid, c.reltoastrelid FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname"
            )
        ):
            if name in NOT_LEDGER:
                continue
            rows = connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            heap, toasted, indexes = connection.execute(
                text(
                    "SELECT pg_total_relation_size(:oid) - pg_indexes_size(:oid)"
                    " - CASE WHEN :toast = 0 THEN 0 ELSE pg_total_relation_size(:toast) END,"
                    " CASE WHEN :toast = 0 THEN 0 ELSE pg_total_relation_size(:toast) END,"
                    " pg_indexes_size(:oid)"
                ),
                {"oid": oid, "toast": toast},
            ).one()
            tables.append((name, rows, heap, toasted, indexes))
        indexes = [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT i.relname, t.relname, pg_relation_size(i.oid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid "
                    "JOIN pg_class t ON t.oid = x.indrelid "
                    "JOIN pg_namespace n ON n.oid = t.relnamespace "
                    "WHERE n.nspname = 'public' ORDER BY t.relname, i.relname"
                )
            )
            if row[1] not in NOT_LEDGER
        ]
    engine.dispose()
    return entries, tables, indexes


def sqlite_sizes(path: Path) -> tuple[int, list[tuple[str, int, int, int, int]], list[tuple], int]:
    """As :func:`postgres_sizes` (toast 0: SQLite keeps overflow pages in the btree), and
    the file's bytes."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        entries = db.execute("SELECT count(*) FROM ledger_entry").fetchone()[0]
        pages = dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
        owners = db.execute(
            "SELECT name, tbl_name, type FROM sqlite_master WHERE type IN ('table', 'index')"
        ).fetchall()
        tables, indexes = [], []
        for name, table, kind in sorted(owners):
            if table in NOT_LEDGER or name.startswith("sqlite_"):
                continue
            if kind == "table":
                rows = db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                own = sum(pages.get(i, 0) for i, t, k in owners if t == name and k == "index")
                tables.append((name, rows, pages.get(name, 0), 0, own))
            else:
                indexes.append((name, table, pages.get(name, 0)))
        size = db.execute("PRAGMA page_count").fetchone()[0]
        size *= db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    return entries, tables, indexes, size


def report(name: str, entries: int, tables: list, indexes: list, total: int) -> None:
    print(f"{name}: {entries:,} entries")
    print(f"  {'table':<18} {'rows':>9} {'heap':>12} {'toast':>11} {'indexes':>12} {'B/entry':>8}")
    for table, rows, heap, toast, own in tables:
        per = (heap + toast + own) / max(entries, 1)
        print(f"  {table:<18} {rows:>9,} {heap:>12,} {toast:>11,} {own:>12,} {per:>8.1f}")
    print(f"  {'index':<30} {'table':<16} {'bytes':>12} {'B/entry':>8}")
    for index, table, size in indexes:
        print(f"  {index:<30} {table:<16} {size:>12,} {size / max(entries, 1):>8.1f}")
    print(f"{name}_bytes_per_entry={total / max(entries, 1):.0f}", flush=True)


@contextmanager
def _checkout(commit: str) -> Iterator[Path]:
    """The files of ``commit`` in a scratch folder, this script among its benches."""
    with tempfile.TemporaryDirectory(prefix="bench-storage-before-") as folder:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=False
        )
        if archive.returncode != 0:
            raise SystemExit(f"--before {commit}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        shutil.copy(Path(__file__), Path(folder) / "bench" / "storage.py")
        yield Path(folder)


def before(args: argparse.Namespace) -> dict[str, float]:
    """Bytes per entry of commit ``args.before``, by database, from its own run."""
    with _checkout(args.before) as root:
        command = [sys.executable, str(root / "bench" / "storage.py")]
        command += ["--entries", str(args.entries), "--batch", str(args.batch)]
        command += ["--read-every", str(args.read_every), "--pg", args.pg]
        if args.only:
            command += ["--only", args.only]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the bench at {args.before} failed:\n{done.stderr[-2000:]}")
    print(f"--- at {args.before} ---")
    print(done.stdout, end="")
    print("--- now ---", flush=True)
    found = re.findall(r"^(\w+)_bytes_per_entry=(\d+)$", done.stdout, re.MULTILINE)
    return {db: float(value) for db, value in found}


def measure(args: argparse.Namespace) -> dict[str, float]:
    events = records(args.entries)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.sqlite) as folder:
        if args.only in (None, "sqlite"):
            path = Path(folder) / "storage.db"
            build(f"sqlite:///{path}", events, args.batch, args.read_every)
            entries, tables, indexes, size = sqlite_sizes(path)
            report("sqlite", entries, tables, indexes, size)
            figures["sqlite"] = size / entries
        if args.only in (None, "postgresql"):
            with scratch_postgres(args.pg) as url:
                build(url, events, args.batch, args.read_every)
                entries, tables, indexes = postgres_sizes(url)
                total = sum(heap + toast + own for _, _, heap, toast, own in tables)
                report("postgresql", entries, tables, indexes, total)
                figures["postgresql"] = total / entries
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="events simulated")
    parser.add_argument("--batch", type=int, default=1000, help="events a writer batch")
    parser.add_argument("--read-every", type=int, default=20, help="events per pupil search")
    parser.add_argument("--before", help="the commit to compare with, in the same run")
    parser.add_argument("--pg", default=PG_ADMIN, help="admin URL: a scratch database")
    parser.add_argument("--sqlite", default=None, help="folder for the SQLite file")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="one database only")
    args = parser.parse_args()
    then = before(args) if args.before else {}
    now = measure(args)
    for db, value in now.items():
        if db in then:
            print(f"{db}_before_bytes_per_entry={then[db]:.0f} (commit {args.before})")
            print(f"{db}_ratio_vs_before={value / then[db]:.2f}")
    print("bytes_per_entry=" + ",".join(f"{db}:{value:.0f}" for db, value in now.items()))


if __name__ == "__main__":
    main()
