"""``sharing-audit demo`` (``make demo``): the whole pipeline on a simulated school year.

Starts the embedded broker and a worker, sends a year of events as an MIS would, waits
until the ledger has decided every one, and prints what a DPO would look at first: the
decisions, the rules broken, the alerts raised, and that the chain verifies. Everything
it makes stays in one folder, so the ledger can be queried afterwards.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from pipeline.checking import expected_of
from pipeline.cli.exits import fail, policy_or_fail, school_or_fail
from pipeline.cli.options import DATABASE_SETTING, PolicyOption
from pipeline.cli.report import write_private
from pipeline.cli.runnable import activation, command_line
from pipeline.engine import Engine
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import current_decisions, entry_count
from pipeline.ledger.reading.reads import Requester
from pipeline.ledger.records.chain import Verification
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.outbox import PENDING, SENT, SUPERSEDED, alert_counts
from pipeline.ledger.writing.pupils import finder
from pipeline.policy.pack import Policy
from pipeline.reports.formats import ropa_html, sar_html
from pipeline.reports.ropa import audited_ropa
from pipeline.reports.sar import audited_sar
from pipeline.simulate import simulate
from pipeline.transport.broker import BrokerError
from pipeline.transport.kafka import ALERTS_TOPIC, KafkaConfig, KafkaUnavailable, read_topic
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline, say
from pipeline.users import Role, add_user

#: Files the demo owns in its folder, removed at the start of each run.
DEMO_FILES = (
    "ledger.db",
    "ledger.db.key",
    "ledger.db-wal",
    "ledger.db-shm",
    "worker.log",
    "events.jsonl",
    "subject-access.html",
    "record-of-processing.html",
)


class DemoFailed(Exception):
    """The pipeline did not record the demo's events in time."""


def _progress(console: Console, label: str) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _read_alerts(kafka: KafkaConfig, expected: int, timeout: float) -> list[dict[str, Any]]:
    """The alerts on the topic, one per ``seq`` (delivery is at-least-once)."""
    records = read_topic(
        kafka,
        ALERTS_TOPIC,
        expected,
        timeout,
        identity=lambda record: orjson.loads(record.value)["seq"],
    )
    alerts = {alert["seq"]: alert for alert in (orjson.loads(r.value) for r in records)}
    return [alerts[seq] for seq in sorted(alerts)]


def _reports(
    ledger: Ledger, lines: list[Any], policy: Policy, folder: Path, console: Console
) -> None:
    """A subject-access report for one pupil and the year's record of processing, as a
    DPO would print them (each recorded in the ledger as a read, like any other)."""
    demo = Requester("demo", Role.DPO.value, "cli")
    upn = next(p["upn"] for line in lines for p in line.event["data"].get("pupils", []))
    url = ledger.engine.url.render_as_string(hide_password=False)
    sar = folder / "subject-access.html"
    report = audited_sar(ledger, demo, finder(ledger)(upn), policy, school=school_or_fail())
    assert report is not None  # the demo's reader sees every school
    write_private(sar, sar_html(report).encode())
    ropa = folder / "record-of-processing.html"
    year = audited_ropa(ledger, demo, policy, None, None)
    assert year is not None  # the demo's reader sees every school
    write_private(ropa, ropa_html(year).encode())
    console.print(f"\n[bold]For auditors[/bold]: a subject-access report -> {sar}")
    console.print(f"and the year's record of processing -> {ropa}; the same at the command line:")
    say_command(console, "report", "sar", "--db", url, "--pupil", upn)


def say_command(console: Console, *args: str) -> None:
    """A command to run next, on a line of its own and never wrapped, so that it can be
    pasted whole into the shell that started the demo (see :mod:`pipeline.cli.runnable`)."""
    console.print(f"  {command_line(*args)}", markup=False, soft_wrap=True)


def run_demo(
    folder: Path,
    policy: Policy,
    policy_ref: str | None,
    pupils: int,
    violation_rate: float,
    seed: int,
    console: Console,
) -> None:
    url = f"sqlite:///{folder / 'ledger.db'}"
    lines, records = _simulated_year(folder, pupils, violation_rate, seed, console)
    console.print(f"policy pack {policy.name}, version {policy.version[:16]}…")
    expected = expected_of(records, Engine(policy))
    # A short alert hold: the demo's topics are read together, so facts are never late
    # by more than a moment (a production worker holds alerts for a minute).
    env = {"SHARING_AUDIT_ALERT_HOLD_SECONDS": "3"}
    with Pipeline(url, policy=policy_ref, worker_log=folder / "worker.log", env=env) as pipeline:
        assert pipeline.kafka is not None
        console.print(f"embedded broker on {pipeline.broker}; worker log {folder / 'worker.log'}")
        _send(pipeline.kafka, records, console)
        ledger = Ledger.open(url)
        _await_decisions(ledger, expected.entries, folder, console)
        _await_relay(ledger)
        with ledger.engine.connect() as connection:
            final = current_decisions(connection)
            verification = verify(connection)
            counts = alert_counts(connection)
        alerts = _read_alerts(pipeline.kafka, counts.get(SENT, 0), timeout=30)
        ledger.engine.dispose()
    _print_decisions(final, console)
    _print_alerts(alerts, counts.get(SUPERSEDED, 0), console)
    agree = sum(1 for k, v in expected.final.items() if final.get(k) == v)
    console.print(
        f"decisions matching sharing-audit check on the same file: {agree} of {len(expected.final)}"
    )
    _print_verification(verification, console)
    console.print("explore it:")
    say_command(console, "ledger", "query", "--db", url, "--decision", "breach")
    _for_the_dpo(url, lines, policy, folder, console)


