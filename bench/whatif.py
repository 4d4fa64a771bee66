"""Benchmark: ``policy what-if`` over a ledger's year against ``check`` of the same events
from a file, same run (SQLite).

    python bench/whatif.py [--entries 1000000] [--sqlite DIR]

Simulates a trust's year (``pipeline/simulate.py``, about 2.3 events a pupil: referrals,
consents, leavings, transfers, census returns of 30 pupils, late facts, redeliveries and
malformed lines) until it holds ``--entries`` records, writes them as JSON Lines, and
records the same records in a SQLite ledger as the writer would (decided by the engine,
with pseudonymised payloads, register facts and identity rows; appended directly, in
batches, rather than through the writer's per-batch reads, which only cost building time).
Then times, each best of ``--rounds``:

- check: the offline check of the file end to end (decode, digest, validate, decide,
  re-evaluate, one JSON object per decision written to a file), in events per second of
  the file's lines;
- what-if: ``audited_what_if`` with the pack in force as the candidate: every sharing
  event of the ledger read with its payload and current decision, its pupils' dates of
  birth, replayed with the register's facts, compared, and the read recorded, in events
  per second of the sharing events it examined. It must find no change (the same engine
  decided them): the bench stops if it does.

``whatif_ratio`` is what-if's events per second over check's. Target >= 0.7. Figures on a
shared machine are noisy: compare the ratio, taken in one run, not the seconds.
The last line is ``whatif_ratio=R``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.checking import check_lines, in_memory, numbered_lines
from pipeline.engine import Engine, Outcome, Position
from pipeline.ledger.reading.reads import Requester
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger, NewEntry, now_text
from pipeline.ledger.writing.ingest import LedgerWriter, Pupil
from pipeline.packs import load_pack, pack_text
from pipeline.policy.intake import read_event
from pipeline.policy.pack import Policy
from pipeline.policy.whatif import candidate_packs
from pipeline.pseudonym import pseudonymiser
from pipeline.register import Register, normalise_upn
from pipeline.reports.whatif import audited_what_if
from pipeline.simulate import simulate
from schemas.events import SHARING_MODELS

BATCH = 5_000
EVENTS_PER_PUPIL = 2.3
READER = Requester("bench", "dpo", "cli")


def key_of(upn: str) -> str:
    return hashlib.sha256(normalise_upn(upn).encode()).hexdigest()


def make_file(path: Path, entries: int) -> int:
    """The simulated year's first ``entries`` records, a line each; how many."""
    lines = simulate(int(entries / EVENTS_PER_PUPIL) + 500, violation_rate=0.05, seed=1)
    with path.open("wb") as out:
        for line in lines[:entries]:
            out.write(orjson.dumps(line.event) + b"\n")
    count = min(entries, len(lines))
    del lines
    gc.collect()
    return count


def _pupils(outcome: Outcome) -> list[Pupil]:
    event = outcome.event
    if event is None:
        return []
    if isinstance(event, SHARING_MODELS):
        given = [
            (p["upn"], p["dob"].isoformat() if "dob" in p else None) for p in event.data.pupils
        ]
    else:
        given = [(event.data.upn, None)]
    return [
        Pupil(key, normalise_upn(upn), dob)
        for key, (upn, dob) in zip(outcome.pupils, given, strict=True)
    ]


def _entries(path: Path, policy: Policy, head: int) -> Iterator[list[NewEntry]]:
    """The file's records decided by the engine and made into entries as the writer makes
    them, a batch at a time."""
    writer = LedgerWriter.__new__(LedgerWriter)
    writer.policy = policy
    engine = Engine(policy, Register(pupil_key=key_of))
    batch: list[NewEntry] = []
    recorded_at = now_text()
    with path.open("rb") as stream:
        for number, raw in numbered_lines(stream):
            reading = read_event(raw)
            position = Position.line("bench", number)
            for outcome in engine.process(raw, position, reading):
                if outcome.kind == "duplicate":
                    continue
                outcome.seq = head + len(batch) + 1
                new = writer._entry(outcome, position, recorded_at)
                if outcome.kind == "decision" and outcome.pupils:
                    writer._bring(new, outcome, reading, _pupils(outcome))
                batch.append(new)
            if len(batch) >= BATCH:
                yield batch
                head += len(batch)
                batch = []
    if batch:
        yield batch


def build(ledger: Ledger, path: Path, policy: Policy) -> float:
    seal = pseudonymiser(bytes(range(32))).identity_mac
    start = time.perf_counter()
    for batch in _entries(path, policy, 0):
        with ledger.locked() as connection:
            ledger.append(connection, batch, seal)
    return time.perf_counter() - start


def time_check(path: Path, out_path: Path, policy: Policy) -> tuple[float, int]:
    gc.freeze()  # as the check command does
    start = time.perf_counter()
    with path.open("rb") as stream, out_path.open("wb") as out:
        write = out.write

        def emit(result: dict[str, Any]) -> None:
            write(orjson.dumps(result) + b"\n")

        summary = check_lines(numbered_lines(stream), in_memory(Engine(policy)), emit)
    elapsed = time.perf_counter() - start
    gc.unfreeze()
    return elapsed, len(summary.final)


def time_what_if(ledger: Ledger, policy: Policy) -> tuple[float, dict[str, Any]]:
    text, source = pack_text()
    gc.freeze()
    start = time.perf_counter()
    report = audited_what_if(
        ledger, READER, candidate_packs(text, source), source, policy, None, None
    )
    elapsed = time.perf_counter() - start
    gc.unfreeze()
    assert report is not None
    return elapsed, report["totals"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="best of N for each side")
    parser.add_argument("--sqlite", default=None, help="folder for the SQLite file")
    args = parser.parse_args()
    policy = load_pack()
    with tempfile.TemporaryDirectory(dir=args.sqlite) as folder:
        events_path, out_path = Path(folder) / "events.jsonl", Path(folder) / "decisions.jsonl"
        lines = make_file(events_path, args.entries)
        ledger = Ledger.open(f"sqlite:///{Path(folder) / 'bench.db'}")
        schema.upgrade(ledger.engine)
        built = build(ledger, events_path, policy)
        with ledger.engine.connect() as connection:
            entries = Ledger.head(connection)[0]
        print(f"built {entries} entries from {lines} records in {built:.1f} s")
        checks = [time_check(events_path, out_path, policy) for _ in range(args.rounds)]
        check_s = min(t for t, _ in checks)
        runs = [time_what_if(ledger, policy) for _ in range(args.rounds)]
        what_if_s = min(t for t, _ in runs)
        totals = runs[0][1]
        ledger.engine.dispose()
    if totals["changed"]:
        raise SystemExit(f"what-if with the pack in force found {totals['changed']} changes")
    examined = totals["replayed"] + totals["rejected"] + totals["not_replayed"]
    check_rate, what_if_rate = lines / check_s, examined / what_if_s
    print(f"check_s={check_s:.2f} lines={lines} check_events_per_s={check_rate:,.0f}")
    print(
        f"what_if_s={what_if_s:.2f} sharing_events={examined} replayed={totals['replayed']} "
        f"rejected={totals['rejected']} changed={totals['changed']} "
        f"what_if_events_per_s={what_if_rate:,.0f}"
    )
    ratio = what_if_rate / check_rate
    print(f"target: whatif_ratio >= 0.7 -> {'met' if ratio >= 0.7 else 'NOT met'}")
    print(f"whatif_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
