"""Benchmark: broker -> agents -> ledger, against Faust doing nothing, same topics, same run.

    python bench/pipeline.py [--events 100000] [--db sqlite|postgresql|URL]

Starts the embedded broker, loads a simulated trust's year of events onto the input
topics once, then lets three consumers read all of them, each in a group of its own:

- ``aiokafka``: a bare aiokafka consumer of the four topics (the client's ceiling);
- ``noop-faust``: a Faust worker with the agents' settings, batching and collector
  setting (``agents.worker.settle_heap``), acking every batch and doing nothing else
  (Faust's own ceiling);
- ``pipeline``: ``sharing-audit worker``: decide, append to the ledger, commit, ack.

Each rate is taken over the same stretch, from 10% to 90% of the records handled, so that
start-up and the last stragglers weigh on none of them. Then,
with the worker still running, events are sent at half its measured rate and the
latency from send to ledger commit is taken per event (p50, p99).

The whole comparison runs ``--rounds`` times, each on a fresh broker and ledger, and each
consumer's median round counts. This machine is shared and noisy, and a round can also
flatter a Faust consumer: records fetched into its buffers before its agents got going are
then handled without the cost of fetching them. The median discounts a round that is off
in either direction. Latency is measured in the last round.

The no-op agent's rate mixes two paces: Faust's own, per record, while its buffers hold
records, and its waits for the next fetch, which come in the second half of a drain (the
embedded broker answers a fetch with about a megabyte of one partition). Its fastest
second is printed beside it, and the pipeline's rate against that too, for a reading of
how far the agents are from Faust's per-record pace; the target is on the steady rate.

Target (the stream agents issue): ``ratio_vs_noop_faust`` of at least 0.70 on SQLite.
The last line reads ``ratio_vs_noop_faust=R``.

``--workers 1,2,3`` measures what more workers buy: for each count, a fresh broker and
ledger (``--db``, PostgreSQL for more than one), the events loaded, then that many
``sharing-audit worker`` processes in one consumer group sharing the topics' partitions
and appending to one chain; the steady rate of each count and its ratio to one worker,
in one run. The last line reads ``workers=N:R,...`` (the ratios).

``--writer-only`` measures the ledger writer alone, in this process, with no broker: the
CPU time per event of ``LedgerWriter.write`` over the same events in batches of
``--batch``, against the CPU time per event of only decoding them (``json.loads``),
both taken in the same run. The writer is the pipeline's bottleneck, so this is the
figure a change to it moves.

``--writer-only --before REV`` compares the writer with the writer of commit ``REV``
(taken with ``git archive``) in the same run, a round of each in turn, each round in a
fresh process on a fresh ledger: ``--before 7339b35`` is the writer as the restructuring
issue found it, reading each record twice (the last commit before that changed, and the
first whose bench has ``--writer-only``). The last line reads
``ratio_writer_vs_before=R``.

``--writer-only --before REV --instructions`` counts instead of timing: the instructions
the writer of each checkout executes per event (valgrind's callgrind, user space only), on
the same records, as the difference between writing ``--events`` records and writing a
third of them, over the events in between. The count moves by a fraction of a percent
from run to run, where CPU time on this shared machine moves by a quarter; so it shows a
change of a few percent that timing cannot. It leaves out the kernel's share (SQLite's
writes and fsyncs), and valgrind runs SHA-256 without the CPU's SHA instructions, which
weighs against whichever writer hashes more. The last line reads
``ratio_instructions_vs_before=R``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_postgres  # noqa: E402

from agents import writer  # noqa: E402
from pipeline.checking import expected_of  # noqa: E402
from pipeline.engine import Engine, Position  # noqa: E402
from pipeline.ledger.reading.queries import entry_count  # noqa: E402
from pipeline.ledger.records.entry import EntryKind  # noqa: E402
from pipeline.ledger.storage.schema import prepare  # noqa: E402
from pipeline.ledger.storage.store import Ledger, from_utc_text  # noqa: E402
from pipeline.packs import load_pack  # noqa: E402
from pipeline.register import check_upn  # noqa: E402
from pipeline.simulate import simulate  # noqa: E402
from pipeline.transport.broker import EmbeddedBroker  # noqa: E402
from pipeline.transport.kafka import INPUT_TOPICS, KafkaConfig, ensure_topics  # noqa: E402
from pipeline.transport.mis import MisProducer  # noqa: E402
from pipeline.transport.processes import Worker, worker_command  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def events(count: int, seed: int) -> list[bytes]:
    lines = simulate(max(1000, count // 2), violation_rate=0.05, seed=seed)
    while len(lines) < count:
        raise SystemExit(f"only {len(lines)} events simulated")
    return [orjson.dumps(line.event) for line in lines[:count]]


def load(kafka: KafkaConfig, records: list[bytes]) -> None:
    with MisProducer(kafka) as producer:
        producer.send_all(records, timeout=120)


# -- baseline 1: a bare aiokafka consumer ---------------------------------------------------


async def _aiokafka_rate(kafka: KafkaConfig, count: int) -> float:
    from aiokafka import AIOKafkaConsumer

    from pipeline.transport.kafka import SESSION_TIMEOUT_MS

    consumer = AIOKafkaConsumer(
        *INPUT_TOPICS,
        bootstrap_servers=kafka.bootstrap,
        group_id="bench-aiokafka",
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=1000,
        max_poll_records=500,
    )
    await consumer.start()
    seen, marks = 0, []
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            for records in batches.values():
                seen += len(records)
                if records:
                    marks.append((time.perf_counter(), seen))
    finally:
        await consumer.stop()
    return steady_rate(marks, count)


def steady_rate(marks: list[tuple[float, int]], count: int) -> float:
    """Records per second between the first mark at or past 10% of ``count`` and the first
    at or past 90%. ``marks``: (time, records handled so far), in order. Every consumer is
    measured alike, and none gains from records fetched while it was still starting up
    nor loses to a slow last batch."""
    low = next(m for m in marks if m[1] >= count * 0.1)
    high = next(m for m in marks if m[1] >= count * 0.9)
    return (high[1] - low[1]) / (high[0] - low[0])


def fastest_second(marks: list[tuple[float, int]]) -> float:
    """The most records handled in any one second (``marks`` as for :func:`steady_rate`).
    Faust doing nothing handles records at this pace while its buffers hold some, and
    waits for fetches the rest of the time: the steady rate mixes the two."""
    best, first = 0, 0
    for last in range(len(marks)):
        while marks[last][0] - marks[first][0] > 1.0:
            first += 1
        best = max(best, marks[last][1] - marks[first][1])
    return float(best)


# -- baseline 2: Faust doing nothing --------------------------------------------------------


def noop_worker(broker: str, count: int, out: Path) -> None:
    """A Faust worker with the agents' settings and batching that only acks."""
    import faust

    from agents.recorder import Batching
    from agents.worker import settle_heap
    from pipeline.transport.kafka import faust_settings

    batching = Batching()
    app = faust.App(
        "bench-noop",
        **faust_settings(KafkaConfig(bootstrap=broker)),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
    )
    marks: list[tuple[float, int]] = []

    async def noop(stream: faust.StreamT) -> None:
        async for batch in stream.noack_take(batching.size, within=batching.within):
            for event in batch:
                await stream.ack(event)
            seen = (marks[-1][1] if marks else 0) + len(batch)
            marks.append((time.perf_counter(), seen))
            if seen >= count:
                out.write_text(f"{steady_rate(marks, count)} {fastest_second(marks)}")

    for name in INPUT_TOPICS:
        topic = app.topic(name, value_serializer="raw", key_serializer="raw")

        async def agent(stream: faust.StreamT) -> None:
            await noop(stream)

        app.agent(topic, name=f"noop-{name}")(agent)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    settle_heap()  # as the agents' worker does
    worker.execute_from_commandline()


