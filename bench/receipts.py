"""Benchmark: from an event sent to the log's signed receipt of it, with the real worker.

    python bench/receipts.py [--events 20000] [--rounds 3] [--before REV]

Each round starts the embedded broker and a fresh SQLite ledger (its log key made first,
as ``up`` does), loads ``--events`` simulated events onto the input topics, and starts
``sharing-audit worker``. Then, with the worker still running:

- ``throughput``: the worker's steady rate draining that backlog (events/s from 10% to 90%
  of the entries, as ``bench/pipeline.py`` takes it);
- ``receipt``: ``--paced`` events sent open loop (each at its due time, whatever came
  back) at half that rate; per event, the seconds from its send to the moment its receipt
  is read from ``sharing.receipts``, matched by the position the broker gave the record;
- ``light``: ``--light`` events sent the same way at 100 events/s;
- ``emit``: the same ``--emit`` events through ``sharing-audit emit FILE`` (a process of
  its own, waiting for every receipt) and, on fresh events of the same kind, ``emit --wait
  acked`` (the broker's acknowledgements only), in turn, ``--emit-pairs`` times.

``emit_ratio`` is the median wall time of ``emit --wait acked`` over the median wall time
of ``emit`` waiting for receipts (process start-up included, since that is what a person
or a cron job waits for): R >= 0.8 means waiting for the log's receipts costs at most 25%
more time than trusting the broker.

This machine is shared and noisy: each figure is the median of its ``--rounds`` rounds.
``--before REV`` runs, in each round and in turn, the worker of commit ``REV`` (taken with
``git archive``) on a broker and ledger of its own, so that a change that buys latency
with throughput shows as ``ratio_throughput_vs_before`` below 1.

Targets (issue 30): receipt p50 < 250 ms and p99 < 1,000 ms at half the throughput,
p99 < 200 ms at 100 events/s, emit_ratio >= 0.8. The last line reads
``receipt_p50_ms=A receipt_p99_ms=B light_p99_ms=C emit_ratio=R``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's pipeline package, before bench/pipeline.py

from pipeline.cli.options import log_verifier_for  # noqa: E402
from pipeline.cli.worker import log_key_ready  # noqa: E402
from pipeline.engine import Engine  # noqa: E402
from pipeline.packs import load_pack  # noqa: E402
from pipeline.transparency.delivery import ReceiptRefused, open_receipt  # noqa: E402
from pipeline.transparency.note import Verifier  # noqa: E402
from pipeline.transport.broker import EmbeddedBroker  # noqa: E402
from pipeline.transport.kafka import (  # noqa: E402
    RECEIPTS_TOPIC,
    KafkaConfig,
    ensure_topics,
    read_topic,
)
from pipeline.transport.mis import MisProducer  # noqa: E402
from pipeline.transport.processes import Worker, worker_command  # noqa: E402
from pipeline.transport.receipts import ReceiptFeed  # noqa: E402

LIGHT_RATE = 100.0


def _bench_module(name: str) -> ModuleType:
    """``bench/NAME.py`` (``pipeline`` there would be taken for the project's package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(1, str(ROOT / "bench"))  # its own imports (scratch)
    spec.loader.exec_module(module)
    return module


bp = _bench_module("pipeline")


class ReceiptClock:
    """When each receipt was first read from ``sharing.receipts``, by the position it
    names; read on a thread of its own from the topic's end as it was when opened. Each
    note is only timed as it is read, and opened (its signature checked) when asked for:
    this process also sends, and checking as they came would delay both."""

    def __init__(self, kafka: KafkaConfig) -> None:
        self.feed = ReceiptFeed(kafka)
        self.read: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            notes = self.feed.notes(0.1)
            now = time.time()
            self.read.extend((now, note) for note in notes)

    def seen(self, log: Verifier) -> dict[tuple[str, int, int], float]:
        """When the first receipt the log signed for each position was read."""
        out: dict[tuple[str, int, int], float] = {}
        opened = len(self.read)
        for at, note in self.read[:opened]:
            try:
                receipt = open_receipt(note, log)
            except ReceiptRefused:
                continue
            out.setdefault((receipt.topic, receipt.partition, receipt.offset), at)
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.feed.close()


def send_to_receipt(
    kafka: KafkaConfig, log: Verifier, records: Sequence[bytes], rate: float
) -> list[float]:
    """Send ``records`` open loop at ``rate`` per second; the seconds from each send to
    its receipt, in the order sent. Exits naming how many records got none within two minutes."""
    clock = ReceiptClock(kafka)
    try:
        with MisProducer(kafka) as producer:
            sends: list[tuple[float, Any]] = []
            start = time.time()
            for number, raw in enumerate(records):
                pause = start + number / rate - time.time()
                if pause > 0:
                    time.sleep(pause)
                sends.append((time.time(), producer.send_record(raw)))
            producer.flush()
            sent = {}
            for at, future in sends:
                metadata = future.get(timeout=30)
                sent[(metadata.topic, metadata.partition, metadata.offset)] = at
        deadline = time.monotonic() + 120
        while len(clock.read) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = clock.seen(log)
        while any(p not in seen for p in sent) and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = clock.seen(log)
    finally:
        clock.close()
    missing = [p for p in sent if p not in seen]
    if missing:
        raise SystemExit(f"{len(missing)} of {len(sent)} records hold no receipt after 2 min")
    return [seen[p] - at for p, at in sorted(sent.items(), key=lambda item: item[1])]


def emit_seconds(kafka: KafkaConfig, url: str, records: Sequence[bytes], acked: bool) -> float:
    """Wall seconds of ``sharing-audit emit`` sending ``records`` (a process of its own),
    waiting for every receipt, or with ``acked`` only for the broker's acknowledgements."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as file:
        file.write(b"\n".join(records) + b"\n")
        file.flush()
        command = [sys.executable, "-m", "pipeline.cli", "emit", file.name]
        command += ["--broker", kafka.bootstrap, "--db", url]
        command += ["--wait", "acked"] if acked else []
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"emit failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return took


def ms(seconds: float) -> float:
    return seconds * 1000


@contextmanager
def running_worker(kafka: KafkaConfig, url: str, scratch: Path, root: Path) -> Iterator[Worker]:
    """The worker of checkout ``root`` (this one or ``--before``'s) on ``url``."""
    command, env = worker_command(kafka.bootstrap, url), dict(bp.WORKER_ENV)
    if root != ROOT:  # -P: the checkout on PYTHONPATH comes before the working directory
        command = [command[0], "-P", *command[1:]]
        env["PYTHONPATH"] = str(root)
    worker = Worker(command, log_file=scratch / "worker.log", env=env)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def one_round(args: argparse.Namespace, records: list[bytes], root: Path) -> dict[str, float]:
    """A fresh broker and ledger, the worker of ``root``: its throughput, latencies and
    (for this checkout only) the emit times."""
    stock = iter(records)

    def take(count: int) -> list[bytes]:
        return [next(stock) for _ in range(count)]

    bulk = take(args.events)
    out: dict[str, float] = {}
    with bp.fresh_ledger("sqlite") as (scratch, url), EmbeddedBroker() as broker:
        kafka = broker.config
        ensure_topics(kafka)
        bp.load(kafka, bulk)
        log_key_ready(url)
        log = log_verifier_for(None, url)
        assert log is not None, "the ledger has no log key"
        with running_worker(kafka, url, scratch, root) as worker:
            expected = bp.expected_of(bulk, Engine(load_pack())).entries
            rate = out["throughput"] = bp.pipeline_rate(worker, url, expected)
            # The backlog's receipts trail its ledger entries: paced sends start once the
            # last is out, or they would wait behind them.
            read_topic(kafka, RECEIPTS_TOPIC, len(bulk), timeout=120)
            half = send_to_receipt(kafka, log, take(args.paced), rate / 2)
            out.update(spread(half, ""))
            # Rising from the first fifth of the run to the last: the worker fell behind.
            fifth = len(half) // 5
            out["first_p50"] = statistics.median(half[:fifth])
            out["last_p50"] = statistics.median(half[-fifth:])
            light = send_to_receipt(kafka, log, take(args.light), LIGHT_RATE)
            out.update(spread(light, "light_"))
            if root == ROOT:
                out.update(emit_pair(args, kafka, url, take))
    return out


def spread(latencies: list[float], prefix: str) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        f"{prefix}p50": bp.percentile(ordered, 50),
        f"{prefix}p99": bp.percentile(ordered, 99),
    }


def emit_pair(
    args: argparse.Namespace, kafka: KafkaConfig, url: str, take: Any
) -> dict[str, float]:
    """Median seconds of ``emit`` waiting for receipts and of ``emit --wait acked``."""
    recorded: list[float] = []
    acked: list[float] = []
    for number in range(args.emit_pairs):
        # Each goes first in turn: whichever runs first in a pair may pay for the other.
        for wait_acked in (False, True) if number % 2 == 0 else (True, False):
            took = emit_seconds(kafka, url, take(args.emit), acked=wait_acked)
            (acked if wait_acked else recorded).append(took)
    return {"emit_recorded": statistics.median(recorded), "emit_acked": statistics.median(acked)}


def show(name: str, r: dict[str, float]) -> None:
    line = (
        f"{name}: {r['throughput']:.0f} events/s; receipt at {r['throughput'] / 2:.0f}/s "
        f"p50 {ms(r['p50']):.0f} ms p99 {ms(r['p99']):.0f} ms (p50 of the first fifth "
        f"{ms(r['first_p50']):.0f} ms, last {ms(r['last_p50']):.0f}); at {LIGHT_RATE:.0f}/s "
        f"p50 {ms(r['light_p50']):.0f} ms p99 {ms(r['light_p99']):.0f} ms"
    )
    if "emit_recorded" in r:
        line += f"; emit {r['emit_recorded']:.2f} s, --wait acked {r['emit_acked']:.2f} s"
    print(line, flush=True)


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def per_round(args: argparse.Namespace) -> int:
    """Events one round of one checkout takes."""
    return args.events + args.paced + args.light + 2 * args.emit * args.emit_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="backlog for the throughput")
    parser.add_argument("--paced", type=int, default=4_000, help="events sent at half of it")
    parser.add_argument("--light", type=int, default=1_000, help="events sent at 100/s")
    parser.add_argument("--emit", type=int, default=1_000, help="events per emit run")
    parser.add_argument("--emit-pairs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="median of N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--before", help="also run the worker of this commit, in turn")
    args = parser.parse_args()

    records = bp.events(per_round(args), args.seed)
    now: list[dict[str, float]] = []
    then: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-receipts-") as folder:
        before = Path(folder) / "before"
        if args.before:
            bp._checkout(args.before, before)
        for number in range(1, args.rounds + 1):
            print(f"== round {number} of {args.rounds}", flush=True)
            if args.before:
                then.append(one_round(args, records, before))
                show(f"worker at {args.before}", then[-1])
            now.append(one_round(args, records, ROOT))
            show("worker now", now[-1])
    mid = median_of(now)
    print(f"median of {args.rounds} rounds:")
    if then:
        old = median_of(then)
        show(f"  worker at {args.before}", old)
        show("  worker now", mid)
        print(f"ratio_throughput_vs_before={mid['throughput'] / old['throughput']:.2f}")
    else:
        show("  worker now", mid)
    ratio = mid["emit_acked"] / mid["emit_recorded"]
    print(f"throughput_events_per_s={mid['throughput']:.0f}")
    print(
        "emit_ratio = emit --wait acked seconds / emit (waiting for receipts) seconds, "
        f"same events, same run: {mid['emit_acked']:.2f} / {mid['emit_recorded']:.2f}"
    )
    targets = [
        ("receipt p50 < 250 ms", ms(mid["p50"]) < 250),
        ("receipt p99 < 1000 ms", ms(mid["p99"]) < 1000),
        ("light p99 < 200 ms", ms(mid["light_p99"]) < 200),
        ("emit_ratio >= 0.8", ratio >= 0.8),
    ]
    print("targets: " + ", ".join(f"{t} {'met' if ok else 'NOT met'}" for t, ok in targets))
    print(
        f"receipt_p50_ms={ms(mid['p50']):.0f} receipt_p99_ms={ms(mid['p99']):.0f} "
        f"light_p99_ms={ms(mid['light_p99']):.0f} emit_ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    os.environ.setdefault("SHARING_AUDIT_LOG_LEVEL", "WARNING")
    main()
