"""Benchmark: years of a large trust's ledger, every screen and check still fast (issue 33).

    python bench/scale.py [--entries 10000000] [--pupils 230000] [--only sqlite|postgresql]

For each database, a ledger of ``--entries`` entries is built through the real append
path: events an MIS would send (referrals, 2% of them breaches that raise alerts, and each
school's census returns) decided and recorded by ``LedgerWriter.write``, the worker's own
writer, in batches, with a progress bar; a checkpoint is signed 10,000 entries before the
end. Then, as the desk, the API and an auditor would run them:

- ``pupil_p95_ms``: one page of a pupil's entries, the read recorded (``reads.search``, as
  the API runs it; the query alone printed beside);
- ``sar_p95_ms``: a pupil's subject-access report, recorded (``audited_sar``);
- ``incidents_p95_ms``: the DPO's incident queue, the desk's page (``GET /desk``);
- ``action_p95_ms``: a DPO acknowledging an incident, the desk's form
  (``POST /desk/incidents/N/acknowledge``, its redirect not followed);
- ``proof_p95_ms``: an inclusion proof in the latest checkpoint, as the route computes it
  (``tree.inclusion_proof``; the whole request, its sign-in and receipt, printed beside);
- ``verify_mb``: the peak resident memory of ``sharing-audit ledger verify --jobs 1`` (a
  child process; its own high-water mark, Python's ~100 MB of code included);
- ``incremental_verify_s``: the check ``ledger verify --from`` makes from the checkpoint
  signed 10,000 entries before the end (``verify_from``; the command's wall time, with
  its start-up, printed beside);
- ``bytes_per_entry``: the database's size (PostgreSQL: ``pg_database_size``; SQLite: the
  file and its WAL) over the entries;
- ``writer_ratio``: the writer's wall time per event on a fresh ledger over its time per
  event on the same events at the full size (same run; 1.0: no slower at size).

It prints a line of these per database and, last, the worse figure of each across the two.
Targets at 10 million: pupil < 5 ms, SAR < 50 ms, queue < 100 ms with 200,000 alerts
recorded, action < 100 ms, proof < 2 ms, verify < 200 MB, incremental < 2 s,
bytes per entry at most half of 2.6 KB on PostgreSQL (1,300), writer_ratio >= 0.9.
``--entries`` smaller for a quick run: the alerts scale with it (2% of the referrals).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from queries import peak_rss_kib
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from scratch import scratch_postgres
from sqlalchemy import text
from stdnum.gb import upn as stdnum_upn

from pipeline.engine import Position
from pipeline.ledger.integrity.verification import verify_from
from pipeline.ledger.log.checkpoints import Signed, log_signer, sign_if_grown
from pipeline.ledger.log.origin import log_origin
from pipeline.ledger.reading.queries import Filters
from pipeline.ledger.reading.queries import entries as entries_of
from pipeline.ledger.reading.reads import Requester, search
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.dialects import POSTGRESQL
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import inclusion_proof
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.pupils import finder
from pipeline.logging import configure as configure_logging
from pipeline.packs import load_pack
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.reports.sar import audited_sar

KEY = bytes(range(32))
LOG_KEY = bytes(range(32, 64))
BATCH = 500
#: Pupils to a school: each school sends a census return of all of them three times a year.
SCHOOL_SIZE = 500
CENSUSES_A_YEAR = 3
#: Events each pupil's school sends a year (the simulated year's rate).
EVENTS_A_PUPIL_YEAR = 2.3
BREACH_SHARE = 0.02
#: Where a school refers a pupil, each permitting a referral of health data by secure
#: email: a breach (sent by post) at each is an incident of its own, a school and day.
REFERRED_TO = ("agency:school-nursing", "agency:educational-psychology")
FIRST_DAY = datetime(2020, 9, 1, 8, tzinfo=UTC)
AUDITOR = Requester("bench", "auditor", "api")
#: Entries the incremental verify reads: those after the checkpoint signed before them.
LAST = 10_000
TARGETS = {
    "pupil_p95_ms": (5, "<"),
    "sar_p95_ms": (50, "<"),
    "incidents_p95_ms": (100, "<"),
    "action_p95_ms": (100, "<"),
    "proof_p95_ms": (2, "<"),
    "verify_mb": (200, "<"),
    "incremental_verify_s": (2, "<"),
    "bytes_per_entry": (1300, "<="),
    "writer_ratio": (0.9, ">="),
}


def upn_of(pupil: int) -> str:
    """A valid, distinct UPN for each pupil number (LA 850, a school number of 4 digits)."""
    body = f"850{pupil // 1000:04d}20{pupil % 1000:03d}"
    return str(stdnum_upn.calc_check_digit(body)) + body


def events(count: int, pupils: int, seed: int, tag: str = "") -> Iterator[dict[str, Any]]:
    """``count`` events of a trust of ``pupils`` over as many years as they take: referrals
    of one pupil (a few breaches among them), and each school's census returns; ``tag``
    makes the ids of a second run of the same events new."""
    rng = random.Random(seed)
    a_year = pupils * EVENTS_A_PUPIL_YEAR
    schools = max(1, pupils // SCHOOL_SIZE)
    census_share = schools * CENSUSES_A_YEAR / a_year
    for n in range(count):
        when = FIRST_DAY + timedelta(days=365 * n / a_year)
        stamp = when.isoformat()
        school = rng.randrange(schools)
        if rng.random() < census_share:
            members = range(school * SCHOOL_SIZE, min(pupils, (school + 1) * SCHOOL_SIZE))
            data = {
                "recipient": "dfe",
                "pupils": [{"upn": upn_of(p)} for p in members],
                "categories": ["personal", "attendance", "characteristics"],
                "lawful_basis": "legal_obligation",
                "channel": "collect",
            }
            kind = "uk.school.census.submitted.v1"
        else:
            data = {
                "recipient": rng.choice(REFERRED_TO),
                "pupils": [{"upn": upn_of(school * SCHOOL_SIZE + rng.randrange(SCHOOL_SIZE))}],
                "categories": ["personal", "medical"],
                "lawful_basis": "public_task",
                "special_condition": "9.2.h",
                "channel": "post" if rng.random() < BREACH_SHARE else "secure_email",
            }
            kind = "uk.school.pupil.referred.v1"
        yield {
            "specversion": "1.0",
            "id": f"scale-{tag}{seed}-{n}",
            "source": f"/schools/{100_000 + school}",
            "type": kind,
            "time": stamp,
            "datacontenttype": "application/json",
            "data": data,
        }


def records(batch: list[dict[str, Any]], start: int) -> list[tuple[bytes, Position]]:
    return [(orjson.dumps(e), Position.line("scale", start + i)) for i, e in enumerate(batch)]


def write(writer: LedgerWriter, source: Iterator[dict[str, Any]], count: int, on: Any) -> None:
    done = 0
    while done < count:
        batch = [next(source) for _ in range(min(BATCH, count - done))]
        writer.write(records(batch, done))
        done += len(batch)
        on(len(batch))


def writer_seconds_per_event(writer: LedgerWriter, pupils: int, tag: str) -> float:
    """The writer's wall time per event over 5,000 events, the same each time but for their
    ids (``tag``)."""
    source = events(5_000, pupils, 99, tag)
    start = time.perf_counter()
    write(writer, source, 5_000, lambda _: None)
    return (time.perf_counter() - start) / 5_000


def p95_ms(run: Callable[[int], Any], samples: int) -> float:
    times = []
    for i in range(samples):
        start = time.perf_counter()
        run(i)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return times[max(0, int(len(times) * 0.95) - 1)]


def child(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Seconds, peak RSS (KiB) and output of ``sharing-audit`` run with ``command``."""
    exe = str(Path(sys.executable).parent / "sharing-audit")
    start = time.perf_counter()
    peak = 0
    process = subprocess.Popen(
        [exe, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    while process.poll() is None:
        peak = max(peak, peak_rss_kib(process.pid))
        time.sleep(0.01)
    out = process.stdout.read().decode() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"sharing-audit {' '.join(command)} failed: {out}")
    return time.perf_counter() - start, peak, out


def database_bytes(ledger: Ledger, url: str) -> int:
    if ledger.dialect is POSTGRESQL:
        with ledger.engine.connect() as connection:
            return int(
                connection.execute(text("SELECT pg_database_size(current_database())")).one()[0]
            )
    path = Path(url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def desk_client(ledger: Ledger, policy: Policy) -> Any:
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_api
    from pipeline.users import Role, add_user

    client = TestClient(create_api(ledger, policy=policy, pseudonym=pseudonymiser(KEY)))
    token = add_user(ledger, "Dana (DPO)", Role.DPO)
    signed_in = client.post("/desk/signin", data={"token": token}, follow_redirects=False)
    assert signed_in.is_redirect, signed_in.text
    client.headers["Authorization"] = f"Bearer {token}"  # the API's routes, as an auditor's
    return client


def built(
    name: str, ledger: Ledger, url: str, policy: Policy, args: argparse.Namespace
) -> tuple[Signed, Signed, int, float]:
    """The ledger built: the checkpoint signed 10,000 entries before the end, the last
    one, the entries and the writer's ratio (its time per event at zero over at size)."""
    writer = LedgerWriter(ledger, policy, pseudonymiser(KEY))
    signer = log_signer(LOG_KEY.hex(), log_origin(url, None), url)
    at_zero = writer_seconds_per_event(writer, args.pupils, "zero-")
    started = time.perf_counter()
    # 5,000 events at zero, the build, 5,000 at size: the last LAST after the old checkpoint.
    build = args.entries - 10_000
    before_last = build - (LAST - 5_000)
    source = events(build, args.pupils, seed=1)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task(f"{name}: recording", total=build)
        write(writer, source, before_last, lambda n: progress.advance(task, n))
        old = sign_if_grown(ledger, signer)
        write(writer, source, build - before_last, lambda n: progress.advance(task, n))
    at_size = writer_seconds_per_event(writer, args.pupils, "size-")
    newest = sign_if_grown(ledger, signer)
    assert old is not None and newest is not None
    with ledger.engine.connect() as connection:
        entries = int(connection.execute(text("SELECT max(seq) FROM ledger_entry")).one()[0])
        alerts = int(connection.execute(text("SELECT count(*) FROM alert_outbox")).one()[0])
    print(
        f"{name}: {entries:,} entries ({alerts:,} alerts) recorded in "
        f"{time.perf_counter() - started:,.0f} s",
        flush=True,
    )
    if ledger.dialect is POSTGRESQL:  # as autovacuum and the checkpointer soon would
        settle = ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        with settle as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
            connection.exec_driver_sql("CHECKPOINT")
    return old, newest, entries, at_zero / at_size


def run(name: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    print(f"== {name}", flush=True)
    policy = load_pack()
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    old, newest, entries, writer_ratio = built(name, ledger, url, policy, args)
    rng = random.Random(7)
    find = finder(ledger)
    pupil_keys = [find(upn_of(rng.randrange(args.pupils))) for _ in range(args.samples)]
    figures: dict[str, float] = {}
    figures["pupil_p95_ms"] = p95_ms(
        lambda i: search(ledger, AUDITOR, Filters(pupil_key=pupil_keys[i]), 100), args.samples
    )
    with ledger.engine.connect() as connection:
        bare = p95_ms(
            lambda i: list(entries_of(connection, Filters(pupil_key=pupil_keys[i], limit=100))),
            args.samples,
        )
    figures["sar_p95_ms"] = p95_ms(
        lambda i: audited_sar(ledger, AUDITOR, pupil_keys[i], policy), args.samples
    )
    desk = desk_client(ledger, policy)
    figures["incidents_p95_ms"] = p95_ms(lambda i: desk.get("/desk"), max(20, args.samples // 10))
    with ledger.engine.connect() as connection:
        open_ids = [
            int(row[0])
            for row in connection.execute(
                text("SELECT id FROM incident ORDER BY id DESC LIMIT 1000")
            )
        ]
    if not open_ids:
        raise SystemExit("no incident to act on: too few entries for an alert")

    def acknowledge(i: int) -> None:
        done = desk.post(
            f"/desk/incidents/{open_ids[i % len(open_ids)]}/acknowledge",
            data={"reasons": "seen"},
            follow_redirects=False,
        )
        assert done.status_code in (303, 409), done.text  # 409: acknowledged already

    figures["action_p95_ms"] = p95_ms(acknowledge, min(len(open_ids), args.samples))
    seqs = [rng.randrange(1, newest.checkpoint.size + 1) for _ in range(args.samples)]
    with ledger.engine.connect() as connection:
        figures["proof_p95_ms"] = p95_ms(
            lambda i: inclusion_proof(connection, seqs[i] - 1, newest.checkpoint.size),
            args.samples,
        )
    http_proof = p95_ms(
        lambda i: desk.get(f"/log/proof/inclusion/{seqs[i]}").raise_for_status(), args.samples
    )
    env = {
        **os.environ,
        "SHARING_AUDIT_DATABASE_URL": url,
        "SHARING_AUDIT_PSEUDONYM_KEY": KEY.hex(),
        "SHARING_AUDIT_LOG_KEY": LOG_KEY.hex(),
    }
    whole_s, peak, _ = child(["ledger", "verify", "--db", url, "--jobs", "1"], env)
    figures["verify_mb"] = peak / 1024
    with ledger.engine.connect() as connection:
        start = time.perf_counter()
        log = log_signer(LOG_KEY.hex(), log_origin(url, None), url).verifier
        since = verify_from(connection, old.checkpoint, "the bench", log)
        figures["incremental_verify_s"] = time.perf_counter() - start
    assert since.ok and since.count >= LAST, since
    with tempfile.NamedTemporaryFile("wb", suffix=".checkpoint", delete=False) as kept:
        kept.write(old.note)
    try:
        command_s, _, out = child(["ledger", "verify", "--db", url, "--from", kept.name], env)
    finally:
        os.unlink(kept.name)
    assert f"of size {old.checkpoint.size}" in out, out
    print(
        f"{name}: beside the targets: the pupil query alone, without recording the read, "
        f"p95 {bare:.2f} ms; a proof through the API (GET /log/proof/inclusion, "
        f"auth, checkpoint and receipt) p95 {http_proof:.1f} ms; the whole ledger verify "
        f"{whole_s:.1f} s; verify --from as a command, start-up included, {command_s:.1f} s "
        f"for {since.count:,} entries"
    )
    figures["bytes_per_entry"] = database_bytes(ledger, url) / entries
    figures["writer_ratio"] = writer_ratio
    print(f"{name}: " + line(figures), flush=True)
    ledger.engine.dispose()
    return figures


def line(figures: dict[str, float]) -> str:
    return " ".join(
        f"{k}={v:.0f}" if k in ("bytes_per_entry",) else f"{k}={v:.2f}" for k, v in figures.items()
    )


def verdicts(figures: dict[str, float]) -> str:
    said = []
    for k, v in figures.items():
        target, sense = TARGETS[k]
        met = v >= target if sense == ">=" else (v <= target if sense == "<=" else v < target)
        said.append(f"{k} {sense} {target}: {'met' if met else 'NOT met'}")
    return "; ".join(said)


def main() -> None:
    # The writer logs each batch at INFO: thousands of lines over the figures.
    configure_logging(level=os.environ.get("SHARING_AUDIT_LOG_LEVEL", "WARNING"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--pupils", type=int, default=230_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin URL: a scratch database is made and dropped",
    )
    parser.add_argument("--sqlite", default=None, help="folder for the SQLite file")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="one database only")
    args = parser.parse_args()
    if args.entries < LAST + 20_000:
        parser.error(f"--entries must be at least {LAST + 20_000:,}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=args.sqlite) as folder:
        if args.only in (None, "sqlite"):
            results["sqlite"] = run("sqlite", f"sqlite:///{Path(folder) / 'scale.db'}", args)
        if args.only in (None, "postgresql"):
            with scratch_postgres(args.pg) as url:
                results["postgresql"] = run("postgresql", url, args)
    for db, figures in results.items():
        print(f"targets {db}: {verdicts(figures)}")
    worst = {
        k: (min if TARGETS[k][1] == ">=" else max)(r[k] for r in results.values()) for k in TARGETS
    }
    print(f"worse of {' and '.join(results)}: {verdicts(worst)}")
    print(line(worst))


if __name__ == "__main__":
    main()