def noop_faust_rate(broker: str, count: int, scratch: Path) -> tuple[float, float]:
    """The no-op worker's steady rate, and its fastest second."""
    out = scratch / "noop-rate"
    worker = Worker(
        [sys.executable, __file__, "noop-worker", broker, str(count), str(out)],
        log_file=scratch / "noop.log",
    )
    worker.start()
    try:
        deadline = time.monotonic() + 600
        while not out.exists() and time.monotonic() < deadline and worker.running:
            time.sleep(0.5)
        if not out.exists():
            raise SystemExit(
                "the no-op Faust worker did not finish: "
                + (scratch / "noop.log").read_text()[-2000:]
            )
        steady, fastest = out.read_text().split()
        return float(steady), float(fastest)
    finally:
        worker.stop()


# -- the pipeline ---------------------------------------------------------------------------


def _recorded(url: str) -> list[tuple[str, str]]:
    """(event id, recorded at) of every decision entry, in ledger order."""
    ledger = Ledger.open(url)
    with ledger.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT event_id, recorded_at FROM ledger_entry WHERE kind = 'decision' ORDER BY seq"
        ).all()
    ledger.engine.dispose()
    return [(r[0], r[1]) for r in rows]


_ENGINES: dict[str, Ledger] = {}


def _entries(url: str, kind: EntryKind) -> int:
    """Entries of ``kind`` so far; one engine per URL, so that polling costs little CPU."""
    ledger = _ENGINES.setdefault(url, Ledger.open(url))
    with ledger.engine.connect() as connection:
        return entry_count(connection, kind)


