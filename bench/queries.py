"""Benchmark: the auditors' questions on a ledger of a trust's year, SQLite and PostgreSQL.

    python bench/queries.py [--entries 1000000] [--pupils 50000] [--pg URL] [--sqlite DIR]

For each database, on a ledger of ``--entries`` entries (referrals, transfers and census
returns of ``--pupils`` pupils over a school year, with their pseudonymised payloads):

- pupil search: p50/p95 of one page of a pupil's entries as the API runs it (query, then
  the read recorded in the ledger), against the bare indexed query alone (the baseline);
- subject-access report: p50/p95 of the whole report for one pupil, recorded;
- export: ``sharing-audit ledger query --format csv`` of one month and of the whole year,
  each in a fresh process: bytes written, seconds, and the process's peak RSS. Flat
  memory means the year's peak is close to the month's, whatever the size.

Targets (the auditors' issue): pupil search p95 and SAR p95 under 50 ms on both databases;
the full-year export streams with flat memory.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratch import scratch_postgres

from pipeline.ledger.reading.queries import Filters, entries
from pipeline.ledger.reading.reads import Requester, search
from pipeline.ledger.records.entry import Entry
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.dialects import POSTGRESQL
from pipeline.ledger.storage.store import Ledger, NewEntry, now_text, utc_text
from pipeline.packs import load_pack
from pipeline.reports.sar import audited_sar

BATCH = 5_000
CENSUS_RETURNS = 3  # per school a year: the DfE's autumn, spring and summer censuses
SCHOOLS = 50
YEAR_START = datetime(2025, 9, 1, 8, tzinfo=UTC)
AUDITOR = Requester("bench", "auditor", "api")
AGENCIES = [
    "agency:school-nursing",
    "agency:educational-psychology",
    "agency:speech-language-therapy",
    "la:850",
]


def key(pupil: int) -> str:
    return hashlib.sha256(f"pupil-{pupil}".encode()).hexdigest()


def new_entry(
    seq: int, count: int, rng: random.Random, pupils: int, policy_version: str
) -> NewEntry:
    """Entry ``seq`` of ``count`` over a year: a referral or transfer of one pupil, or now
    and then a school's census return. Events are recorded in time order, give or take
    the two days an MIS may take to send one."""
    late = timedelta(minutes=rng.randrange(2 * 24 * 60))
    when = YEAR_START + timedelta(days=365 * seq / count) - late
    if rng.random() < CENSUS_RETURNS * SCHOOLS / count:  # every pupil of one school
        school = rng.randrange(SCHOOLS)
        keys = [key(p) for p in range(school, pupils, SCHOOLS)]
        event_type, recipient, basis = "uk.school.census.submitted.v1", "dfe", "legal_obligation"
        categories, channel = ["personal", "attendance", "characteristics"], "collect"
    elif rng.random() < 0.05:
        keys = [key(rng.randrange(pupils))]
        event_type, recipient, basis = (
            "uk.school.pupil.transferred.v1",
            "school:116512",
            ("legal_obligation"),
        )
        categories, channel = ["personal", "attendance", "assessment"], "s2s"
    else:
        keys = [key(rng.randrange(pupils))]
        event_type, recipient, basis = (
            "uk.school.pupil.referred.v1",
            rng.choice(AGENCIES),
            ("public_task"),
        )
        categories, channel = ["personal", "medical"], "secure_email"
    breach = rng.random() < 0.02
    event_id = str(uuid.UUID(int=rng.getrandbits(128)))
    fields: dict[str, Any] = {
        "seq": seq,
        "kind": "decision",
        "refers_to": None,
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": utc_text(when),
        "recorded_at": now_text(),
        "school": "116234",
        "recipient": recipient,
        "pupil_keys": keys,
        "categories": categories,
        "lawful_basis": basis,
        "decision": "breach" if breach else "allowed",
        "rules": ["channel.not_permitted"] if breach else [],
        "reasons": ["channel 'post' is not allowed"] if breach else [],
        "policy_version": policy_version,
        "topic": "sharing.referral",
        "partition": rng.randrange(4),
        "offset": seq,
        "payload_digest": hashlib.sha256(event_id.encode()).hexdigest(),
        "details": None,
    }
    payload = {
        "id": event_id,
        "type": event_type,
        "time": when.isoformat(),
        "data": {
            "recipient": recipient,
            "categories": categories,
            "lawful_basis": basis,
            "channel": channel,
            "pupils": [{"upn": k} for k in keys],
        },
    }
    return NewEntry(Entry(**fields), payload=payload)


def build(ledger: Ledger, count: int, pupils: int, policy_version: str) -> float:
    rng = random.Random(1)
    start = time.perf_counter()
    for first in range(1, count + 1, BATCH):
        batch = [
            new_entry(s, count, rng, pupils, policy_version)
            for s in range(first, min(first + BATCH, count + 1))
        ]
        with ledger.locked() as connection:
            ledger.append(connection, batch)
    return time.perf_counter() - start


def percentiles(run: Callable[[str], Any], pupils: int, samples: int) -> tuple[float, float]:
    rng = random.Random(7)
    times = []
    for _ in range(samples):
        pupil = key(rng.randrange(pupils))
        start = time.perf_counter()
        run(pupil)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def peak_rss_kib(pid: int) -> int:
    """The process's own high-water resident set (VmHWM), 0 once it has gone.

    Not ``wait4``'s ``ru_maxrss``: Linux carries the parent's high-water mark across fork
    and exec into it, so a child of this (large) benchmark would seem as large as it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1])


