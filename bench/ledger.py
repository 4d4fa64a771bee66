"""Benchmark: the ledger on SQLite and PostgreSQL, each against its floor, in one run.

    python bench/ledger.py [--entries 1000000] [--append 50000] [--pg URL] [--sqlite PATH]

For each database:

- append: entries in batches of 500 through ``Ledger.append`` (hash chain, pupil and
  recipient index rows, the Merkle tree, chain-head lock and update, one transaction per
  batch), against a plain ``executemany`` INSERT of the same rows into an unconstrained
  table (the floor), a batch of each in turn;
- verify: ``ledger verify`` in one process over those entries (read, canonical form,
  hash, link), against hashing the same bytes with ``hashlib`` alone; also the rate of
  reading the same rows through the driver's cursor and nothing else, which bounds any
  one-process verify that reads them;
- pupil query: p50/p95 of ``query --pupil`` (every entry naming one pupil) on a ledger of
  ``--entries`` entries, for pupils drawn at random.

Targets (the ledger issue): append >= 50% of the floor; verify >= 50% of raw hashing;
pupil query p95 under 20 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Column, MetaData, Table, Text, create_engine

# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratch import scratch_postgres

from pipeline.canonical import canonical_json
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.records.chain import ENTRY_FIELDS, entry_hash
from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger, NewEntry, now_text

BATCH = 500
RECIPIENTS = [
    "dfe",
    "la:850",
    "agency:school-nursing",
    "agency:educational-psychology",
    "school:116512",
    "school:120001",
]


def make_fields(seq: int, rng: random.Random, pupils: int) -> dict[str, Any]:
    keys = [hashlib.sha256(str(rng.randrange(pupils)).encode()).hexdigest()]
    return {
        "seq": seq,
        "kind": "decision",
        "refers_to": None,
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "event_type": "uk.school.pupil.referred.v1",
        "occurred_at": "2026-03-02T10:15:00.000000Z",
        "recorded_at": now_text(),
        "school": "116234",
        "recipient": rng.choice(RECIPIENTS),
        "pupil_keys": keys,
        "categories": ["personal", "medical"],
        "lawful_basis": "public_task",
        "decision": "allowed",
        "rules": [],
        "reasons": [],
        "policy_version": "a" * 64,
        "topic": "sharing.referral",
        "partition": rng.randrange(4),
        "offset": seq,
        "payload_digest": hashlib.sha256(str(seq).encode()).hexdigest(),
        "details": None,
    }


def fresh_ledger(url: str) -> Ledger:
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    return ledger


def append_rate(ledger: Ledger, count: int, first_seq: int, pupils: int, seed: int) -> float:
    rng = random.Random(seed)
    end = first_seq + count
    batches = [
        [
            NewEntry(Entry(**make_fields(s, rng, pupils)))
            for s in range(start, min(start + BATCH, end))
        ]
        for start in range(first_seq, end, BATCH)
    ]
    start = time.perf_counter()
    for batch in batches:
        with ledger.locked() as connection:
            ledger.append(connection, batch)
    return count / (time.perf_counter() - start)


def append_and_floor_rates(
    ledger: Ledger, url: str, count: int, pupils: int, seed: int
) -> tuple[float, float]:
    """Entries per second of ``Ledger.append`` (batches of 500 from seq 1, the tree kept),
    and rows per second of the floor: a plain executemany INSERT of the same rows, text
    columns, no constraints, into a table of its own. A batch of each in turn: this
    machine's pace drifts by a quarter over a minute, and interleaved, both are taken at
    the same pace."""
    rng = random.Random(seed)
    fields = [make_fields(seq, rng, pupils) for seq in range(1, count + 1)]
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    metadata = MetaData()
    floor = Table(
        "floor_entry", metadata, *(Column(n, Text) for n in (*ENTRY_FIELDS, "prev_hash", "hash"))
    )
    metadata.drop_all(engine)
    metadata.create_all(engine)
    rows, prev = [], "0" * 64
    for f in fields:
        digest = entry_hash(prev, f)
        row = {
            n: (
                canonical_json(v).decode()
                if isinstance(v, list | dict)
                else (None if v is None else str(v))
            )
            for n, v in f.items()
        }
        row["prev_hash"], row["hash"] = prev, digest
        rows.append(row)
        prev = digest
    appending = floor_s = 0.0
    for i in range(0, count, BATCH):
        batch = [NewEntry(Entry(**f)) for f in fields[i : i + BATCH]]
        start = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(floor.insert(), rows[i : i + BATCH])
        floored = time.perf_counter()
        with ledger.locked() as connection:
            ledger.append(connection, batch)
        appending += time.perf_counter() - floored
        floor_s += floored - start
    metadata.drop_all(engine)
    engine.dispose()
    return count / appending, count / floor_s


def verify_rates(ledger: Ledger) -> tuple[float, float, float, int]:
    """Entries per second: verified, hashed alone, and read alone (the ceiling of any
    verify that reads the rows into Python: every entry must be read to be checked)."""
    with ledger.engine.connect() as connection:
        start = time.perf_counter()
        result = verify(connection)
        verify_s = time.perf_counter() - start
        assert result.ok, result
        bodies = [
            ((e.prev_hash or "").encode(), canonical_json(e.hashed())) for e in entries(connection)
        ]
    start = time.perf_counter()
    for prev, body in bodies:
        hashlib.sha256(prev + body).hexdigest()
    hash_s = time.perf_counter() - start
    return result.count / verify_s, len(bodies) / hash_s, read_alone_rate(ledger), result.count


def read_alone_rate(ledger: Ledger, each: Callable[[Any], object] | None = None) -> float:
    """The same columns in the same order through the driver's own cursor, nothing else
    (but ``each`` of the rows, when given)."""
    columns = ", ".join(f'"{c}"' for c in (*ENTRY_FIELDS, "prev_hash", "hash"))
    raw = ledger.engine.raw_connection()
    try:
        cursor = raw.cursor()
        start = time.perf_counter()
        cursor.execute(f"SELECT {columns} FROM ledger_entry ORDER BY seq")
        count = 0
        while rows := cursor.fetchmany(5_000):
            if each is not None:
                for row in rows:
                    each(row)
            count += len(rows)
        elapsed = time.perf_counter() - start
        cursor.close()
    finally:
        raw.close()
    return count / elapsed


def pupil_query_ms(ledger: Ledger, pupils: int, samples: int = 300) -> tuple[float, float, float]:
    rng = random.Random(7)
    times, found = [], 0
    with ledger.engine.connect() as connection:
        for _ in range(samples):
            key = hashlib.sha256(str(rng.randrange(pupils)).encode()).hexdigest()
            start = time.perf_counter()
            found += len(list(entries(connection, Filters(pupil_key=key))))
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], found / samples


def run(name: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    print(f"== {name}")
    ledger = fresh_ledger(url)
    rate, floor = append_and_floor_rates(ledger, url, args.append, args.pupils, 1)
    print(f"{name}_append_entries_per_s={rate:,.0f}")
    print(f"{name}_floor_executemany_rows_per_s={floor:,.0f}")
    print(f"{name}_ratio_append_vs_floor={rate / floor:.2f}")
    verify_rate, hash_rate, read_rate, count = verify_rates(ledger)
    print(f"{name}_verify_entries_per_s={verify_rate:,.0f} (over {count:,} entries)")
    print(f"{name}_hashlib_alone_per_s={hash_rate:,.0f}")
    print(f"{name}_read_rows_alone_per_s={read_rate:,.0f}")
    print(f"{name}_ratio_read_alone_vs_hashlib={read_rate / hash_rate:.2f} (the ceiling)")
    print(f"{name}_ratio_verify_vs_hashlib={verify_rate / hash_rate:.2f}")
    remaining = args.entries - args.append
    if remaining > 0:
        start = time.perf_counter()
        append_rate(ledger, remaining, args.append + 1, args.pupils, 2)
        print(f"{name}: filled to {args.entries:,} entries in {time.perf_counter() - start:.0f} s")
    p50, p95, per_pupil = pupil_query_ms(ledger, args.pupils)
    print(f"{name}_pupil_query_p50_ms={p50:.2f}")
    print(f"{name}_pupil_query_p95_ms={p95:.2f} (about {per_pupil:.0f} entries per pupil)")
    ledger.engine.dispose()
    return {"append": rate / floor, "verify": verify_rate / hash_rate, "p95": p95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--append", type=int, default=50_000)
    parser.add_argument("--pupils", type=int, default=40_000)
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin URL: a scratch database is made and dropped",
    )
    parser.add_argument("--sqlite", default=None, help="folder for the SQLite file")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory(dir=args.sqlite) as folder:
        results["sqlite"] = run("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}", args)
    with scratch_postgres(args.pg) as url:
        results["postgresql"] = run("postgresql", url, args)
    for db, r in results.items():
        verdict = [
            f"append {'met' if r['append'] >= 0.5 else 'NOT met'}",
            f"verify {'met' if r['verify'] >= 0.5 else 'NOT met'}",
            f"pupil p95 {'met' if r['p95'] < 20 else 'NOT met'}",
        ]
        print(f"targets {db}: " + ", ".join(verdict))


if __name__ == "__main__":
    main()
