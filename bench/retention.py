"""Benchmark: retention on a ledger of a trust's year (SQLite).

    python bench/retention.py [--entries 1000000] [--pupils 50000] [--sqlite DIR]

On a ledger of ``--entries`` entries (referrals, transfers and census returns of
``--pupils`` pupils over a school year, as ``bench/queries.py`` builds them, the censuses
and transfers declaring their oldest attendance record), with every pupil's date of
birth, a leaving recorded for one pupil in ten and the whole record destroyed for one
leaver in five:

- retention due: the seconds to work out what is due for every pupil on a day (the
  ledger's reads and the pure computation, :func:`pipeline.ledger.privacy.retention.due_in`),
  best of three, against a bare indexed scan of the pupils in the same run (every row of
  the pupil index, ``entry_pupil``, in its key order (pupils' numbers): what any answer
  about every pupil's entries must at least read), best of three. ``due_ratio`` is
  bare / due: 1 would be as fast as the scan alone. Target >= 0.5.
- erasure: the seconds to erase ``--erase`` pupils (1,000) as ``ledger retention apply``
  does, in one :func:`pipeline.ledger.privacy.erasure.erase_many` (their identity rows deleted,
  an erasure entry each appended to the chain and the Merkle tree, the database's freed
  bytes scrubbed), against deleting as many rows by key from one table in the same run
  (a copy of the identity table, under the same pragmas, secure delete included).
  ``erase_ratio`` is delete / erase: 1 would be as fast as the bare delete. Target >= 0.1.

The last line is ``due_ratio=A erase_ratio=B``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from queries import BATCH, key, new_entry
from sqlalchemy import Column, MetaData, String, Table, delete, select

from pipeline.ledger.privacy.erasure import erase_many
from pipeline.ledger.privacy.retention import due_in
from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import (
    ENTRY_PUPIL,
    Ledger,
    NewEntry,
    any_of,
    now_text,
    utc_text,
)
from pipeline.ledger.writing.ingest import fact_to_json
from pipeline.packs import load_pack
from pipeline.register import Destruction, Leaving
from pipeline.schooltime import at_school
from schemas.events import LEFT, RECORD_DESTROYED

AS_OF = date(2027, 9, 1)
SCHOOL = "116234"  # bench/queries.py records every entry of one school
#: The table the bare delete is timed on: a copy of the identity table.
BENCH_ROWS = Table(
    "bench_rows",
    MetaData(),
    Column("pupil_key", String(64), primary_key=True),
    Column("upn", String(13)),
    Column("dob", String(10)),
)


def _seal(pupil_key: str, upn: str, dob: str | None) -> str:
    return hashlib.sha256(f"{pupil_key}{upn}{dob}".encode()).hexdigest()


def _with_oldest_record(new: NewEntry) -> NewEntry:
    """A census or transfer declares its oldest attendance record, as MIS exports do."""
    if new.payload is not None and "attendance" in new.entry.categories:
        when = date.fromisoformat(new.payload["time"][:10])
        new.payload["data"]["oldest_record"] = {"attendance": f"{when.year - 3}-09-01"}
    return new


def _lifecycle(seq: int, event_type: str, pupil: str, fact: dict[str, Any]) -> NewEntry:
    fields: dict[str, Any] = {
        "seq": seq,
        "kind": "decision",
        "refers_to": None,
        "event_id": f"{event_type}-{seq}",
        "event_type": event_type,
        "occurred_at": utc_text(at_school(date(2026, 7, 20), 15)),
        "recorded_at": now_text(),
        "school": SCHOOL,
        "recipient": None,
        "pupil_keys": [pupil],
        "categories": [],
        "lawful_basis": None,
        "decision": "allowed",
        "rules": [],
        "reasons": [],
        "policy_version": None,
        "topic": "pupil.lifecycle",
        "partition": 0,
        "offset": seq,
        "payload_digest": None,
        "details": None,
    }
    return NewEntry(Entry(**fields), fact=fact)


def build(ledger: Ledger, count: int, pupils: int, policy_version: str) -> float:
    """The year's sharing entries, then the leavings and destructions; seconds taken."""
    rng = random.Random(1)
    start = time.perf_counter()
    lifecycle: list[tuple[str, str, dict[str, Any]]] = []
    for p in range(0, pupils, 10):
        left_on = date(2025, 10, 1) + timedelta(days=rng.randrange(240))
        leaving = Leaving(at_school(left_on, 15), f"left-{p}", left_on, "school:116512")
        lifecycle.append((LEFT, key(p), fact_to_json(key(p), leaving)))
        if p % 50 == 0:
            gone = Destruction(at_school(date(2027, 1, 5), 9), f"gone-{p}", frozenset({"*"}))
            lifecycle.append((RECORD_DESTROYED, key(p), fact_to_json(key(p), gone)))
    sharing = count - len(lifecycle)
    identities = [
        (key(p), f"A{p:012d}", date(2014 + p % 7, 1 + p % 12, 1 + p % 28).isoformat())
        for p in range(pupils)
    ]
    seq = 0
    while seq < count:
        batch: list[NewEntry] = []
        for _ in range(min(BATCH, count - seq)):
            seq += 1
            if seq <= sharing:
                batch.append(_with_oldest_record(new_entry(seq, sharing, rng, pupils, "bench")))
            else:
                batch.append(_lifecycle(seq, *lifecycle[seq - sharing - 1]))
        if identities:
            batch[0].identities.extend(identities)
            identities = []
        with ledger.locked() as connection:
            ledger.append(connection, batch, _seal)
    return time.perf_counter() - start