def export_figures(url: str, since: str, until: str, folder: Path) -> tuple[int, float, int]:
    """Bytes, seconds and peak RSS (KiB) of a CSV export in a fresh process."""
    out = folder / "export.csv"
    command = [
        str(Path(sys.executable).parent / "sharing-audit"),
        "ledger",
        "query",
        "--db",
        url,
        "--format",
        "csv",
        "--since",
        since,
        "--until",
        until,
    ]
    start = time.perf_counter()
    peak = 0
    with out.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.PIPE)
        while process.poll() is None:
            peak = max(peak, peak_rss_kib(process.pid))
            time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(
            f"export failed: {process.stderr.read().decode() if process.stderr else ''}"
        )
    size = out.stat().st_size
    out.unlink()
    return size, elapsed, peak


def run(name: str, url: str, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    print(f"== {name}", flush=True)
    policy = load_pack()
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    seconds = build(ledger, args.entries, args.pupils, policy.version)
    if ledger.dialect is POSTGRESQL:
        # A ledger filled over a year has been analysed, vacuumed and checkpointed many
        # times; one just bulk-loaded has not. Do now what autovacuum and the
        # checkpointer would soon do, so that the timings below measure the ledger in
        # its steady state, not the aftermath of loading a year in five minutes.
        settle = ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        with settle as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
            connection.exec_driver_sql("CHECKPOINT")
    print(
        f"{name}: built {args.entries:,} entries for {args.pupils:,} pupils in {seconds:.0f} s",
        flush=True,
    )

    with ledger.engine.connect() as connection:
        bare = percentiles(
            lambda k: list(entries(connection, Filters(pupil_key=k, limit=100))),
            args.pupils,
            args.samples,
        )
    found = percentiles(
        lambda k: search(ledger, AUDITOR, Filters(pupil_key=k), 100), args.pupils, args.samples
    )
    sar = percentiles(lambda k: audited_sar(ledger, AUDITOR, k, policy), args.pupils, args.samples)
    print(f"{name}_bare_pupil_query_p50_ms={bare[0]:.2f} p95_ms={bare[1]:.2f}  (baseline)")
    print(
        f"{name}_pupil_search_p50_ms={found[0]:.2f} p95_ms={found[1]:.2f}  (query + read recorded)"
    )
    print(f"{name}_sar_p50_ms={sar[0]:.2f} p95_ms={sar[1]:.2f}")
    print(f"{name}_ratio_search_vs_bare_p95={found[1] / bare[1]:.2f}")

    figures = {}
    for label, since, until in (
        ("month", "2025-10-01", "2025-11-01"),
        ("year", "2025-09-01", "2026-09-01"),
    ):
        size, took, rss = export_figures(url, since, until, folder)
        figures[label] = rss
        rate = size / 1e6 / took
        print(
            f"{name}_export_{label}: {size / 1e6:,.1f} MB in {took:.1f} s ({rate:,.1f} MB/s), "
            f"peak RSS {rss / 1024:,.0f} MiB",
            flush=True,
        )
    growth = figures["year"] / figures["month"]
    print(f"{name}_ratio_export_peak_rss_year_vs_month={growth:.2f}")
    ledger.engine.dispose()
    return {"search": found[1], "sar": sar[1], "rss_growth": growth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--pupils", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin URL: a scratch database is made and dropped",
    )
    parser.add_argument("--sqlite", default=None, help="folder for the SQLite file")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="one database only")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory(dir=args.sqlite) as folder:
        if args.only in (None, "sqlite"):
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            results["sqlite"] = run("sqlite", url, args, Path(folder))
        if args.only in (None, "postgresql"):
            with scratch_postgres(args.pg) as url:
                results["postgresql"] = run("postgresql", url, args, Path(folder))
    for db, r in results.items():
        verdict = [
            f"pupil search p95 {'met' if r['search'] < 50 else 'NOT met'}",
            f"SAR p95 {'met' if r['sar'] < 50 else 'NOT met'}",
            f"export memory {'flat' if r['rss_growth'] < 1.5 else 'NOT flat'}",
        ]
        print(f"targets {db}: " + ", ".join(verdict))


if __name__ == "__main__":
    main()