def _count(url: str) -> int:
    """Decision entries so far (0 while the worker has yet to create the ledger)."""
    try:
        return _entries(url, EntryKind.DECISION)
    except Exception:
        return 0


def _instant(text: str) -> float:
    return from_utc_text(text).timestamp()


def pipeline_rate(worker: Worker, url: str, count: int) -> float:
    deadline = time.monotonic() + 900
    while _count(url) < count and time.monotonic() < deadline and worker.running:
        time.sleep(1.0)
    rows = _recorded(url)
    if len(rows) < count:
        raise SystemExit(f"the worker recorded {len(rows)} of {count}")
    marks: list[tuple[float, int]] = []  # one per transaction: its entries share a time
    for number, (_, at) in enumerate(rows, 1):
        instant = _instant(at)
        if marks and marks[-1][0] == instant:
            marks[-1] = (instant, number)
        else:
            marks.append((instant, number))
    return steady_rate(marks, count)


def latencies(
    kafka: KafkaConfig, url: str, records: list[bytes], rate: float, expected_total: int
) -> list[float]:
    """Send ``records`` at ``rate`` per second; seconds from each send to its ledger entry.
    ``expected_total``: decision entries once they are all recorded."""
    sent: dict[str, float] = {}
    with MisProducer(kafka) as producer:
        start = time.time()
        for number, raw in enumerate(records):
            due = start + number / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            sent[orjson.loads(raw)["id"]] = time.time()
            producer.send_record(raw)
        producer.flush()
    deadline = time.monotonic() + 300
    while _count(url) < expected_total and time.monotonic() < deadline:
        time.sleep(0.5)
    return sorted(_instant(at) - sent[eid] for eid, at in _recorded(url) if eid in sent)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


@contextmanager
def ledger_url(choice: str, folder: Path) -> Iterator[str]:
    """The round's ledger: a file in ``folder``, a scratch PostgreSQL database, or a URL."""
    if choice == "sqlite":
        yield f"sqlite:///{folder / 'ledger.db'}"
    elif choice == "postgresql":
        with scratch_postgres(PG_ADMIN) as url:
            yield url
    else:
        yield choice


#: What every worker process of a round is run with.
WORKER_ENV = {"SHARING_AUDIT_PSEUDONYM_KEY": "b3" * 32, "SHARING_AUDIT_LOG_LEVEL": "WARNING"}