def best_of(run: Callable[[], Any], times: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(times):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def erasing(ledger: Ledger, pupils: list[str]) -> tuple[float, float]:
    """Seconds to delete the rows of ``pupils`` from a copy of the identity table (by
    key, one transaction), and to erase them (:func:`erase_many`), each from a WAL
    checkpointed first: the bare delete, then the erasure."""
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE bench_rows (pupil_key VARCHAR(64) PRIMARY KEY, upn VARCHAR(13), "
            "dob VARCHAR(10)) WITHOUT ROWID"
        )
        connection.exec_driver_sql(
            "INSERT INTO bench_rows SELECT pupil_key, upn, dob FROM pupil_identity"
        )
    with ledger.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    start = time.perf_counter()
    with ledger.engine.begin() as connection:
        connection.execute(
            delete(BENCH_ROWS).where(any_of(connection, BENCH_ROWS.c.pupil_key, pupils))
        )
    deleted = time.perf_counter() - start
    with ledger.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    start = time.perf_counter()
    erased = erase_many(ledger, pupils, by="bench", reason="bench", rule="retention")
    erasing_s = time.perf_counter() - start
    assert len(erased) == len(pupils)
    return deleted, erasing_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--pupils", type=int, default=50_000)
    parser.add_argument("--erase", type=int, default=1_000, help="pupils to erase")
    parser.add_argument("--sqlite", default=None, help="folder for the SQLite file")
    args = parser.parse_args()
    policy = load_pack()
    with tempfile.TemporaryDirectory(dir=args.sqlite) as folder:
        ledger = Ledger.open(f"sqlite:///{Path(folder) / 'bench.db'}")
        schema.upgrade(ledger.engine)
        built = build(ledger, args.entries, args.pupils, policy.version)
        print(f"built {args.entries} entries of {args.pupils} pupils in {built:.1f} s")
        with ledger.engine.connect() as connection:

            def bare() -> int:
                statement = select(ENTRY_PUPIL.c.pupil, ENTRY_PUPIL.c.seq).order_by(
                    ENTRY_PUPIL.c.pupil, ENTRY_PUPIL.c.seq
                )
                return len(connection.execute(statement).all())

            def due() -> Any:
                return due_in(connection, lambda _: policy, [policy], AS_OF)

            bare_s, rows = best_of(bare)
            due_s, found = best_of(due)
        print(f"bare_scan_s={bare_s:.3f} rows={rows}")
        print(
            f"due_s={due_s:.3f} as_of={AS_OF} records_due={len(found.items)} "
            f"pupils_due={len(found.pupil_keys)}"
        )
        delete_s, erase_s = erasing(ledger, [key(p) for p in range(min(args.erase, args.pupils))])
        print(f"delete_s={delete_s:.3f} erase_s={erase_s:.3f} pupils_erased={args.erase}")
        ledger.engine.dispose()
    print(f"due_ratio={bare_s / due_s:.2f} erase_ratio={delete_s / erase_s:.2f}")


if __name__ == "__main__":
    main()
