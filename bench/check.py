"""Benchmark: ``check`` against a plain ``json.loads`` loop over the same file, same run.

    python bench/check.py [--events 200000] [--pupils 60000] [--seed 1]

Generates a simulated trust's year of events (sharing events, lifecycle facts, late facts,
redeliveries and malformed lines), writes it as JSON Lines, then times:

- baseline: ``json.loads`` of every line, nothing else;
- check: the offline check end to end (decode, validate, decide, re-evaluate, print one
  JSON object per decision), writing its output to a temporary file;
- for context, ``read_event`` alone (decode, digest, validate against the contract): what
  is left of the target's budget after it is what deciding, re-evaluating and printing
  may cost.

Target (the events-in/decisions-out issue): check reaches at least 30% of the baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson

# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.checking import check_lines, in_memory, numbered_lines
from pipeline.engine import Engine
from pipeline.packs import load_pack
from pipeline.policy.intake import read_event
from pipeline.simulate import simulate


def make_file(path: Path, events: int, pupils: int, seed: int) -> int:
    lines = simulate(pupils, violation_rate=0.05, seed=seed)
    if len(lines) < events:
        raise SystemExit(f"only {len(lines)} events for {pupils} pupils: raise --pupils")
    with path.open("wb") as out:
        for line in lines[:events]:
            out.write(orjson.dumps(line.event) + b"\n")
    del lines
    gc.collect()  # the simulator's objects would otherwise weigh on the collector below
    return path.stat().st_size


def time_json_loads(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb") as stream:
        for raw in stream:
            json.loads(raw)
    return time.perf_counter() - start


def time_reading(path: Path) -> float:
    """Decode, digest and validate each line (``read_event``) and nothing else: the part of
    ``check`` that any checker of the contract must do, for context beside the target."""
    start = time.perf_counter()
    with path.open("rb") as stream:
        for raw in stream:
            read_event(raw.rstrip(b"\n"))
    return time.perf_counter() - start


def time_check(path: Path, out_path: Path) -> tuple[float, int]:
    policy = load_pack()
    gc.freeze()  # as the check command does: see pipeline/cli.py
    start = time.perf_counter()
    with path.open("rb") as stream, out_path.open("wb") as out:
        write = out.write

        def emit(result: dict[str, object]) -> None:
            write(orjson.dumps(result) + b"\n")

        summary = check_lines(numbered_lines(stream), in_memory(Engine(policy)), emit)
    elapsed = time.perf_counter() - start
    gc.unfreeze()
    return elapsed, len(summary.final)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--pupils", type=int, default=90_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each side")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        events_path, out_path = Path(tmp) / "events.jsonl", Path(tmp) / "decisions.jsonl"
        size = make_file(events_path, args.events, args.pupils, args.seed)
        print(f"file: {args.events} events, {size / 1e6:.1f} MB")
        baseline = min(time_json_loads(events_path) for _ in range(args.rounds))
        reading = min(time_reading(events_path) for _ in range(args.rounds))
        runs = [time_check(events_path, out_path) for _ in range(args.rounds)]
        elapsed = min(t for t, _ in runs)
        decided = runs[0][1]
        if decided != args.events:
            raise SystemExit(f"check decided {decided} lines of {args.events}")
    base_rate, check_rate = args.events / baseline, args.events / elapsed
    print(f"baseline_json_loads_events_per_s={base_rate:,.0f}")
    print(f"check_events_per_s={check_rate:,.0f}")
    read_rate = args.events / reading
    share = read_rate / base_rate
    print(f"read_event_alone_events_per_s={read_rate:,.0f} (ratio {share:.2f}: no decision)")
    ratio = check_rate / base_rate
    print(f"target: ratio_vs_json_loads >= 0.30 -> {'met' if ratio >= 0.30 else 'NOT met'}")
    print(f"ratio_vs_json_loads={ratio:.3f}")


if __name__ == "__main__":
    main()
