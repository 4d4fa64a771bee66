"""Benchmark: the HTTP API under concurrent clients, SQLite and PostgreSQL.

    python bench/api.py [--pupils 5000] [--requests 2000] [--clients 20 50] [--pg URL]

For each database, on a ledger of a simulated year of ``--pupils`` pupils, served by
``sharing-audit serve`` in a process of its own on a loopback port: ``--requests``
requests from each number of ``--clients`` at once, spread over the search (by pupil, by
decision), export, subject-access and incident routes (each round of six about another of
50 pupils and incidents), then as many to ``/health`` alone
(the baseline: the server, a connection and no ledger work). Prints, per route, requests
per second, p50 and p95, the p95 against ``/health``'s in the same run, and every status
that came back.

Target (the hardening issue): search p95 under 500 ms at 20 clients, and no 5xx at all.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Before bench/ itself: bench/pipeline.py would otherwise shadow the pipeline package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratch import scratch_postgres

from pipeline.incidents.desk import incidents
from pipeline.packs import load_pack
from pipeline.users import Role, add_user
from tests.integration.load import Answers, Call, audit_calls, load
from tests.integration.serving import served_by_cli
from tests.integration.year import KEY, ledger_of_year

TARGET_P95 = 0.5
#: ``serve --workers``: one process per core, as deployed.
WORKERS = os.cpu_count() or 1


def report(db: str, clients: int, answers: Answers, health: Answers) -> None:
    base = health.p95("health")
    total = sum(len(a) for a in answers.by_route.values()) / answers.seconds
    print(
        f"{db} clients={clients} requests/s={total:,.0f} "
        f"health_requests/s={health.rate('health'):,.0f} health_p95_ms={base * 1000:.1f}"
    )
    for route in answers.by_route:
        p50, p95 = answers.p50(route) * 1000, answers.p95(route)
        print(
            f"  {route:<14} requests/s={answers.rate(route):8,.1f} p50_ms={p50:7.1f} "
            f"p95_ms={p95 * 1000:7.1f} p95_vs_health={p95 / base:6.1f}"
        )
    statuses = answers.statuses()
    errors = sum(n for s, n in statuses.items() if s >= 500)
    print(f"  statuses={dict(sorted(statuses.items()))} server_errors={errors}")
    if clients == 20:
        search = max(answers.p95("search_pupil"), answers.p95("search_breach"))
        verdict = "met" if search < TARGET_P95 else "NOT met"
        print(
            f"  target search_p95<{TARGET_P95 * 1000:.0f}ms at 20 clients: {verdict} "
            f"({search * 1000:.0f} ms)"
        )


def run(db: str, url: str, pupils: int, requests: int, clients: list[int]) -> None:
    policy = load_pack()
    year = ledger_of_year(url, policy, pupils=pupils)
    token = add_user(year.ledger, "bench-dpo", Role.DPO)
    with year.ledger.engine.connect() as connection:
        known = sorted(incidents(connection))
    year.ledger.engine.dispose()
    with served_by_cli(url, {"SHARING_AUDIT_PSEUDONYM_KEY": KEY.hex()}, WORKERS) as address:
        for n in clients:
            answers = load(address, token, audit_calls(year.upns(), known), n, requests)
            health = load(address, token, [Call("health", "GET", "/health")], n, requests)
            report(db, n, answers, health)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run("sqlite", f"sqlite:///{folder}/ledger.db", args.pupils, args.requests, args.clients)
    with scratch_postgres(args.pg) as url:
        pg = url.replace("postgresql://", "postgresql+psycopg://", 1)
        run("postgresql", pg, args.pupils, args.requests, args.clients)


if __name__ == "__main__":
    main()