def _simulated_year(
    folder: Path, pupils: int, violation_rate: float, seed: int, console: Console
) -> tuple[list[Any], list[bytes]]:
    """A fresh demo folder and a simulated year's events, written to it as an MIS would
    send them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in DEMO_FILES:
        (folder / name).unlink(missing_ok=True)
    lines = simulate(pupils, violation_rate, seed)
    records = [orjson.dumps(line.event) for line in lines]
    (folder / "events.jsonl").write_bytes(b"".join(r + b"\n" for r in records))
    console.print(
        f"simulated a school year: {len(records)} events for {pupils} pupils "
        f"-> {folder / 'events.jsonl'}"
    )
    return lines, records


def _send(kafka: KafkaConfig, records: list[bytes], console: Console) -> None:
    with MisProducer(kafka) as producer, _progress(console, "sending") as bar:
        task = bar.add_task("send", total=len(records))
        producer.send_all(records, on_ack=lambda: bar.advance(task))
    console.print(f"sent {len(records)} events to Kafka, each acknowledged")


def _await_decisions(ledger: Ledger, expected: int, folder: Path, console: Console) -> None:
    """Wait until the ledger holds ``expected`` decisions; :class:`DemoFailed` after 3
    minutes."""
    deadline = time.monotonic() + 180
    with _progress(console, "recording") as bar:
        task = bar.add_task("record", total=expected)
        count = 0
        while count < expected and time.monotonic() < deadline:
            time.sleep(0.25)
            try:
                with ledger.engine.connect() as connection:
                    count = entry_count(connection)
            except Exception:
                continue  # the worker is still creating the schema
            bar.update(task, completed=count)
    if count < expected:
        raise DemoFailed(
            f"the ledger holds {count} of {expected} decisions after 3 minutes; "
            f"see {folder / 'worker.log'}"
        )


def _await_relay(ledger: Ledger, timeout: float = 60.0) -> None:
    """Wait (a minute at most) until the relay has dealt with every alert."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ledger.engine.connect() as connection:
            if not alert_counts(connection).get(PENDING):
                return
        time.sleep(0.5)


def _print_decisions(final: dict[str, tuple[str, tuple[str, ...]]], console: Console) -> None:
    for table in decision_tables(final):
        console.print(table)


def decision_tables(final: dict[str, tuple[str, tuple[str, ...]]]) -> list[Table]:
    """Events by their current decision, and by each rule they broke."""
    decisions = Counter(decision for decision, _ in final.values())
    by_decision = Table(title="decisions (current, per event)", header_style="bold")
    by_decision.add_column("decision")
    by_decision.add_column("events", justify="right")
    for name in ("allowed", "review", "breach", "rejected"):
        by_decision.add_row(name, str(decisions.get(name, 0)))
    rules = Counter(rule for _, rules in final.values() for rule in rules)
    by_rule = Table(title="rules broken", header_style="bold")
    by_rule.add_column("rule")
    by_rule.add_column("events", justify="right")
    for rule, n in rules.most_common():
        by_rule.add_row(rule, str(n))
    return [by_decision, by_rule]


def _print_alerts(alerts: list[dict[str, Any]], superseded: int, console: Console) -> None:
    severities = Counter(str(a["severity"]) for a in alerts)
    console.print(
        f"alerts on {ALERTS_TOPIC}: {len(alerts)} "
        f"(high {severities['high']}, medium {severities['medium']}, "
        f"low {severities['low']}); {superseded} not sent because a late fact "
        "re-decided the event first"
    )
    for alert in [a for a in alerts if a["severity"] == "high"][:3]:
        console.print(
            f"  high: {alert['event_type']} to {alert['recipient']}: {'; '.join(alert['reasons'])}",
            highlight=False,
        )


def _print_verification(verification: Verification, console: Console) -> None:
    if verification.ok:
        console.print(
            f"ledger verify: ok, {verification.count} entries, head {verification.head_hash[:16]}…"
        )
    else:
        console.print(
            f"ledger verify: FAILED at seq {verification.fault_seq}: {verification.fault}"
        )


def _for_the_dpo(
    url: str, lines: list[Any], policy: Policy, folder: Path, console: Console
) -> None:
    """The reports a DPO would print, and a token to open the desk with."""
    ledger = Ledger.open(url)
    token = add_user(ledger, f"demo-dpo-{int(time.time())}", Role.DPO)
    _reports(ledger, lines, policy, folder, console)
    ledger.engine.dispose()
    console.print("\n[bold]The DPO's queue[/bold]: start the desk with")
    say_command(console, "serve", "--db", url)
    console.print("then open http://127.0.0.1:8000/desk and sign in with this DPO token")
    console.print("(the search and both reports are there too):")
    console.print(f"  {token}")
    if (activate := activation()) is not None:
        console.print(
            f"(sharing-audit is not on this shell's PATH: run the commands above as printed, "
            f"or run `{activate}` first to type sharing-audit alone)",
            markup=False,
        )


def demo(
    pupils: Annotated[int, typer.Option(min=1, help="How many pupils.")] = 300,
    violation_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events with a violation.")
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Same seed, same year.")] = 2026,
    folder: Annotated[
        Path, typer.Option("--dir", help="Where the demo keeps its ledger, events and log.")
    ] = Path("demo-output"),
    policy: PolicyOption = None,
) -> None:
    """Run the whole pipeline on a simulated school year and summarise what it found."""
    pack = policy_or_fail(policy)
    if os.environ.get(DATABASE_SETTING):
        say(f"the demo keeps a ledger of its own in {folder}; {DATABASE_SETTING} is not used")
    try:
        run_demo(folder, pack, policy, pupils, violation_rate, seed, Console(highlight=False))
    except (BrokerError, KafkaUnavailable, DemoFailed) as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(f"cannot write in {folder}: {exc.strerror or exc}")