@contextmanager
def fresh_ledger(choice: str) -> Iterator[tuple[Path, str]]:
    """A scratch folder and a fresh ledger in it (or a scratch PostgreSQL database) for one
    round; the round's polling engines are let go before the database is dropped."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder,
        ledger_url(choice, Path(folder)) as url,
    ):
        try:
            yield Path(folder), url
        finally:
            for ledger in _ENGINES.values():
                ledger.engine.dispose()
            _ENGINES.clear()


def writer_cost(records: list[bytes], url: str, batch: int) -> tuple[float, float]:
    """CPU microseconds per event: of the worker's writer (``agents.writer``, as its own
    process runs it, collector settings included) deciding and appending ``records`` in
    batches of ``batch`` to a fresh ledger, and of only reading them (the baseline)."""
    prepare(Ledger.open(url).engine)
    check_upn.cache_clear()  # each round starts as cold as the first
    writer.start(writer.WriterSpec(url, load_pack(), b"\xb3" * 32, log_level="WARNING"))
    positioned = [
        (raw, Position("sharing.events", 0, offset)) for offset, raw in enumerate(records)
    ]
    # Batch by batch, the baseline then the writer: this machine's pace drifts by a
    # quarter over a minute, and interleaved, both are taken at the same pace.
    reading = writing = 0.0
    for first in range(0, len(positioned), batch):
        chunk = positioned[first : first + batch]
        started = time.process_time()
        for raw, _ in chunk:
            json.loads(raw)
        read_at = time.process_time()
        result = writer.write(chunk)
        writing += time.process_time() - read_at
        reading += read_at - started
        assert not isinstance(result, writer.Failed), result
    reading, writing = reading / len(records) * 1e6, writing / len(records) * 1e6
    with Ledger.open(url).engine.connect() as connection:
        recorded = entry_count(connection)
    expected = expected_of(records, Engine(load_pack())).entries
    assert recorded == expected, f"the writer recorded {recorded} decisions, not {expected}"
    return writing, reading


def writer_only(args: argparse.Namespace, records: list[bytes]) -> None:
    """The writer's cost per event, median of ``--rounds``, each on a fresh ledger."""
    costs: list[tuple[float, float]] = []
    for number in range(1, args.rounds + 1):
        with fresh_ledger(args.db) as (_, url):
            writing, reading = writer_cost(records[: args.events], url, args.batch)
        print(
            f"round {number}: writer {writing:.1f} us/event, json.loads alone {reading:.1f}",
            flush=True,
        )
        costs.append((writing, reading))
    writing = statistics.median(w for w, _ in costs)
    reading = statistics.median(r for _, r in costs)
    print(f"writer_us_per_event={writing:.1f}")
    print(f"json_loads_us_per_event={reading:.1f}")
    print(f"ratio_writer_vs_json_loads={writing / reading:.2f}")


def writer_against(args: argparse.Namespace, before: str) -> None:
    """The writer's cost per event, and the writer's of commit ``before``, a round of each
    in turn (this machine's pace drifts), each the median of ``--rounds``."""
    with tempfile.TemporaryDirectory(prefix="bench-before-") as folder:
        _checkout(before, Path(folder) / "before")
        costs: dict[str, list[float]] = {"before": [], "now": []}
        for number in range(1, args.rounds + 1):
            for name, root in (("before", Path(folder) / "before"), ("now", ROOT)):
                costs[name].append(_writer_round(root, args))
            print(
                f"round {number}: writer {costs['now'][-1]:.1f} us/event, "
                f"at {before} {costs['before'][-1]:.1f}",
                flush=True,
            )
    now, then = statistics.median(costs["now"]), statistics.median(costs["before"])
    print(f"writer_us_per_event={now:.1f}")
    print(f"writer_before_us_per_event={then:.1f} (commit {before})")
    print(f"ratio_writer_vs_before={now / then:.2f}")


