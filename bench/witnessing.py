"""Benchmark: recording a simulated year with a witness that never answers, against no witness.

    python bench/witnessing.py [--pupils 2000] [--batch 100] [--rounds 5] [--deadline 5]

A simulated school year (``--pupils`` 2,000: 4,623 events) is recorded by the ledger
writer as the worker's writer process runs it (``agents.writer.start`` and ``write``, in a
fresh process and on a fresh SQLite ledger each run), in batches of ``--batch`` records,
signing a checkpoint every second. Two ways, in turn, ``--rounds`` times:

- ``none``: no witness;
- ``silent``: one witness that accepts every connection and never answers (a socket on
  127.0.0.1 that holds each request), given ``--deadline`` seconds per request.

Each run's figure is the seconds from the first batch handed to the writer to the last
one recorded; each way's median round counts (this machine is shared and noisy: a single
round moves by a quarter). Before checkpoints were published off the writer's path, the
silent witness held the writer for its 5 s timeout at every checkpoint: in this harness
2.1 to 3.1 s without a witness and 238 s with the silent one (commit 03d0461).

Target (issue 29): the year with the silent witness takes at most 1/0.9 of the time it
takes without one, in the same run. The last line reads ``ratio_silent_vs_none=R``: the
time without a witness over the time with the silent one (at least 0.90).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/

import orjson

from pipeline.simulate import simulate
from tests.integration.peers import peer, silent

LOG_KEY = bytes(range(32))
WITNESS_KEY = bytes(range(1, 33))


def record_year(records_file: str, batch: int, witness: str, deadline: float) -> None:
    """In a process of its own: record the year as the writer process does; print the
    seconds it took and the checkpoints signed meanwhile."""
    from agents import writer
    from agents.publisher import Checkpointing
    from pipeline.engine import Position
    from pipeline.ledger.log.witnessing import Witness
    from pipeline.ledger.storage.schema import prepare
    from pipeline.ledger.storage.store import Ledger
    from pipeline.packs import load_pack
    from pipeline.transparency.note import COSIGNATURE, Signer

    records = Path(records_file).read_bytes().split(b"\n")
    witnesses = ()
    if witness != "-":
        key = Signer("bench.example/witness", WITNESS_KEY, COSIGNATURE)
        witnesses = (Witness(witness, key.verifier),)
    signer = Signer("bench.example/sharing-audit", LOG_KEY)
    checkpoints = Checkpointing(signer, 1.0, witnesses=witnesses, deadline=deadline)
    with tempfile.TemporaryDirectory(prefix="bench-witnessing-") as folder:
        url = f"sqlite:///{folder}/ledger.db"
        prepare(Ledger.open(url).engine)
        writer.start(writer.WriterSpec(url, load_pack(), b"\xb3" * 32, "ERROR", checkpoints))
        positioned = [(raw, Position("sharing.census", 0, n)) for n, raw in enumerate(records)]
        start = time.perf_counter()
        for first in range(0, len(positioned), batch):
            result = writer.write(positioned[first : first + batch])
            if isinstance(result, writer.Failed):
                raise SystemExit(f"the writer failed: {result.error}")
        seconds = time.perf_counter() - start
        with Ledger.open(url).engine.connect() as connection:
            signed = connection.exec_driver_sql("SELECT count(*) FROM log_checkpoint").scalar()
    print(orjson.dumps({"seconds": seconds, "checkpoints": signed}).decode(), flush=True)


def run(records_file: Path, batch: int, witness: str, deadline: float) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(records_file), str(batch), witness]
    done = subprocess.run([*command, str(deadline)], capture_output=True, check=True, timeout=600)
    figures: dict[str, float] = orjson.loads(done.stdout.splitlines()[-1])
    return figures


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        records_file, batch, witness, deadline = sys.argv[2:6]
        record_year(records_file, int(batch), witness, float(deadline))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=5.0)
    args = parser.parse_args()
    lines = simulate(args.pupils, 0.05, 1)
    times: dict[str, list[float]] = {"none": [], "silent": []}
    with tempfile.TemporaryDirectory(prefix="bench-witnessing-") as folder, peer(silent) as quiet:
        records_file = Path(folder) / "records.jsonl"
        records_file.write_bytes(b"\n".join(orjson.dumps(line.event) for line in lines))
        print(f"a year of {len(lines):,} events in batches of {args.batch}, a checkpoint a second")
        for round_ in range(1, args.rounds + 1):
            for way, witness in (("none", "-"), ("silent", quiet.url)):
                figures = run(records_file, args.batch, witness, args.deadline)
                times[way].append(figures["seconds"])
                print(
                    f"round {round_} {way}: {figures['seconds']:.2f} s, "
                    f"{figures['checkpoints']:.0f} checkpoints signed",
                    flush=True,
                )
        held = len(quiet.requests)
    none, with_silent = statistics.median(times["none"]), statistics.median(times["silent"])
    ratio = none / with_silent
    print(f"no witness: {none:.2f} s (median); a witness that never answers: {with_silent:.2f} s")
    print(f"requests the silent witness took and never answered: {held}")
    print(f"target: at least 0.90 -> {'met' if ratio >= 0.9 else 'NOT met'}")
    print(f"ratio_silent_vs_none={ratio:.2f}")


if __name__ == "__main__":
    main()