def instructions_against(args: argparse.Namespace, before: str) -> None:
    """Instructions per event of the writer and of the writer of commit ``before``."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
    with tempfile.TemporaryDirectory(prefix="bench-before-") as folder:
        _checkout(before, Path(folder) / "before")
        records = Path(folder) / "records"
        records.write_bytes(b"\n".join(events(args.events, args.seed)))
        counts = {
            name: _instructions_per_event(root, records, args)
            for name, root in (("before", Path(folder) / "before"), ("now", ROOT))
        }
    print(f"writer_instructions_per_event={counts['now']:,.0f}")
    print(f"writer_before_instructions_per_event={counts['before']:,.0f} (commit {before})")
    print(f"ratio_instructions_vs_before={counts['now'] / counts['before']:.3f}")


def _instructions_per_event(root: Path, records: Path, args: argparse.Namespace) -> float:
    """Instructions per event of ``root``'s writer over the records between a third of
    ``--events`` and all of them: start-up, imports and the first batches are left out."""
    low, high = args.events // 3, args.events
    counts = []
    for events_written in (low, high):
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        command += [sys.executable, str(ROOT / "bench" / "writer_process.py"), str(root)]
        command += [str(records), str(events_written), str(args.batch)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"the writer of {root} under callgrind failed:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    per_event = (counts[1] - counts[0]) / (high - low)
    print(f"{root}: {per_event:,.0f} instructions per event", flush=True)
    return per_event


def _checkout(commit: str, folder: Path) -> None:
    """The files of ``commit`` in ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"--before {commit}: {archive.stderr.decode().strip()}")
    folder.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)


def _writer_round(root: Path, args: argparse.Namespace) -> float:
    """One round of ``root``'s own writer-only bench, in a process of its own."""
    command = [sys.executable, str(root / "bench" / "pipeline.py"), "--writer-only"]
    command += ["--rounds", "1", "--events", str(args.events), "--batch", str(args.batch)]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("writer_us_per_event="):
            return float(line.split("=", 1)[1])
    raise SystemExit(f"the writer bench in {root} printed no figure:\n{done.stderr[-2000:]}")


def one_round(
    args: argparse.Namespace, records: list[bytes], with_latency: bool
) -> dict[str, float]:
    """A fresh broker and ledger; the three consumers' rates, and the latency if asked."""
    bulk, paced = records[: args.events], records[args.events :]
    rates: dict[str, float] = {}
    with fresh_ledger(args.db) as (scratch, url), EmbeddedBroker() as broker:
        kafka = broker.config
        ensure_topics(kafka)
        started = time.perf_counter()
        load(kafka, bulk)
        print(
            f"loaded {len(bulk)} events onto {len(INPUT_TOPICS)} topics "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        rates["aiokafka"] = asyncio.run(_aiokafka_rate(kafka, len(bulk)))
        print(f"aiokafka consumer:   {rates['aiokafka']:9.0f} events/s", flush=True)
        rates["noop"], rates["noop_fastest"] = noop_faust_rate(kafka.bootstrap, len(bulk), scratch)
        fastest = rates["noop_fastest"]
        print(
            f"no-op Faust agent:   {rates['noop']:9.0f} events/s "
            f"({fastest:.0f} in its fastest second)",
            flush=True,
        )

        expected = expected_of(bulk, Engine(load_pack()))
        worker = Worker(
            worker_command(kafka.bootstrap, url), log_file=scratch / "worker.log", env=WORKER_ENV
        )
        worker.start()
        try:
            rate = rates["pipeline"] = pipeline_rate(worker, url, expected.entries)
            # How far the topics' paces drifted apart in event time: a fact decided
            # after sharing events timed after it re-decides each of them.
            redecided = _entries(url, EntryKind.REEVALUATION)
            print(
                f"pipeline ({args.db}): {rate:9.0f} events/s ({redecided:,} re-evaluations)",
                flush=True,
            )
            if with_latency and paced:
                total = expected_of(records, Engine(load_pack())).entries
                lat = latencies(kafka, url, paced, rate / 2, total)
                print(
                    f"latency send -> ledger at {rate / 2:.0f} events/s over "
                    f"{len(lat)} events: p50 {percentile(lat, 50) * 1000:.0f} ms, "
                    f"p99 {percentile(lat, 99) * 1000:.0f} ms"
                )
        finally:
            worker.stop()
    return rates


def workers_round(args: argparse.Namespace, records: list[bytes], count: int) -> float:
    """Events per second with ``count`` workers on a fresh broker and ledger."""
    with fresh_ledger(args.db) as (scratch, url), EmbeddedBroker() as broker:
        kafka = broker.config
        ensure_topics(kafka)
        load(kafka, records)
        prepare(Ledger.open(url).engine)  # one schema, not a race of N workers
        expected = expected_of(records, Engine(load_pack()))
        workers = [
            Worker(
                worker_command(kafka.bootstrap, url),
                log_file=scratch / f"worker-{n}.log",
                env=WORKER_ENV,
            )
            for n in range(count)
        ]
        for worker in workers:
            worker.start()
        try:
            return pipeline_rate(workers[0], url, expected.entries)
        finally:
            for worker in workers:
                worker.stop()


def workers_mode(args: argparse.Namespace, records: list[bytes]) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    rates = {}
    for count in counts:
        rates[count] = workers_round(args, records[: args.events], count)
        print(f"{count} worker{'s' if count > 1 else ''} ({args.db}): {rates[count]:9.0f} events/s")
    base = rates[counts[0]]
    print(", ".join(f"{n} workers: {rates[n] / base:.2f} of {counts[0]}" for n in counts))
    print("workers=" + ",".join(f"{n}:{rates[n] / base:.2f}" for n in counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency-events", type=int, default=10_000)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="median of N for each consumer")
    parser.add_argument("--writer-only", action="store_true", help="the writer alone, no broker")
    parser.add_argument("--batch", type=int, default=1000, help="records per write (--writer-only)")
    parser.add_argument("--workers", help="worker counts to compare, such as 1,2,3")
    parser.add_argument("--before", help="with --writer-only: the commit to compare with")
    parser.add_argument(
        "--instructions", action="store_true", help="with --before: count instructions (valgrind)"
    )
    args = parser.parse_args()

    if args.writer_only and args.before and args.instructions:
        instructions_against(args, args.before)
        return
    if args.writer_only and args.before:
        writer_against(args, args.before)
        return
    records = events(args.events + args.latency_events, args.seed)
    if args.writer_only:
        writer_only(args, records)
        return
    if args.workers:
        workers_mode(args, records)
        return
    rounds = []
    for number in range(1, args.rounds + 1):
        print(f"== round {number} of {args.rounds}", flush=True)
        rounds.append(one_round(args, records, with_latency=number == args.rounds))
    mid = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    print(
        f"median of {args.rounds}: aiokafka {mid['aiokafka']:.0f}, no-op Faust "
        f"{mid['noop']:.0f} ({mid['noop_fastest']:.0f} in its fastest second), "
        f"pipeline {mid['pipeline']:.0f} events/s"
    )
    # Each round's own ratio shows how far the machine's pace moved between rounds.
    each = ", ".join(f"{r['pipeline'] / r['noop']:.2f}" for r in rounds)
    print(f"pipeline / no-op Faust, round by round: {each}")
    ratio = mid["pipeline"] / mid["noop"]
    print(f"target: ratio_vs_noop_faust >= 0.70 -> {'met' if ratio >= 0.70 else 'NOT met'}")
    print(f"pipeline / no-op Faust's fastest second: {mid['pipeline'] / mid['noop_fastest']:.3f}")
    print(f"ratio_vs_aiokafka={mid['pipeline'] / mid['aiokafka']:.3f}")
    print(f"ratio_vs_noop_faust={ratio:.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "noop-worker":
        broker_address, total, out_path = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
        sys.argv = sys.argv[:1]
        noop_worker(broker_address, total, out_path)
    else:
        main()
